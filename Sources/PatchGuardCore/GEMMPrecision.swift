import CGemmBF16
import Foundation

/// The precision of the matrix products: `fp32` (OpenBLAS `sgemm`) or `bf16` (inputs rounded to bfloat16 while
/// they are packed, products accumulated in fp32 by AVX512_BF16 `vdpbf16ps`; ``BF16GEMM``). Activations, master
/// weights, gradients and optimizer state stay fp32 either way; only what enters a GEMM is rounded (PyTorch's
/// CPU bf16 autocast rounds the same operands, and keeps its outputs in bf16, which we do not).
public enum ComputePrecision: String, Sendable, CaseIterable {
    case fp32
    case bf16
}

/// The process-wide GEMM precision (like OpenBLAS's thread count: one job per process sets it once, from
/// `model.precision` or `--precision`). Every `Float` matmul reads it; `Double` products (gradient checks) are
/// always fp64.
public enum GEMMPrecision {
    /// The precision `Float.gemm` uses now.
    public nonisolated(unsafe) private(set) static var current: ComputePrecision = .fp32

    /// Whether this CPU runs the bf16 kernels (AVX512 F/BW/VL/DQ and AVX512_BF16, with OS support).
    public static var bf16Supported: Bool { pg_bf16_supported() != 0 }

    /// Switches the precision; bf16 on a CPU without AVX512_BF16 is refused (nothing is changed).
    public static func set(_ precision: ComputePrecision) throws {
        if precision == .bf16 && !bf16Supported {
            throw PatchGuardError.invalidArgument(
                "precision bf16 needs a CPU with AVX512_BF16 (AMD Zen 4 or later, Intel Cooper Lake, Sapphire Rapids "
                    + "or later); this one (\(cpuModelName)) has none — use --precision fp32 (or model.precision \"fp32\", the "
                    + "default; a model trained in bf16 runs in fp32 unchanged)")
        }
        current = precision
    }

    /// Runs `body` at `precision` and restores the previous one (tests and benchmarks).
    public static func with<R>(_ precision: ComputePrecision, _ body: () throws -> R) throws -> R {
        let saved = current
        try set(precision)
        defer { current = saved }
        return try body()
    }

    /// The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere).
    public static var cpuModelName: String { OpenBLAS.cpuinfoField("model name") ?? "unknown CPU" }
}

/// Row-major `C = alpha·op(A)·op(B) + beta·C` in bf16 with fp32 accumulation (the C target `CGemmBF16`).
///
/// From serial code with more than one worker, the product is split in two phases on ``parallelFor(_:minChunk:_:)``:
/// each worker packs a share of A's row blocks and B's panels into the calling thread's scratch, then computes a
/// share of C's row blocks (or of its column panels when there are few rows). Inside a
/// ``SingleThreadedBLAS``-style region (OpenBLAS at one thread: attention's per-head GEMMs run on parallel
/// workers) and for small products it runs on the calling thread with that thread's own scratch. Every element of
/// C is summed in the same order either way, so the result does not depend on the split.
public enum BF16GEMM {
    /// Products below this many multiply-adds run on one thread (the two parallel phases cost ~20 µs).
    public static let parallelThreshold = 1 << 20

    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        let workers = min(Parallel.threads, OpenBLAS.threadCount)
        let mr = Int(PG_BF16_MR), nr = Int(PG_BF16_NR)
        let blocks = (m + mr - 1) / mr, panels = (n + nr - 1) / nr
        if workers <= 1 || m * n * k < parallelThreshold || blocks * panels < 2 {
            pg_sgemm_bf16(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        var packedA: UnsafeMutablePointer<UInt16>?, packedB: UnsafeMutablePointer<UInt32>?
        guard pg_bf16_scratch_operands(m, n, k, &packedA, &packedB) != 0, let pa = packedA, let pb = packedB else {
            pg_sgemm_bf16(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        func share(_ total: Int, _ w: Int) -> (Int, Int) { (total * w / workers, total * (w + 1) / workers) }
        parallelFor(workers) { w in
            let (b0, b1) = share(blocks, w), (q0, q1) = share(panels, w)
            if b0 < b1 { pg_bf16_pack_a(pa, a, lda, transA ? 1 : 0, m, k, b0 * mr, b1 * mr) }
            if q0 < q1 { pg_bf16_pack_b(pb, b, ldb, transB ? 1 : 0, k, n, q0, q1) }
        }
        let byRows = blocks >= 2 * workers || blocks >= panels
        parallelFor(workers) { w in
            if byRows {
                let (b0, b1) = share(blocks, w)
                if b0 < b1 { pg_bf16_compute(c, ldc, pa, pb, m, n, k, alpha, beta, b0, b1, 0, panels) }
            } else {
                let (q0, q1) = share(panels, w)
                if q0 < q1 { pg_bf16_compute(c, ldc, pa, pb, m, n, k, alpha, beta, 0, blocks, q0, q1) }
            }
        }
    }

    /// Single-threaded product on the calling thread (tests compare both paths).
    public static func gemmSerial(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
                                  c: UnsafeMutablePointer<Float>, ldc: Int) {
        pg_sgemm_bf16(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// The bf16 value the packing rounds `x` to (round to nearest even; denormals to signed zero; NaN stays NaN).
    public static func round(_ x: Float) -> Float { pg_bf16_round(x) }
}

/// fp32 small products on the calling thread with AVX-512F (the C kernel `pg_sgemm_small`, see gemm_bf16.h):
/// what ``NNScalar/gemmSmall(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` uses for attention's per-head
/// products in fp32. Off on CPUs without AVX-512F (OpenBLAS then), or with `PATCHGUARD_SMALL_GEMM=0`.
public enum SmallGEMM {
    public static let enabled: Bool = {
        if ProcessInfo.processInfo.environment["PATCHGUARD_SMALL_GEMM"] == "0" { return false }
        return pg_avx512_supported() != 0
    }()

    /// The kernel itself; false when it did not run (no AVX-512F or no scratch memory).
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
                            c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        pg_sgemm_small(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != 0
    }

    /// Floats of a packed op(B) (k×n) for ``packB(_:_:ldb:transB:k:n:)``.
    @inlinable public static func packedCount(k: Int, n: Int) -> Int { pg_small_packed_b_count(k, n) }

    /// Packs op(B) (k×n) into `packed` (``packedCount(k:n:)`` floats, 64-byte aligned). Only when ``enabled``.
    /// The benchmark's GEMM share counts the packing as GEMM time.
    @inlinable
    public static func packB(_ packed: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                             k: Int, n: Int) {
        // Timed as GEMM work (no FLOPs), as OpenBLAS's own packing is inside its calls.
        let start = GEMMCounter.enabled ? GEMMCounter.now() : 0
        pg_small_pack_b(packed, b, ldb, transB ? 1 : 0, k, n)
        if start != 0 { GEMMCounter.record(since: start, m: 0, n: 0, k: 0) }
    }

    /// C (m×n) = alpha·op(A)·B + beta·C with B packed by ``packB(_:_:ldb:transB:k:n:)``. Only when ``enabled``.
    @inlinable
    public static func compute(transA: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                               packedB: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let start = GEMMCounter.enabled ? GEMMCounter.now() : 0
        pg_small_compute(transA ? 1 : 0, c, ldc, a, lda, packedB, m, n, k, alpha, beta)
        if start != 0 { GEMMCounter.record(since: start, m: m, n: n, k: k) }
    }
}

/// Counts the `Float` GEMMs' FLOPs and time while ``enabled`` (off by default; `patchguard bench` turns it on):
/// the benchmark's share of a step spent in GEMM and its FLOPs per image. A call's wall time counts in full when
/// it had the machine (a multi-threaded GEMM from serial code) and 1/`Parallel.threads` of it when it ran on one
/// of several parallel workers (attention's per-head GEMMs), so the total is comparable to the step's wall time.
public enum GEMMCounter {
    public nonisolated(unsafe) static var enabled = false

    public static func reset() { pg_gemm_count_reset() }

    /// FLOPs (2·m·n·k per call) and weighted seconds since the last reset.
    public static var totals: (flops: Double, seconds: Double) {
        var f: UInt64 = 0, ns: UInt64 = 0
        pg_gemm_count_read(&f, &ns)
        return (Double(f), Double(ns) * 1e-9)
    }

    @usableFromInline
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    @usableFromInline
    static func record(since start: UInt64, m: Int, n: Int, k: Int) {
        let elapsed = now() &- start
        let shared = Parallel.threads > 1 && OpenBLAS.threadCount == 1
        pg_gemm_count_add(UInt64(2 * m * n * k), shared ? elapsed / UInt64(Parallel.threads) : elapsed)
    }
}
