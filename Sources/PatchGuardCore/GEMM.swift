/// Matrix products used by the ops. All matrices are dense row-major.
///
/// `matmul` computes `C (m×n) = beta·C + alpha·op(A)·op(B)` where `op(A)` is (m×k) and `op(B)` is (k×n); with
/// `transA`, A is stored (k×m); with `transB`, B is stored (n×k). Leading dimensions are derived from the shapes.
@inlinable
public func matmul<T: NNScalar>(_ c: UnsafeMutablePointer<T>, _ a: UnsafePointer<T>, _ b: UnsafePointer<T>,
                                m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                                alpha: T = 1, beta: T = 0) {
    T.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
           a: a, lda: transA ? m : k, b: b, ldb: transB ? k : n, beta: beta, c: c, ldc: n)
}

/// The naive triple loop that `matmul` must agree with (tests and the debug start-up check use it).
public func naiveMatmul<T: NNScalar>(_ c: UnsafeMutablePointer<T>, _ a: UnsafePointer<T>, _ b: UnsafePointer<T>,
                                     m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                                     alpha: T = 1, beta: T = 0) {
    for i in 0..<m {
        for j in 0..<n {
            var s: T = 0
            for p in 0..<k {
                let av = transA ? a[p * m + i] : a[i * k + p]
                let bv = transB ? b[j * k + p] : b[p * n + j]
                s += av * bv
            }
            c[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * n + j])
        }
    }
}
