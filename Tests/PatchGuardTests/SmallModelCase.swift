import PatchGuardCore
import PatchGuardNN
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// A random-weight PatchGuard model at 32 px (8-px patches, width 64, 4 heads, a 1-block discriminator without
/// dropout), three random images and a random upstream `dLogits`, all drawn from one seeded generator in that
/// order: the fixture of the tests that compare two ways of running the same model.
struct SmallModelCase {
    let model: PatchGuardModel<Float>
    let batch = 3
    let images: [Float]
    let dLogits: [Float]

    init(depth: Int, seed: UInt64) throws {
        var config = JobConfig()
        config.data.imageSize = 32
        config.model.discriminator = DiscriminatorConfig(layers: 1, heads: 4, hidden: 64, dropout: 0)
        config.train.regLayers = [2]; config.train.regWeights = [0.01]
        let backbone = ViTConfig(imageSize: 32, patchSize: 8, dim: 64, depth: depth, heads: 4, mlpRatio: 2)
        var rng = SeededRNG(seed: seed)
        let model = try PatchGuardModel<Float>(config: config, maxBatch: 3, backbone: backbone, using: &rng)
        self.model = model
        images = (0..<(3 * 3 * 32 * 32)).map { _ in Float(rng.uniform()) }
        dLogits = (0..<(3 * model.numPatches)).map { _ in Float(rng.normal()) }
    }

    /// One input-gradient pass (a caching forward + input-only backward): the patch logits and dImages.
    func gradientPass() -> (logits: [Float], grad: [Float]) {
        var grad = [Float](repeating: 0, count: images.count)
        let logits = images.withUnsafeBufferPointer { x in
            dLogits.withUnsafeBufferPointer { d in
                grad.withUnsafeMutableBufferPointer { g in
                    model.inputGradient(x.baseAddress!, batch: batch, dLogits: d.baseAddress!, dImages: g.baseAddress!)
                }
            }
        }
        return (logits, grad)
    }
}
