import Dispatch
import Foundation

/// Parallel loops over the machine's cores.
///
/// Rule that keeps the machine from being oversubscribed: a `parallelFor` body never calls BLAS (OpenBLAS has its
/// own pool of `Parallel.threads` threads and is called only from serial code).
public enum Parallel {
    /// Worker count: `PATCHGUARD_THREADS` if set, else the number of active cores.
    public static let threads: Int = {
        if let s = ProcessInfo.processInfo.environment["PATCHGUARD_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Thread-local mark of a thread that runs one share of a parallel region itself (``runSerially(_:)``): on
    /// it, `parallelFor` runs inline, so a region's workers never fan out again.
    @usableFromInline static let serialKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// Whether the calling thread is inside ``runSerially(_:)``.
    @inlinable public static var isSerialThread: Bool { pthread_getspecific(serialKey) != nil }

    /// Runs `body` with every `parallelFor` on this thread inline (one worker's share of a parallel region).
    @inlinable
    public static func runSerially<R>(_ body: () throws -> R) rethrows -> R {
        let was = pthread_getspecific(serialKey)
        pthread_setspecific(serialKey, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(serialKey, was) }
        return try body()
    }

    /// `count` items in at most `parts` contiguous, nearly equal shares (the first ones one larger), none empty.
    public static func shares(_ count: Int, parts: Int) -> [Range<Int>] {
        let n = max(1, min(parts, count))
        guard count > 0 else { return [] }
        let base = count / n, extra = count % n
        var out: [Range<Int>] = [], lo = 0
        for i in 0..<n {
            let len = base + (i < extra ? 1 : 0)
            out.append(lo..<(lo + len))
            lo += len
        }
        return out
    }
}

/// Runs `body(i)` for every `i` in `0..<count`, split into contiguous chunks over `Parallel.threads` workers.
/// Results must not depend on the split (give each item its own RNG stream). Inline on a thread inside
/// ``Parallel/runSerially(_:)``.
@inlinable
public func parallelFor(_ count: Int, minChunk: Int = 1, _ body: (Int) -> Void) {
    guard count > 0 else { return }
    let workers = min(Parallel.threads, max(1, count / max(1, minChunk)))
    if workers <= 1 || Parallel.isSerialThread {
        for i in 0..<count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let chunk = (count + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = w * chunk, hi = min(count, lo + chunk)
            if lo < hi { for i in lo..<hi { body(i) } }
        }
    }
}
