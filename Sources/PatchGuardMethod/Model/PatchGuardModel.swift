import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// The PatchGuard detector: ViT backbone → final-normed patch tokens of the feature layer(s) (concatenated along
/// channels) → attention discriminator → one logit per patch. The optimizer state lives outside the model
/// (``PatchGuardOptimizerState``, owned by the trainer). All maths goes through ``kernels``.
///
/// Shapes: images (B, 3, S, S) in [0,1]; features (B, Np, C·L) for L feature layers; logits (B, Np).
/// Training passes add into the gradient arenas; ``zeroGradients()`` and ``PatchGuardOptimizerState/step(model:lr:)``
/// bracket a step.
public final class PatchGuardModel<T: NNScalar> {
    public let vit: ViT<T>
    public let discriminator: AttentionDiscriminator<T>
    public let featureLayers: [Int]
    public let regLayers: [Int]
    public let regWeights: [Double]
    public let imageSize: Int
    public let patchSize: Int
    public let numPatches: Int
    public let maxBatch: Int
    let dim: Int
    let prefixTokens: Int

    /// The backend of both networks.
    public let kernels: any Kernels<T>

    // Scratch for one chunk of ≤ maxBatch images.
    let features: Tensor<T>     // (B, Np, C·L)
    let dFeatures: Tensor<T>    // (B, Np, C·L)
    let dFeatureLayers: [Tensor<T>]   // L × (B, Np, C) when L > 1
    let dLogits: Tensor<T>      // (B, Np)
    let dAttention: [Tensor<T>] // per reg layer (B, NH, N, N)

    /// Builds a randomly initialised model (timm init for the ViT, PyTorch init for the discriminator).
    /// `backbone` replaces the `model.arch` preset (tests use tiny irregular shapes). Jobs build it from a whole
    /// job config with `init(config:maxBatch:backbone:using:kernels:)`.
    public init(model modelConfig: ModelConfig, train trainConfig: TrainConfig, imageSize size: Int, maxBatch: Int? = nil,
                backbone: ViTConfig? = nil, using rng: inout SeededRNG, kernels: (any Kernels<T>)? = nil) throws {
        let k = kernels ?? Backend.cpu.kernels(T.self)
        self.kernels = k
        let vitConfig = try backbone ?? ViTConfig.preset(modelConfig.arch, imageSize: size)
        guard size % vitConfig.patchSize == 0 else {
            throw PatchGuardError.config("data.image_size \(size) is not a multiple of the patch size " +
                                         "\(vitConfig.patchSize) of \(modelConfig.arch)")
        }
        let depth = vitConfig.depth
        featureLayers = modelConfig.featureLayers.isEmpty ? [depth] : modelConfig.featureLayers
        for l in featureLayers where !(1...depth).contains(l) {
            throw PatchGuardError.config("model.feature_layers: layer \(l) is outside 1...\(depth) for \(modelConfig.arch)")
        }
        // Regulariser layers beyond the backbone's depth are an error, not silently dropped.
        for l in trainConfig.regLayers where !(1...depth).contains(l) {
            throw PatchGuardError.config("train.reg_layers: layer \(l) is outside 1...\(depth) for \(modelConfig.arch) " +
                                         "(set train.reg_layers/reg_weights for this depth, e.g. [\(depth / 2), \(depth)])")
        }
        regLayers = trainConfig.regLayers
        regWeights = trainConfig.regWeights
        self.maxBatch = maxBatch ?? max(trainConfig.batchSize, 8)
        vit = try ViT<T>(config: vitConfig, maxBatch: self.maxBatch, kernels: k)
        vit.initializeParameters(using: &rng)
        self.imageSize = size
        patchSize = vitConfig.patchSize
        let grid = imageSize / patchSize
        numPatches = grid * grid
        dim = vitConfig.dim
        prefixTokens = 1 + vitConfig.numRegisters
        let d = modelConfig.discriminator
        discriminator = try AttentionDiscriminator<T>(
            config: .init(dim: dim * featureLayers.count, numPatches: numPatches, layers: d.layers, heads: d.heads,
                          hidden: d.hidden, dropout: d.dropout), using: &rng, kernels: k)
        let L = featureLayers.count, B = self.maxBatch, np = grid * grid, C = vitConfig.dim
        let N = np + 1 + vitConfig.numRegisters
        let alloc = k.allocator
        features = Tensor(shape: [B, np, C * L], allocator: alloc)
        dFeatures = Tensor(shape: [B, np, C * L], allocator: alloc)
        dFeatureLayers = L > 1 ? (0..<L).map { _ in Tensor(shape: [B, np, C], allocator: alloc) } : []
        dLogits = Tensor(shape: [B, np], allocator: alloc)
        dAttention = trainConfig.regLayers.map { _ in Tensor(shape: [B, vitConfig.heads, N, N], allocator: alloc) }
    }

    public var summary: String {
        let c = vit.config
        return "\(c.depth)-block ViT (dim \(c.dim), \(c.heads) heads, patch \(c.patchSize), \(numPatches) patches, " +
            "\(vit.parameterCount / 1000)k params) + \(discriminator.config.layers)-block discriminator " +
            "(\(discriminator.params.totalCount / 1000)k params); features from layer(s) \(featureLayers)"
    }

    // MARK: forward

    /// ViT forward + feature gathering for `B ≤ maxBatch` images; returns the discriminator input.
    /// `storeCaches` false: a forward-only pass (no backward may follow; see `ViT.forward`).
    func backboneForward(_ images: UnsafePointer<T>, batch B: Int, attention: Bool,
                         storeCaches: Bool = true) -> UnsafePointer<T> {
        // Batch and layer indices are validated at init; a failure here is a programming error.
        try! vit.forward(images: images, batch: B, featureLayers: featureLayers, attentionLayers: attention ? regLayers : [],
                         storeCaches: storeCaches)
        if featureLayers.count == 1 { return UnsafePointer(vit.features(layer: featureLayers[0]).data) }
        let L = featureLayers.count, C = dim
        for (li, l) in featureLayers.enumerated() {
            // features[:, :, li·C ..< (li+1)·C] = features of layer l (B·Np rows)
            kernels.copy2D(features.data + li * C, dstStride: C * L, vit.features(layer: l).data, srcStride: C,
                           rows: B * numPatches, columns: C)
        }
        return UnsafePointer(features.data)
    }

    /// Backward from `dFeatures` (B, Np, C·L) into the ViT (with optional attention gradients).
    func backboneBackward(batch B: Int, dAttention: [Int: UnsafePointer<T>], parameters: Bool,
                          dImage: UnsafeMutablePointer<T>?) {
        var dF: [Int: UnsafePointer<T>] = [:]
        if featureLayers.count == 1 {
            dF[featureLayers[0]] = UnsafePointer(dFeatures.data)
        } else {
            let L = featureLayers.count, C = dim
            for (li, l) in featureLayers.enumerated() {
                let d = dFeatureLayers[li].data
                kernels.copy2D(d, dstStride: C, dFeatures.data + li * C, srcStride: C * L, rows: B * numPatches,
                               columns: C)
                dF[l] = UnsafePointer(d)
            }
        }
        try! vit.backward(dFeatures: dF, dAttention: dAttention, computeParameterGradients: parameters, dImage: dImage)
    }

    /// One training pass on `B ≤ maxBatch` images with patch labels (B, Np): forward in training mode (dropout),
    /// loss = BCE + Σ wₗ·KLₗ, backward adding into the parameter gradients (and into `dImage` (B, 3, S, S)
    /// when given). Returns the two loss terms.
    public func trainingPass(images: [T], labels: [T], batch B: Int, using rng: inout SeededRNG,
                             dImage: UnsafeMutablePointer<T>? = nil) -> (bce: Double, reg: Double) {
        precondition(B <= maxBatch && images.count == B * 3 * imageSize * imageSize && labels.count == B * numPatches)
        return images.withUnsafeBufferPointer { img in
            labels.withUnsafeBufferPointer { lab in
                let feats = backboneForward(img.baseAddress!, batch: B, attention: !regLayers.isEmpty)
                let logits = discriminator.forward(features: feats, batch: B, training: true, using: &rng)
                let k = kernels
                let bce = k.patchBCEForward(logits, lab.baseAddress!, batch: B, patches: numPatches)
                let N = numPatches + prefixTokens, NH = vit.config.heads
                var reg = 0.0
                var dAttn: [Int: UnsafePointer<T>] = [:]
                for (i, l) in regLayers.enumerated() where regWeights[i] != 0 {
                    let a = vit.attention(layer: l).data
                    reg += regWeights[i] * k.attentionKLForward(a, batch: B, heads: NH, tokens: N, prefix: prefixTokens)
                    let d = dAttention[i].data
                    k.zero(d, count: B * NH * N * N)
                    k.attentionKLBackward(d, a, batch: B, heads: NH, tokens: N, prefix: prefixTokens,
                                          weight: regWeights[i])
                    dAttn[l] = UnsafePointer(d)
                }
                k.zero(dLogits.data, count: B * numPatches)
                k.patchBCEBackward(dLogits.data, logits, lab.baseAddress!, batch: B, patches: numPatches, weight: 1)
                k.zero(dFeatures.data, count: B * numPatches * dim * featureLayers.count)
                discriminator.backward(dLogits: dLogits.data, dFeatures: dFeatures.data)
                backboneBackward(batch: B, dAttention: dAttn, parameters: true, dImage: dImage)
                return (bce, reg)
            }
        }
    }

    // MARK: optimisation

    /// Zeroes both gradient arenas (once per step, before the step's passes).
    public func zeroGradients() {
        kernels.zero(vit.gradients.storage.data, count: vit.gradients.totalCount)
        kernels.zero(discriminator.grads.storage.data, count: discriminator.grads.totalCount)
    }
}

/// AdamW state of a ``PatchGuardModel``'s two parts, outside the model: the trainer owns it and checkpoints save
/// it (``PatchGuardModel/saveCheckpoint(path:epoch:config:optimizer:)``). Both parts step together, so they share
/// one step count.
public final class PatchGuardOptimizerState<T: NNScalar> {
    public let vit: AdamWState<T>
    public let discriminator: AdamWState<T>

    public init(model: PatchGuardModel<T>, weightDecay: Double) {
        vit = AdamWState(parameters: model.vit.parameters, weightDecay: weightDecay, allocator: model.kernels.allocator)
        discriminator = AdamWState(parameters: model.discriminator.params, weightDecay: weightDecay,
                                   allocator: model.kernels.allocator)
    }

    /// Steps taken so far.
    public var step: Int {
        get { vit.step }
        set { vit.step = newValue; discriminator.step = newValue }
    }

    /// One AdamW step on the ViT and the discriminator from their accumulated gradients.
    public func step(model: PatchGuardModel<T>, lr: Double) {
        vit.update(parameters: model.vit.parameters, gradients: model.vit.gradients, lr: lr, kernels: model.kernels)
        discriminator.update(parameters: model.discriminator.params, gradients: model.discriminator.grads, lr: lr,
                             kernels: model.kernels)
    }
}

/// The detector protocol (Float: what training, attacks and evaluation run on).
extension PatchGuardModel: PatchDetector where T == Float {
    public func patchLogits(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        evaluationPass(images, batch: batch, upstream: nil, dImages: nil)
    }

    public func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dLogits upstream: UnsafePointer<Float>,
                              dImages: UnsafeMutablePointer<Float>) -> [Float] {
        kernels.zero(dImages, count: batch * 3 * imageSize * imageSize)
        return evaluationPass(images, batch: batch, upstream: upstream, dImages: dImages)
    }

    /// One forward, `dLogitsFor` on its logits, one input-only backward (the exact image-score attack's top-k
    /// selection is made on the logits of this very forward). More than `maxBatch` images: two passes.
    public func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dImages: UnsafeMutablePointer<Float>,
                              dLogitsFor: ([Float]) -> [Float]) -> [Float] {
        var evaluation: SeededRNG? = nil
        return inputGradient(images, batch: batch, dImages: dImages, dLogitsFor: dLogitsFor, dropout: &evaluation)
    }

    /// ``inputGradient(_:batch:dImages:dLogitsFor:)`` in evaluation mode (`dropout` nil) or in training mode
    /// (discriminator dropout on, masks drawn from `dropout`; ``TrainingModeDetector``).
    func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dImages: UnsafeMutablePointer<Float>,
                       dLogitsFor: ([Float]) -> [Float], dropout: inout SeededRNG?) -> [Float] {
        guard batch <= maxBatch else {
            let d = dLogitsFor(forwardPass(images, batch: batch, upstream: nil, dImages: nil, dropout: &dropout))
            kernels.zero(dImages, count: batch * 3 * imageSize * imageSize)
            return d.withUnsafeBufferPointer {
                forwardPass(images, batch: batch, upstream: $0.baseAddress!, dImages: dImages, dropout: &dropout)
            }
        }
        kernels.zero(dImages, count: batch * 3 * imageSize * imageSize)
        let feats = backboneForward(images, batch: batch, attention: false)
        let logitsPointer = discriminatorForward(feats, batch: batch, dropout: &dropout)
        let logits = Array(UnsafeBufferPointer(start: logitsPointer, count: batch * numPatches))
        let upstream = dLogitsFor(logits)
        kernels.zero(dFeatures.data, count: batch * numPatches * dim * featureLayers.count)
        upstream.withUnsafeBufferPointer {
            discriminator.backward(dLogits: $0.baseAddress!, dFeatures: dFeatures.data, computeParameterGradients: false)
        }
        backboneBackward(batch: batch, dAttention: [:], parameters: false, dImage: dImages)
        return logits
    }

    /// Evaluation-mode forward over chunks of ≤ maxBatch images; with `upstream`, also the input-only backward
    /// of each chunk into `dImages`. Returns the logits (batch, Np).
    func evaluationPass(_ images: UnsafePointer<Float>, batch: Int, upstream: UnsafePointer<Float>?,
                        dImages: UnsafeMutablePointer<Float>?) -> [Float] {
        var evaluation: SeededRNG? = nil
        return forwardPass(images, batch: batch, upstream: upstream, dImages: dImages, dropout: &evaluation)
    }

    /// The discriminator's forward in evaluation mode (`dropout` nil) or training mode (masks from `dropout`).
    func discriminatorForward(_ feats: UnsafePointer<Float>, batch B: Int, dropout: inout SeededRNG?)
        -> UnsafeMutablePointer<Float> {
        if dropout != nil { return discriminator.forward(features: feats, batch: B, training: true, using: &dropout!) }
        var unused = SeededRNG(seed: 0)
        return discriminator.forward(features: feats, batch: B, training: false, using: &unused)
    }

    /// ``evaluationPass(_:batch:upstream:dImages:)`` in evaluation mode (`dropout` nil) or training mode.
    func forwardPass(_ images: UnsafePointer<Float>, batch: Int, upstream: UnsafePointer<Float>?,
                     dImages: UnsafeMutablePointer<Float>?, dropout: inout SeededRNG?) -> [Float] {
        var out = [Float](); out.reserveCapacity(batch * numPatches)
        let stride = 3 * imageSize * imageSize
        let backward = upstream != nil && dImages != nil  // else forward-only: no backward caches
        var start = 0
        while start < batch {
            let B = min(maxBatch, batch - start)
            let feats = backboneForward(images + start * stride, batch: B, attention: false, storeCaches: backward)
            let logits = discriminatorForward(feats, batch: B, dropout: &dropout)
            out += UnsafeBufferPointer(start: logits, count: B * numPatches)
            if let upstream, let dImages {
                kernels.zero(dFeatures.data, count: B * numPatches * dim * featureLayers.count)
                discriminator.backward(dLogits: upstream + start * numPatches, dFeatures: dFeatures.data,
                                       computeParameterGradients: false)
                backboneBackward(batch: B, dAttention: [:], parameters: false, dImage: dImages + start * stride)
            }
            start += B
        }
        return out
    }
}
