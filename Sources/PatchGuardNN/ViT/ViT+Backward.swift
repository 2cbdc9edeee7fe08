import PatchGuardCore

extension ViT {
    /// Backward through the last ``forward(images:batch:featureLayers:attentionLayers:)``: the forward's call list
    /// in reverse. Every gradient is *added*: parameter gradients into ``gradients`` (zero them once per step),
    /// the image gradient into `dImage`, block-output gradients into `blockOutputGradients`.
    ///
    /// Gradients enter at
    /// - `dFeatures[l]` (B, Np, C): on the final-normed patch tokens of block `l` (needs `l` in the forward's
    ///   `featureLayers`);
    /// - `dAttention[l]` (B, NH, N, N): on the attention probabilities of block `l`;
    /// - `dLogits` (B, classes): on the head logits;
    /// - `dBlockOutputs[l]` (B, N, C): on the raw output of block `l`.
    ///
    /// - Parameters:
    ///   - computeParameterGradients: false skips every parameter gradient (attacks, Grad-CAM): only activation
    ///     gradients are propagated, about a third less work.
    ///   - dImage: (B, 3, H, W) or nil; receives dLoss/dImage for the [0, 1] image.
    ///   - blockOutputGradients: `l → (B, N, C)` buffers that receive dLoss/d(block `l` output) — the
    ///     residual-stream gradient.
    ///   - norm1Gradients: `l → (B, N, C)` buffers that receive dLoss/d(block `l`'s norm1 output) (read the
    ///     activations with ``norm1Output(layer:)``) — what Grad-CAM needs. Both capture kinds are *added* into.
    ///     When neither parameter gradients nor `dImage` are wanted, the backward stops as soon as every requested
    ///     capture is written (at the lowest requested block; before its norm1 backward for a norm1 capture).
    ///
    /// Scratch gradients are zeroed in two places only (``ViTScratch``): once per call, once per block.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(dFeatures: [Int: UnsafePointer<T>] = [:], dAttention: [Int: UnsafePointer<T>] = [:],
                         dLogits: UnsafePointer<T>? = nil, dBlockOutputs: [Int: UnsafePointer<T>] = [:],
                         computeParameterGradients: Bool = true, dImage: UnsafeMutablePointer<T>? = nil,
                         blockOutputGradients: [Int: UnsafeMutablePointer<T>] = [:],
                         norm1Gradients: [Int: UnsafeMutablePointer<T>] = [:]) throws {
        let B = batch
        guard B > 0 else { throw PatchGuardError.invalidArgument("ViT backward called before forward") }
        guard cachesStored else {
            throw PatchGuardError.invalidArgument("ViT backward after a forward-only pass (storeCaches: false)")
        }
        for l in dFeatures.keys { try checkLayer(l, "dFeatures") }
        for l in dAttention.keys { try checkLayer(l, "dAttention") }
        for l in dBlockOutputs.keys { try checkLayer(l, "dBlockOutputs") }
        for l in blockOutputGradients.keys { try checkLayer(l, "blockOutputGradients") }
        for l in norm1Gradients.keys { try checkLayer(l, "norm1Gradients") }
        if dLogits != nil && config.numClasses == 0 {
            throw PatchGuardError.invalidArgument("ViT backward: dLogits given but the model has no head")
        }
        // Without parameter gradients and dImage, only what the captures need runs (0-based block indices):
        // block i's branches are needed while a block-output capture lies below i or a norm1 capture at or below i.
        let needAll = computeParameterGradients || dImage != nil
        let outputCaptures = blockOutputGradients.keys.map { $0 - 1 }, norm1Captures = norm1Gradients.keys.map { $0 - 1 }
        // (The last block's branches are needed for anything below it: else there is nothing to do.)
        if !(needAll || outputCaptures.contains { $0 < depth } || norm1Captures.contains { $0 <= depth }) { return }

        let shares = imageShares(B)
        if shares.count == 1 {
            backwardImages(first: 0, count: B, grads: computeParameterGradients ? grads : nil, dFeatures: dFeatures,
                           dAttention: dAttention, dLogits: dLogits, dBlockOutputs: dBlockOutputs, dImage: dImage,
                           blockOutputGradients: blockOutputGradients, norm1Gradients: norm1Gradients,
                           needAll: needAll, outputCaptures: outputCaptures, norm1Captures: norm1Captures)
            return
        }
        // Image-parallel: share w > 0 adds its parameter gradients into a private arena, zeroed here; the
        // arenas are added into `gradients` after the shares, in share order.
        if computeParameterGradients {
            while shareGradients.count < shares.count - 1 {
                let arena = Arena<T>(sameLayoutAs: parameters, allocator: kernels.allocator)
                shareGradients.append((arena, ViTParameters(arena, config: config)))
            }
        }
        let NC = N * C, classes = config.numClasses, HH3 = 3 * H * H, NpC = Np * C, attn = NH * N * N
        SingleThreadedBLAS.parallelShares(shares) { w, r in
            let b0 = r.lowerBound
            var g: ViTParameters<T>? = nil
            if computeParameterGradients {
                if w == 0 { g = grads } else {
                    let own = shareGradients[w - 1]
                    kernels.zero(own.arena.storage.data, count: own.arena.storage.count)
                    g = own.view
                }
            }
            backwardImages(first: b0, count: r.count, grads: g,
                           dFeatures: dFeatures.mapValues { $0 + b0 * NpC },
                           dAttention: dAttention.mapValues { $0 + b0 * attn },
                           dLogits: dLogits.map { $0 + b0 * classes },
                           dBlockOutputs: dBlockOutputs.mapValues { $0 + b0 * NC }, dImage: dImage.map { $0 + b0 * HH3 },
                           blockOutputGradients: blockOutputGradients.mapValues { $0 + b0 * NC },
                           norm1Gradients: norm1Gradients.mapValues { $0 + b0 * NC },
                           needAll: needAll, outputCaptures: outputCaptures, norm1Captures: norm1Captures)
        }
        if computeParameterGradients {
            let total = gradients.storage
            for own in shareGradients.prefix(shares.count - 1) {
                kernels.addInto(total.data, own.arena.storage.data, count: total.count)
            }
        }
    }

    /// The backward of images `b0 ..< b0 + B` of the last forward's batch, in their share of every buffer; every
    /// gradient pointer already points at image `b0`. Parameter gradients go into `g` (nil: none).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    func backwardImages(first b0: Int, count B: Int, grads g: ViTParameters<T>?, dFeatures: [Int: UnsafePointer<T>],
                        dAttention: [Int: UnsafePointer<T>], dLogits: UnsafePointer<T>?,
                        dBlockOutputs: [Int: UnsafePointer<T>], dImage: UnsafeMutablePointer<T>?,
                        blockOutputGradients: [Int: UnsafeMutablePointer<T>],
                        norm1Gradients: [Int: UnsafeMutablePointer<T>], needAll: Bool, outputCaptures: [Int],
                        norm1Captures: [Int]) {
        let k = kernels, p = params, a = acts.images(from: b0, config: config), s = scr.images(from: b0, config: config)
        let BN = B * N, eps = T(config.lnEps)
        func needBranches(_ i: Int) -> Bool {
            needAll || outputCaptures.contains { $0 < i } || norm1Captures.contains { $0 <= i }
        }
        func needBelowNorm1(_ i: Int) -> Bool {
            needAll || outputCaptures.contains { $0 < i } || norm1Captures.contains { $0 < i }
        }

        let dResidual = s.dResidual  // (B, N, C): gradient of the residual stream, updated in place
        s.zeroStep(batch: B, kernels: k)
        for i in (0..<depth).reversed() {
            let bp = p.blocks[i], ba = a.blocks[i], bg = g?.blocks[i]
            let x = i == 0 ? a.tokens : a.blocks[i - 1].out
            // Gradients entering at this block's output.
            if i == depth - 1, let dLogits, let clsNorm = a.headClsNorm, let headWeight = p.headWeight {
                k.linearBackward(s.dClsNorm, g?.headWeight, g?.headBias, dLogits, clsNorm, headWeight, rows: B,
                                 inFeatures: C, outFeatures: config.numClasses)
                k.layerNormStridedBackward(dResidual, g?.normWeight, g?.normBias, s.dClsNorm, ba.out, p.normWeight,
                                           a.headMean!, a.headRstd!, batch: B, rows: 1, inputBatchStride: N * C,
                                           channels: C)
            }
            if let dF = dFeatures[i + 1] {
                k.layerNormStridedBackward(dResidual + (1 + R) * C, g?.normWeight, g?.normBias, dF,
                                           ba.out + (1 + R) * C, p.normWeight, ba.featuresMean, ba.featuresRstd,
                                           batch: B, rows: Np, inputBatchStride: N * C, channels: C)
            }
            if let dOut = dBlockOutputs[i + 1] { k.addInto(dResidual, dOut, count: BN * C) }
            if let capture = blockOutputGradients[i + 1] { k.addInto(capture, dResidual, count: BN * C) }
            if !needBranches(i) { return }  // Grad-CAM: nothing below this block is wanted
            s.zeroBlock(batch: B, kernels: k)

            // MLP branch: out = x2 + ls2 ⊙ fc2. dResidual holds dOut and becomes dX2 (the skip passes through).
            var dFC2 = dResidual
            if let gamma = bp.ls2Gamma {
                dFC2 = s.dBranch2
                k.residualBackward(nil, dFC2, bg?.ls2Gamma, dResidual, ba.fc2, gamma, rows: BN, channels: C)
            }
            // Weight gradients read the products' inputs, which the forward did not keep (``ViTActivations/ln``,
            // ``ViTActivations/gelu``): recompute each from its stored input, only when they are wanted.
            if bg != nil { k.geluForward(a.gelu, ba.fc1, count: BN * HD) }
            k.linearBackward(s.dGELU, bg?.fc2Weight, bg?.fc2Bias, dFC2, a.gelu, bp.fc2Weight, rows: BN,
                             inFeatures: HD, outFeatures: C)
            k.geluBackward(s.dFC1, s.dGELU, ba.fc1, count: BN * HD)
            if bg != nil {
                k.layerNormForward(a.ln, ba.ln2Mean, ba.ln2Rstd, ba.x2, bp.norm2Weight, bp.norm2Bias, rows: BN,
                                   channels: C, eps: eps)
            }
            k.linearBackward(s.dLN2, bg?.fc1Weight, bg?.fc1Bias, s.dFC1, a.ln, bp.fc1Weight, rows: BN,
                             inFeatures: C, outFeatures: HD)
            k.layerNormBackward(dResidual, bg?.norm2Weight, bg?.norm2Bias, s.dLN2, ba.x2, bp.norm2Weight, ba.ln2Mean,
                                ba.ln2Rstd, rows: BN, channels: C)

            // Attention branch: x2 = x + ls1 ⊙ proj. dResidual holds dX2 and becomes dX.
            var dProj = dResidual
            if let gamma = bp.ls1Gamma {
                dProj = s.dBranch1
                k.residualBackward(nil, dProj, bg?.ls1Gamma, dResidual, ba.proj, gamma, rows: BN, channels: C)
            }
            k.linearBackward(s.dAttnOut, bg?.projWeight, bg?.projBias, dProj, ba.attnOut, bp.projWeight, rows: BN,
                             inFeatures: C, outFeatures: C)
            k.attentionBackward(s.dQKV, s.dScores, s.dAttnOut, dAttention[i + 1], ba.qkv, ba.probs, batch: B,
                                tokens: N, channels: C, heads: NH, dropMask: nil, dropped: nil)
            if bg != nil {
                k.layerNormForward(a.ln, ba.ln1Mean, ba.ln1Rstd, x, bp.norm1Weight, bp.norm1Bias, rows: BN,
                                   channels: C, eps: eps)
            }
            k.linearBackward(s.dLN1, bg?.qkvWeight, bg?.qkvBias, s.dQKV, a.ln, bp.qkvWeight, rows: BN,
                             inFeatures: C, outFeatures: 3 * C)
            if let capture = norm1Gradients[i + 1] { k.addInto(capture, s.dLN1, count: BN * C) }
            if !needBelowNorm1(i) { return }
            k.layerNormBackward(dResidual, bg?.norm1Weight, bg?.norm1Bias, s.dLN1, x, bp.norm1Weight, ba.ln1Mean,
                                ba.ln1Rstd, rows: BN, channels: C)
        }
        guard needAll else { return }

        // Embedding: tokens = TokenEmbed(patch.out); patch.out = PatchEmbed(input.normed); normed = Norm(image).
        k.tokenEmbedBackward(s.dPatches, g?.cls, g?.reg, g?.pos, dResidual, batch: B, patches: Np, registers: R,
                             channels: C, noEmbedClass: config.noEmbedClass)
        k.patchEmbedBackward(dImage != nil ? s.dNormed : nil, g?.patchWeight, g?.patchBias, s.dCols, s.dPatches,
                             a.patchCols, p.patchWeight, batch: B, inChannels: 3, height: H, width: H, patch: P,
                             channels: C)
        if let dImage {
            k.inputNormalizationBackward(dImage, s.dNormed, batch: B, pixels: H * H, std: InputNormalization.imagenetStd)
        }
    }
}
