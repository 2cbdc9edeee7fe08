import Foundation
import Testing
import GradCheckSupport
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// End-to-end gradient check of the whole PatchGuard model in Double: ViT + discriminator + per-patch BCE +
/// attention KL regulariser (two layers), dropout active (fixed masks), every parameter and the image.
/// Tolerance 1e-5 (not 1e-6) with step 2e-5: the loss is O(1) while single-parameter gradients are ~1e-5, so the
/// round-off of a central difference (~1e-16·L/h ≈ 1e-11) is ~1e-6 relative; the class token, which every patch
/// attends to, has enough curvature that h = 1e-4 already shows ~2e-5 truncation error.
@Suite struct ModelGradientTests {
    @Test func wholeModelGradients() throws {
        var config = JobConfig()
        config.data.imageSize = 8
        config.model.discriminator = DiscriminatorConfig(layers: 1, heads: 3, hidden: 7, dropout: 0.2)
        config.train.regLayers = [1, 2]
        config.train.regWeights = [0.3, 0.7]   // large, so the regulariser's share of the gradient is visible
        let backbone = ViTConfig(imageSize: 8, patchSize: 4, dim: 12, depth: 2, heads: 3, mlpRatio: 1.5)
        var rng = SeededRNG(seed: 21)
        let model = try PatchGuardModel<Double>(config: config, maxBatch: 2, backbone: backbone, using: &rng)
        // Move LayerNorm and bias parameters off their init values so their gradients are exercised.
        for arena in [model.vit.parameters, model.discriminator.params] {
            for e in arena.entries where e.name.contains("norm") || e.name.hasSuffix("bias") {
                rng.fillNormal(arena[e.name].buffer, mean: e.name.hasSuffix("weight") ? 1 : 0, std: 0.2)
            }
        }
        let B = 2, S = 8, Np = 4
        let imageTensor = uniformTensor([B, 3, S, S], &rng, lo: 0.05, hi: 0.95)
        let labels: [Double] = [0, 1, 0, 0, 1, 1, 0, 1]
        #expect(labels.count == B * Np)
        func loss() -> Double {
            var drop = SeededRNG(seed: 77)
            model.zeroGradients()
            let parts = model.trainingPass(images: imageTensor.array, labels: labels, batch: B, using: &drop)
            return parts.bce + parts.reg
        }
        let dImage = Tensor<Double>(shape: [B, 3, S, S])
        var drop = SeededRNG(seed: 77)
        model.zeroGradients()
        let parts = model.trainingPass(images: imageTensor.array, labels: labels, batch: B, using: &drop, dImage: dImage.data)
        #expect(parts.reg > 0)
        // Snapshot analytic gradients (loss() re-zeroes them).
        let vitGrads = model.vit.gradients.storage.copy(), discGrads = model.discriminator.grads.storage.copy()
        for (arena, grads) in [(model.vit.parameters, vitGrads), (model.discriminator.params, discGrads)] {
            for e in arena.entries {
                expectGradient(e.name, at: arena.pointer(e.name), count: e.count, analytic: grads.data + e.offset,
                               loss: loss, step: 2e-5, tol: 1e-5, maxSamples: 60)
            }
        }
        expectGradient("image", of: imageTensor, analytic: dImage, loss: loss, step: 2e-5, tol: 1e-5)
    }
}
