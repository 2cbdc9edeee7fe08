import PatchGuardCore

/// A ``PatchGuardModel`` seen by attacks in *training mode*: every forward of ``patchLogits(_:batch:)`` and
/// ``inputGradient(_:batch:dLogits:dImages:)`` runs the discriminator with its dropout on (p =
/// `model.discriminator.dropout`, on the attention weights, the attention output, inside the MLP and after it),
/// a fresh mask per forward drawn from this detector's own seeded generator. The ViT has no dropout, so it is the
/// same in both modes.
///
/// This is how the official code attacks during training (`pgd_attack` is called while the model is in
/// `model.train()`), offered by `attack.train_mode: true`; our default attacks the evaluation-mode model (no
/// dropout), the model the evaluation scores. The trainer reseeds the generator per batch from (seed, epoch,
/// batch) (``reseed(_:)``), so training stays deterministic and resumable. With dropout 0 it is the
/// evaluation-mode model exactly.
public final class TrainingModeDetector: PatchDetector {
    public let model: PatchGuardModel<Float>
    /// The dropout generator (never nil; Optional only for the model's `inout SeededRNG?` passes).
    var rng: SeededRNG?

    public init(_ model: PatchGuardModel<Float>, rng: SeededRNG) {
        self.model = model
        self.rng = rng
    }

    /// Restarts the dropout masks from `rng`.
    public func reseed(_ rng: SeededRNG) { self.rng = rng }

    public var imageSize: Int { model.imageSize }
    public var numPatches: Int { model.numPatches }
    /// Two calls on the same images differ when the discriminator has dropout. (The training attack takes one
    /// gradient sample per step, `eot_samples` 1, as the official code does.)
    public var isStochastic: Bool { model.discriminator.config.dropout > 0 }

    public func patchLogits(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        model.forwardPass(images, batch: batch, upstream: nil, dImages: nil, dropout: &rng)
    }

    public func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dLogits upstream: UnsafePointer<Float>,
                              dImages: UnsafeMutablePointer<Float>) -> [Float] {
        model.kernels.zero(dImages, count: batch * 3 * imageSize * imageSize)
        return model.forwardPass(images, batch: batch, upstream: upstream, dImages: dImages, dropout: &rng)
    }

    public func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dImages: UnsafeMutablePointer<Float>,
                              dLogitsFor: ([Float]) -> [Float]) -> [Float] {
        model.inputGradient(images, batch: batch, dImages: dImages, dLogitsFor: dLogitsFor, dropout: &rng)
    }
}
