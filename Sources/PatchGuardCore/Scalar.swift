import CBLAS
@_exported import RealModule

/// The element type of every numeric kernel: `Float` for training and inference, `Double` for gradient checks.
///
/// Kernels are generic over `NNScalar` and marked `@inlinable` (or live in the module that calls them) so they are
/// specialised; `gemm` dispatches to OpenBLAS `sgemm` / `dgemm`, or for `Float` at ``GEMMPrecision`` bf16 to
/// ``BF16GEMM``.
public protocol NNScalar: BinaryFloatingPoint & Real & Sendable & Codable where Self.RawSignificand: FixedWidthInteger {
    /// Row-major `C = alpha * op(A) * op(B) + beta * C`, with `op(A)` of shape (m, k) and `op(B)` of shape (k, n).
    /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored (before transposition).
    static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                     alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// `gemm` for a small product on the calling thread (attention's per-head products, run on parallel
    /// workers): for `Float` in fp32 on an AVX-512 CPU the small-product kernel (``SmallGEMM``), else `gemm`.
    static func gemmSmall(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                          alpha: Self, a: UnsafePointer<Self>, lda: Int,
                          b: UnsafePointer<Self>, ldb: Int,
                          beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
}

extension NNScalar {
    @inlinable
    public static func gemmSmall(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                 alpha: Self, a: UnsafePointer<Self>, lda: Int,
                                 b: UnsafePointer<Self>, ldb: Int,
                                 beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int) {
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c, ldc: ldc)
    }
}

extension Float: NNScalar {
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        let start = GEMMCounter.enabled ? GEMMCounter.now() : 0
        if GEMMPrecision.current == .bf16 {
            BF16GEMM.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
                          ldb: ldb, beta: beta, c: c, ldc: ldc)
        } else {
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c,
                        blasint(ldc))
        }
        if start != 0 { GEMMCounter.record(since: start, m: m, n: n, k: k) }
    }

    @inlinable
    public static func gemmSmall(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                 alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                 b: UnsafePointer<Float>, ldb: Int,
                                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        if GEMMPrecision.current == .fp32 && SmallGEMM.enabled {
            let start = GEMMCounter.enabled ? GEMMCounter.now() : 0
            if SmallGEMM.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc) {
                if start != 0 { GEMMCounter.record(since: start, m: m, n: n, k: k) }
                return
            }
        }
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c, ldc: ldc)
    }
}

extension Double: NNScalar {
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Double, a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}
