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
}

/// Runs `body(i)` for every `i` in `0..<count`, split into contiguous chunks over `Parallel.threads` workers.
/// Results must not depend on the split (give each item its own RNG stream).
@inlinable
public func parallelFor(_ count: Int, minChunk: Int = 1, _ body: (Int) -> Void) {
    guard count > 0 else { return }
    let workers = min(Parallel.threads, max(1, count / max(1, minChunk)))
    if workers <= 1 {
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
