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
