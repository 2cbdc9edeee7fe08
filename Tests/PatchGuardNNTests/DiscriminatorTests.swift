import Foundation
import PatchGuardCore
import Testing
import GradCheckSupport
@testable import PatchGuardNN

/// Gradient checks (Double, central differences) of the attention discriminator, the per-patch BCE and the
/// attention KL regulariser.
@Suite struct DiscriminatorTests {
    // Irregular tiny shapes: B=2, Np=5, C=12, NH=3, hidden 7, two blocks.
    func make(dropout: Double) throws -> AttentionDiscriminator<Double> {
        var rng = SeededRNG(seed: 11)
        let d = try AttentionDiscriminator<Double>(
            config: .init(dim: 12, numPatches: 5, layers: 2, heads: 3, hidden: 7, dropout: dropout), using: &rng)
        // LayerNorm weights and biases away from their 1/0 init so their gradients are exercised.
        for name in d.params.entries.map(\.name) where name.contains("layer_norm") || name.hasSuffix("bias") {
            rng.fillNormal(d.params[name].buffer, mean: name.hasSuffix("weight") ? 1 : 0, std: 0.3)
        }
        return d
    }

    func checkAll(training: Bool) throws {
        let d = try make(dropout: training ? 0.3 : 0)
        var rng = SeededRNG(seed: 5)
        let B = 2, Np = 5, C = 12
        let features = randomTensor([B, Np, C], &rng)
        let r = randomTensor([B, Np], &rng)
        let labels = Tensor<Double>(shape: [B, Np], values: [0, 1, 0, 0, 1, 1, 0, 0, 1, 0])
        func loss() -> Double {
            var dropRNG = SeededRNG(seed: 99)   // same dropout masks at every evaluation
            let logits = d.forward(features: features.data, batch: B, training: training, using: &dropRNG)
            return weightedSum(r.data, logits, count: B * Np) + PatchBCE.forward(logits, labels.data, batch: B, patches: Np)
        }
        _ = loss()
        let dLogits = r.copy()
        PatchBCE.backward(dLogits.data, d.logits.data, labels.data, batch: B, patches: Np)
        d.grads.zero()
        let dFeatures = Tensor<Double>(shape: [B, Np, C])
        d.backward(dLogits: dLogits.data, dFeatures: dFeatures.data)
        expectGradient("features", of: features, analytic: dFeatures, loss: loss)
        for e in d.params.entries {
            expectGradient(e.name, at: d.params.pointer(e.name), count: e.count, analytic: d.grads.pointer(e.name), loss: loss)
        }
    }

    @Test func gradientsInEvalMode() throws { try checkAll(training: false) }
    @Test func gradientsWithDropout() throws { try checkAll(training: true) }

    @Test func skippingParameterGradientsKeepsInputGradient() throws {
        let d = try make(dropout: 0)
        var rng = SeededRNG(seed: 6)
        let f = randomTensor([2, 5, 12], &rng), r = randomTensor([2, 5], &rng)
        var noDrop = SeededRNG(seed: 0)
        d.forward(features: f.data, batch: 2, training: false, using: &noDrop)
        d.grads.zero()
        let full = Tensor<Double>(shape: [2, 5, 12]), inputOnly = Tensor<Double>(shape: [2, 5, 12])
        d.backward(dLogits: r.data, dFeatures: full.data)
        d.grads.zero()
        d.backward(dLogits: r.data, dFeatures: inputOnly.data, computeParameterGradients: false)
        #expect(full.array == inputOnly.array)
        #expect(d.grads.storage.array.allSatisfy { $0 == 0 })
    }

    @Test func bceMatchesDefinition() {
        // x = 2, y = 1: log(1 + e^-2); x = -1, y = 0: log(1 + e^-1); two images → averaged over images.
        let logits: [Double] = [2, -1], labels: [Double] = [1, 0]
        let l = PatchBCE.forward(logits, labels, batch: 2, patches: 1)
        let expected: Double = (Foundation.log(1 + Foundation.exp(-2.0)) + Foundation.log(1 + Foundation.exp(-1.0))) / 2
        #expect(abs(l - expected) < 1e-12)
        var rng = SeededRNG(seed: 3)
        let x = randomTensor([3, 4], &rng, std: 3), y = uniformTensor([3, 4], &rng, lo: 0, hi: 1)
        let d = Tensor<Double>(shape: [3, 4])
        PatchBCE.backward(d.data, x.data, y.data, batch: 3, patches: 4)
        expectGradient("bce logits", of: x, analytic: d, loss: { PatchBCE.forward(x.data, y.data, batch: 3, patches: 4) })
    }

    @Test func attentionKLMatchesDefinitionAndGradient() {
        var rng = SeededRNG(seed: 4)
        let B = 2, NH = 3, N = 6, s = 1
        // Row-stochastic probabilities from a softmax of random scores.
        let scores = randomTensor([B, NH, N, N], &rng)
        let probs = Tensor<Double>(shape: [B, NH, N, N])
        Softmax.forward(probs.data, scores.data, rows: B * NH * N, length: N)
        let kl = AttentionKL.forward(probs.data, batch: B, heads: NH, tokens: N, prefix: s)
        // By hand: mean over the 5×5 patch blocks of U(log U − log(A + 1e-8)) (the official loss's ε).
        var manual = 0.0
        let u = 1.0 / 5
        for bh in 0..<(B * NH) {
            for i in 1..<N { for j in 1..<N { manual += u * (log(u) - log(probs[bh * 36 + i * 6 + j] + 1e-8)) } }
        }
        #expect(abs(kl - manual / Double(B * NH * 25)) < 1e-14)
        #expect(kl > 0)
        // Uniform patch attention (rows of the patch block equal to U) gives U·(log U − log(U + ε)) ≈ −ε.
        let uniform = Tensor<Double>(shape: [1, 1, N, N], repeating: 1.0 / 5)
        #expect(abs(AttentionKL.forward(uniform.data, batch: 1, heads: 1, tokens: N, prefix: s) - u * log(u / (u + 1e-8)))
                < 1e-15)
        let d = Tensor<Double>(shape: [B, NH, N, N])
        AttentionKL.backward(d.data, probs.data, batch: B, heads: NH, tokens: N, prefix: s, weight: 0.7)
        expectGradient("kl probs", of: probs, analytic: d,
                       loss: { 0.7 * AttentionKL.forward(probs.data, batch: B, heads: NH, tokens: N, prefix: s) })
    }

    @Test func adamWMatchesHandComputedStep() {
        // One step from θ=1, g=0.5, lr=0.1, wd=0.01: m̂ = g, v̂ = g², θ = 1·(1 − 0.001) − 0.1·0.5/(0.5 + 1e-8).
        var opt = AdamW(weightDecay: 0.01)
        var p: [Double] = [1], g: [Double] = [0.5], m: [Double] = [0], v: [Double] = [0]
        opt.update(params: &p, grads: g, m: &m, v: &v, count: 1, lr: 0.1)
        #expect(abs(p[0] - (0.999 - 0.1 * 0.5 / (0.5 + 1e-8))) < 1e-12)
        #expect(opt.step == 1)
        _ = g
    }

    @Test func cosineScheduleEndpoints() {
        #expect(cosineLearningRate(base: 8e-4, minFactor: 0.0125, epoch: 0, epochs: 10) == 8e-4)
        let mid = cosineLearningRate(base: 8e-4, minFactor: 0.0125, epoch: 5, epochs: 10)
        #expect(abs(mid - (8e-4 * 0.0125 + 8e-4) / 2) < 1e-15)
    }
}
