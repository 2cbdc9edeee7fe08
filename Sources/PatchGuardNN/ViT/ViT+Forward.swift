import PatchGuardCore

extension ViT {
    /// Runs the model on `batch` images.
    ///
    /// - Parameters:
    ///   - images: (B, 3, H, W) in [0, 1] (normalised inside the model).
    ///   - batch: B ≤ `maxBatch`.
    ///   - featureLayers: 1-based blocks whose final-normed patch tokens to compute (read with ``features(layer:)``).
    ///   - attentionLayers: 1-based blocks whose attention maps the caller will read (``attention(layer:)``);
    ///     probabilities of every block are cached anyway (backward needs them), this only validates.
    ///   - storeCaches: false = a forward-only pass (scoring, evaluation): every block works in block 1's
    ///     buffers instead of its own, so the other blocks' activation pages are never touched (the arena's memory
    ///     is mapped lazily) and stay out of the resident set. Only ``features(layer:)`` and ``logits`` are valid
    ///     after it; ``backward(dFeatures:dAttention:dLogits:dBlockOutputs:computeParameterGradients:dImage:blockOutputGradients:norm1Gradients:)``
    ///     refuses to run, and `attentionLayers` must be empty. Same arithmetic, same features bit for bit.
    /// Head logits are computed when the config has a head (``logits``). Raw block outputs: ``blockOutput(layer:)``.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(images: UnsafePointer<T>, batch B: Int, featureLayers: [Int] = [],
                        attentionLayers: [Int] = [], storeCaches: Bool = true) throws {
        guard (1...maxBatch).contains(B) else {
            throw PatchGuardError.invalidArgument("ViT forward: batch \(B) outside 1...\(maxBatch)")
        }
        for l in featureLayers { try checkLayer(l, "feature") }
        for l in attentionLayers { try checkLayer(l, "attention") }
        guard storeCaches || attentionLayers.isEmpty else {
            throw PatchGuardError.invalidArgument("ViT forward: attention maps need storeCaches (a forward-only " +
                                                  "pass keeps no block's attention)")
        }
        batch = B
        cachesStored = storeCaches
        let featureSet = Set(featureLayers)
        let shares = imageShares(B)
        if shares.count == 1 {
            forwardImages(images, first: 0, count: B, featureSet: featureSet, storeCaches: storeCaches)
        } else {
            SingleThreadedBLAS.parallelShares(shares) { _, r in
                forwardImages(images + r.lowerBound * 3 * H * H, first: r.lowerBound, count: r.count,
                              featureSet: featureSet, storeCaches: storeCaches)
            }
        }
    }

    /// The forward of images `b0 ..< b0 + B` of the batch (`images` points at image `b0`), in their share of
    /// every buffer.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    func forwardImages(_ images: UnsafePointer<T>, first b0: Int, count B: Int, featureSet: Set<Int>,
                       storeCaches: Bool) {
        let k = kernels, p = params, a = acts.images(from: b0, config: config)
        let eps = T(config.lnEps), BN = B * N

        k.inputNormalizationForward(a.inputNormed, images, batch: B, pixels: H * H,
                                    mean: InputNormalization.imagenetMean, std: InputNormalization.imagenetStd)
        k.patchEmbedForward(a.patchOut, a.patchCols, a.inputNormed, p.patchWeight, p.patchBias, batch: B,
                            inChannels: 3, height: H, width: H, patch: P, channels: C)
        k.tokenEmbedForward(a.tokens, a.patchOut, p.cls, p.reg, p.pos, batch: B, patches: Np, registers: R,
                            channels: C, noEmbedClass: config.noEmbedClass)

        var x = a.tokens
        for i in 0..<depth {
            // Forward-only: block 1's buffers for every block (block i reads x = block 1's `out` before it
            // rewrites `out` from `x2`, so reusing them is safe); features still go to layer i's own buffer.
            // The LayerNorm and GELU outputs go to buffers shared by every block (the backward recomputes them).
            let bp = p.blocks[i], ba = a.blocks[storeCaches ? i : 0]
            k.layerNormForward(a.ln, ba.ln1Mean, ba.ln1Rstd, x, bp.norm1Weight, bp.norm1Bias, rows: BN, channels: C,
                               eps: eps)
            k.linearForward(ba.qkv, a.ln, bp.qkvWeight, bp.qkvBias, rows: BN, inFeatures: C, outFeatures: 3 * C)
            k.attentionForward(ba.attnOut, ba.probs, ba.qkv, batch: B, tokens: N, channels: C, heads: NH,
                               dropMask: nil, dropped: nil)
            k.linearForward(ba.proj, ba.attnOut, bp.projWeight, bp.projBias, rows: BN, inFeatures: C, outFeatures: C)
            k.residualForward(ba.x2, x, ba.proj, bp.ls1Gamma, rows: BN, channels: C)
            k.layerNormForward(a.ln, ba.ln2Mean, ba.ln2Rstd, ba.x2, bp.norm2Weight, bp.norm2Bias, rows: BN,
                               channels: C, eps: eps)
            k.linearForward(ba.fc1, a.ln, bp.fc1Weight, bp.fc1Bias, rows: BN, inFeatures: C, outFeatures: HD)
            k.geluForward(a.gelu, ba.fc1, count: BN * HD)
            k.linearForward(ba.fc2, a.gelu, bp.fc2Weight, bp.fc2Bias, rows: BN, inFeatures: HD, outFeatures: C)
            k.residualForward(ba.out, ba.x2, ba.fc2, bp.ls2Gamma, rows: BN, channels: C)
            x = ba.out

            if featureSet.contains(i + 1) {
                // features (B, Np, C) = norm(block output)[:, 1+R:, :]: the patch rows of each image.
                let fa = a.blocks[i]
                k.layerNormStridedForward(fa.features, fa.featuresMean, fa.featuresRstd, x + (1 + R) * C,
                                          p.normWeight, p.normBias, batch: B, rows: Np, inputBatchStride: N * C,
                                          channels: C, eps: eps)
            }
        }

        if let clsNorm = a.headClsNorm, let mean = a.headMean, let rstd = a.headRstd, let logits = a.headLogits,
           let headWeight = p.headWeight {
            // logits (B, classes) = head(norm(x)[:, 0, :]): the class token of each image.
            k.layerNormStridedForward(clsNorm, mean, rstd, x, p.normWeight, p.normBias, batch: B, rows: 1,
                                      inputBatchStride: N * C, channels: C, eps: eps)
            k.linearForward(logits, clsNorm, headWeight, p.headBias, rows: B, inFeatures: C,
                            outFeatures: config.numClasses)
        }
    }

    /// `forward` on a ``Tensor`` of shape (B, 3, H, W).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(images: Tensor<T>, featureLayers: [Int] = [], attentionLayers: [Int] = [],
                        storeCaches: Bool = true) throws {
        guard images.shape.count == 4, images.shape[1] == 3, images.shape[2] == H, images.shape[3] == H else {
            throw PatchGuardError.invalidArgument("ViT forward: images must be (B, 3, \(H), \(H)), got \(images.shape)")
        }
        try forward(images: images.data, batch: images.shape[0], featureLayers: featureLayers,
                    attentionLayers: attentionLayers, storeCaches: storeCaches)
    }
}
