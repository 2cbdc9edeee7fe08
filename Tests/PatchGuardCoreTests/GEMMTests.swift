import Testing
@testable import PatchGuardCore

/// `matmul` (OpenBLAS) against the naive triple loop, all four transpose combinations, odd sizes, Float and Double,
/// with alpha/beta accumulation.
@Suite struct GEMMTests {
    func check<T: NNScalar>(_: T.Type, m: Int, n: Int, k: Int, transA: Bool, transB: Bool, tol: T,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        var rng = SeededRNG(seed: UInt64(m * 131 + n * 17 + k) + (transA ? 1 : 0) + (transB ? 2 : 0))
        let a = Tensor<T>(shape: [m * k]), b = Tensor<T>(shape: [k * n])
        let c1 = Tensor<T>(shape: [m * n]), c2 = Tensor<T>(shape: [m * n])
        rng.fillNormal(a.buffer, std: 1); rng.fillNormal(b.buffer, std: 1); rng.fillNormal(c1.buffer, std: 1)
        c2.data.update(from: c1.data, count: m * n)
        matmul(c1.data, a.data, b.data, m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.7, beta: 0.3)
        naiveMatmul(c2.data, a.data, b.data, m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.7, beta: 0.3)
        var worst: T = 0
        for i in 0..<(m * n) { worst = max(worst, abs(c1[i] - c2[i]) / (1 + abs(c2[i]))) }
        #expect(worst < tol, "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB): max rel err \(worst)",
                sourceLocation: sourceLocation)
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func floatMatchesNaive(transA: Bool, transB: Bool) {
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (33, 17, 65), (129, 31, 47)] {
            check(Float.self, m: m, n: n, k: k, transA: transA, transB: transB, tol: 1e-4)
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func doubleMatchesNaive(transA: Bool, transB: Bool) {
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (33, 17, 65), (129, 31, 47)] {
            check(Double.self, m: m, n: n, k: k, transA: transA, transB: transB, tol: 1e-12)
        }
    }

    @Test func naiveIsTheProduct() {
        // [[1,2],[3,4]] · [[5,6],[7,8]] = [[19,22],[43,50]]: guards the reference itself.
        let a: [Double] = [1, 2, 3, 4], b: [Double] = [5, 6, 7, 8]
        var c = [Double](repeating: 0, count: 4)
        naiveMatmul(&c, a, b, m: 2, n: 2, k: 2)
        #expect(c == [19, 22, 43, 50])
        matmul(&c, a, b, m: 2, n: 2, k: 2, transA: true)
        #expect(c == [26, 30, 38, 44])
    }
}

/// The fp32 small-product kernel (`pg_sgemm_small`) against a Double triple loop: all four transpose combinations,
/// sizes around its 8-row blocks and 16-column panels (and attention's 197×197×32 and 197×32×197), leading
/// dimensions wider than the operands (attention reads q, k, v out of the fused qkv rows), alpha/beta, and beta 0
/// on a C full of NaN (never read). Tolerance: fp32 sums of k products of N(0,1) values, relative to 1 + |c|.
@Suite(.enabled(if: SmallGEMM.enabled, "needs AVX-512F"))
struct SmallGEMMTests {
    func check(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, beta: Float,
               sourceLocation: SourceLocation = #_sourceLocation) {
        var rng = SeededRNG(seed: UInt64(m * 131 + n * 17 + k) + (transA ? 1 : 0) + (transB ? 2 : 0))
        let pad = 5  // extra columns in every stored row
        let aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n
        let lda = aCols + pad, ldb = bCols + pad, ldc = n + pad
        let a = Tensor<Float>(shape: [aRows * lda]), b = Tensor<Float>(shape: [bRows * ldb])
        let c = Tensor<Float>(shape: [m * ldc])
        rng.fillNormal(a.buffer, std: 1); rng.fillNormal(b.buffer, std: 1)
        if beta == 0 { c.buffer.update(repeating: .nan) } else { rng.fillNormal(c.buffer, std: 1) }
        for i in 0..<m { for j in n..<ldc { c[i * ldc + j] = 42 } }  // the pad columns must stay untouched
        let before = c.array
        let alpha: Float = 0.7
        #expect(SmallGEMM.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.data, lda: lda,
                               b: b.data, ldb: ldb, beta: beta, c: c.data, ldc: ldc))
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p], bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                let want = Double(alpha) * s + (beta == 0 ? 0 : Double(beta) * Double(before[i * ldc + j]))
                worst = max(worst, abs(Double(c[i * ldc + j]) - want) / (1 + abs(want)))
            }
            for j in n..<ldc where c[i * ldc + j] != 42 { worst = .infinity }
        }
        #expect(worst < 1e-5, "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) beta=\(beta): max rel err \(worst)",
                sourceLocation: sourceLocation)
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matchesTheProduct(transA: Bool, transB: Bool) {
        for (m, n, k) in [(1, 1, 1), (7, 15, 3), (8, 16, 32), (9, 17, 33), (23, 33, 8), (17, 48, 65), (197, 197, 32),
                          (197, 32, 197)] {
            for beta: Float in [0, 1, 0.3] { check(m: m, n: n, k: k, transA: transA, transB: transB, beta: beta) }
        }
    }

    @Test func emptyReductionScalesC() {
        let c = Tensor<Float>(shape: [6]), nanC = Tensor<Float>(shape: [6], repeating: .nan)
        c.buffer.update(repeating: 2)
        let x = Tensor<Float>(shape: [1])
        #expect(SmallGEMM.gemm(transA: false, transB: false, m: 2, n: 3, k: 0, alpha: 1, a: x.data, lda: 1,
                               b: x.data, ldb: 3, beta: 0.5, c: c.data, ldc: 3))
        #expect(c.array == [Float](repeating: 1, count: 6))
        _ = SmallGEMM.gemm(transA: false, transB: false, m: 2, n: 3, k: 0, alpha: 1, a: x.data, lda: 1, b: x.data,
                           ldb: 3, beta: 0, c: nanC.data, ldc: 3)
        #expect(nanC.array == [Float](repeating: 0, count: 6))
    }
}
