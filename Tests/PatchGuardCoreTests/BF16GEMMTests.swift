import CGemmBF16
import Foundation
import Testing
@testable import PatchGuardCore

/// The bf16 GEMM (`CGemmBF16`, ``BF16GEMM``) against its exact definition: Σ_p bf16(a_ip)·bf16(b_pj) computed in
/// Double from the inputs rounded by ``BF16GEMM/round(_:)``. The kernel sums those exact bf16 products in fp32, so the
/// only admissible difference is fp32 accumulation: |error| ≤ k·2⁻²³·Σ|products| in the worst case, ~1e-7 relative
/// in practice; the tolerance 2e-6·Σ|a·b| (for k ≤ 600) is far below the bf16 input rounding (2⁻⁸ relative), so a
/// wrong pair order, a lost tail column, a stale accumulator or a dropped k block fails it. On a CPU without
/// AVX512_BF16 only the refusal is tested (the kernels cannot run there).
@Suite struct BF16GEMMTests {
    static let supported = GEMMPrecision.bf16Supported

    /// Runs C = alpha·op(A)·op(B) + beta·C with padded leading dimensions and checks every element and the padding.
    func check(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float, serial: Bool,
               sourceLocation: SourceLocation = #_sourceLocation) {
        var rng = SeededRNG(seed: UInt64(m * 1009 + n * 31 + k) + (transA ? 1 : 0) + (transB ? 2 : 0))
        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
        let a = Tensor<Float>(shape: [(transA ? k : m) * lda]), b = Tensor<Float>(shape: [(transB ? n : k) * ldb])
        let c = Tensor<Float>(shape: [m * ldc])
        rng.fillNormal(a.buffer, std: 1); rng.fillNormal(b.buffer, std: 1); rng.fillNormal(c.buffer, std: 1)
        let c0 = Array(c.buffer)
        if serial {
            BF16GEMM.gemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.data, lda: lda,
                                b: b.data, ldb: ldb, beta: beta, c: c.data, ldc: ldc)
        } else {
            BF16GEMM.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.data, lda: lda,
                          b: b.data, ldb: ldb, beta: beta, c: c.data, ldc: ldc)
        }
        var worst = 0.0, padTouched = false
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, sa = 0.0
                for p in 0..<k {
                    let av = Double(BF16GEMM.round(transA ? a[p * lda + i] : a[i * lda + p]))
                    let bv = Double(BF16GEMM.round(transB ? b[j * ldb + p] : b[p * ldb + j]))
                    s += av * bv; sa += abs(av * bv)
                }
                let ref = Double(alpha) * s + Double(beta) * Double(c0[i * ldc + j])
                let scale = abs(Double(alpha)) * sa + abs(Double(beta) * Double(c0[i * ldc + j])) + 1e-30
                worst = max(worst, abs(ref - Double(c[i * ldc + j])) / scale)
            }
            for j in n..<ldc where c[i * ldc + j] != c0[i * ldc + j] { padTouched = true }
        }
        #expect(worst < 2e-6, "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB): max error \(worst) of Σ|a·b|",
                sourceLocation: sourceLocation)
        #expect(!padTouched, "wrote outside the n columns of C", sourceLocation: sourceLocation)
    }

    @Test(.enabled(if: supported), arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matchesExactBF16Products(transA: Bool, transB: Bool) {
        // Tails in every direction: m around the 12-row block, n around the 32-column panel, odd k, k across the
        // 128-pair block, k = 1.
        for (m, n, k) in [(1, 1, 1), (5, 17, 1), (13, 33, 7), (12, 32, 256), (11, 31, 257), (25, 65, 300),
                          (40, 70, 513), (3, 100, 2)] {
            for (alpha, beta) in [(Float(1), Float(0)), (0.7, 0.3)] {
                check(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta, serial: true)
            }
        }
    }

    /// The two-phase parallel path (large products from serial code) gives the same bits as the serial one: each
    /// element of C is summed in the same order whatever the split.
    @Test(.enabled(if: supported), arguments: [(false, false), (true, false), (false, true), (true, true)])
    func parallelPathIsBitIdenticalToSerial(transA: Bool, transB: Bool) {
        for (m, n, k) in [(260, 150, 131), (14, 700, 150), (300, 40, 100)] {
            check(m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.5, beta: 0.25, serial: false)
            var rng = SeededRNG(seed: 7)
            let a = Tensor<Float>(shape: [m * k]), b = Tensor<Float>(shape: [k * n])
            let c1 = Tensor<Float>(shape: [m * n]), c2 = Tensor<Float>(shape: [m * n])
            rng.fillNormal(a.buffer, std: 1); rng.fillNormal(b.buffer, std: 1)
            BF16GEMM.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a.data,
                          lda: transA ? m : k, b: b.data, ldb: transB ? k : n, beta: 0, c: c1.data, ldc: n)
            BF16GEMM.gemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a.data,
                                lda: transA ? m : k, b: b.data, ldb: transB ? k : n, beta: 0, c: c2.data, ldc: n)
            #expect(Array(c1.buffer) == Array(c2.buffer), "m=\(m) n=\(n) k=\(k): parallel ≠ serial")
        }
    }

    /// `matmul` on Float goes through the bf16 kernel exactly when the precision is bf16, and Double never does.
    @Test(.enabled(if: supported))
    func precisionSwitchRoutesFloatProducts() throws {
        let m = 9, n = 10, k = 11
        var rng = SeededRNG(seed: 3)
        let a = Tensor<Float>(shape: [m * k]), b = Tensor<Float>(shape: [k * n])
        rng.fillNormal(a.buffer, std: 1); rng.fillNormal(b.buffer, std: 1)
        let viaMatmul = Tensor<Float>(shape: [m * n]), direct = Tensor<Float>(shape: [m * n])
        let fp32 = Tensor<Float>(shape: [m * n])
        try GEMMPrecision.with(.bf16) { matmul(viaMatmul.data, a.data, b.data, m: m, n: n, k: k) }
        #expect(GEMMPrecision.current == .fp32)
        BF16GEMM.gemmSerial(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.data, lda: k, b: b.data,
                            ldb: n, beta: 0, c: direct.data, ldc: n)
        matmul(fp32.data, a.data, b.data, m: m, n: n, k: k)
        #expect(Array(viaMatmul.buffer) == Array(direct.buffer))
        #expect(Array(viaMatmul.buffer) != Array(fp32.buffer), "bf16 rounding must show in random products")
    }

    /// Round to nearest even at bit 16, denormals to signed zero, NaN quiet, infinities kept.
    @Test func roundingIsNearestEven() {
        #expect(BF16GEMM.round(1) == 1)
        #expect(BF16GEMM.round(1 + 0x1p-8) == 1)                     // tie → even (mantissa 0)
        #expect(BF16GEMM.round(1 + 0x1p-8 + 0x1p-20) == 1 + 0x1p-7)  // above the tie → up
        #expect(BF16GEMM.round(1 + 3 * 0x1p-8) == 1 + 0x1p-6)        // tie → even (up)
        #expect(BF16GEMM.round(-2.5) == -2.5)
        #expect(BF16GEMM.round(.infinity) == .infinity)
        #expect(BF16GEMM.round(-.infinity) == -.infinity)
        #expect(BF16GEMM.round(.nan).isNaN)
        #expect(BF16GEMM.round(Float.leastNormalMagnitude / 2) == 0)
        #expect(BF16GEMM.round(-Float.leastNormalMagnitude / 2).sign == .minus)
        #expect(BF16GEMM.round(Float.greatestFiniteMagnitude) == .infinity)  // rounds past the largest bf16
    }

    /// The vector conversion the packing uses agrees with the scalar reference on special values and random ones
    /// (a 1×1×1 product with b = 1 returns bf16(a) exactly).
    @Test(.enabled(if: supported))
    func packingRoundsLikeTheReference() {
        var rng = SeededRNG(seed: 11)
        var values: [Float] = [0, -0, 1, 1 + 0x1p-8, 1 + 3 * 0x1p-8, Float.leastNormalMagnitude / 2, 1e-40, -1e-40,
                               Float.greatestFiniteMagnitude, 3.14159, -65504, 1e30]
        for _ in 0..<200 { values.append(Float(rng.normal()) * Float(exp(rng.uniform() * 20 - 10))) }
        for v in values {
            var a = v, b: Float = 1, c: Float = 0
            BF16GEMM.gemmSerial(transA: false, transB: false, m: 1, n: 1, k: 1, alpha: 1, a: &a, lda: 1, b: &b, ldb: 1,
                                beta: 0, c: &c, ldc: 1)
            #expect(c == BF16GEMM.round(v) || (c.isNaN && BF16GEMM.round(v).isNaN), "bf16(\(v)): kernel \(c)")
        }
    }

    /// bf16 is refused on a CPU without the instruction (and the precision stays fp32); allowed where it exists.
    @Test func bf16IsRefusedWithoutTheInstruction() throws {
        if Self.supported {
            try GEMMPrecision.with(.bf16) { #expect(GEMMPrecision.current == .bf16) }
        } else {
            #expect(throws: PatchGuardError.self) { try GEMMPrecision.set(.bf16) }
        }
        #expect(GEMMPrecision.current == .fp32)
    }
}
