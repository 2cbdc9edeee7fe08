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

        let request = BackwardRequest(dFeatures: dFeatures, dAttention: dAttention, dLogits: dLogits,
                                      dBlockOutputs: dBlockOutputs, dImage: dImage,
                                      blockOutputGradients: blockOutputGradients, norm1Gradients: norm1Gradients,
                                      needAll: needAll, outputCaptures: outputCaptures, norm1Captures: norm1Captures)
        // One share's whole backward: the blocks from the last, then the embedding.
        func wholePass(first b0: Int, count: Int, grads g: ViTParameters<T>?) {
            scr.images(from: b0, config: config).zeroStep(batch: count, kernels: kernels)
            let r = request.images(from: b0, config: config)
            for i in (0..<depth).reversed() {
                if !backwardBlock(i, first: b0, count: count, grads: g, r) { return }
            }
            if needAll { backwardEmbedding(first: b0, count: count, grads: g, r) }
        }
        let shares = imageShares(B)
        if shares.count == 1 {
            wholePass(first: 0, count: B, grads: computeParameterGradients ? grads : nil)
            return
        }
        let blockwise = computeParameterGradients && parameters.totalCount >= blockwiseShareGradientsMinimum
        let own = computeParameterGradients ? (1..<shares.count).map { shareGradientArena($0 - 1, blockwise: blockwise) } : []
        func shareGrads(_ w: Int) -> ViTParameters<T>? {
            computeParameterGradients ? (w == 0 ? grads : own[w - 1].view) : nil
        }
        if !blockwise {
            // Image-parallel, whole passes: each share runs its images' whole backward on its own thread; share
            // w > 0 adds its parameter gradients into a private copy of every parameter, zeroed here and added
            // into ``gradients`` (shares in order) at the end.
            SingleThreadedBLAS.parallelShares(shares) { w, r in
                if w > 0, computeParameterGradients {
                    kernels.zero(own[w - 1].arena.storage.data, count: own[w - 1].arena.storage.count)
                }
                wholePass(first: r.lowerBound, count: r.count, grads: shareGrads(w))
            }
            for o in own { kernels.addInto(gradients.storage.data, o.arena.storage.data, count: gradients.totalCount) }
            return
        }
        // Image-parallel, block by block (large models with parameter gradients): one fork-join per block and one
        // for the embedding, each share running its images' part of that phase on its own thread. Share w > 0 adds
        // its parameter gradients into a private arena of one block plus the parameters outside the blocks; after
        // each block's phase that block's part is added into ``gradients`` (shares in order) and zeroed for the
        // next block, the rest after the last phase: the same sums in the same order as whole passes, without a
        // second copy of every parameter (ViT-S/14: 8 instead of 88 MB per extra share). The per-phase joins cost
        // small models a few per cent (`vit_cpu_tiny`), so below ``blockwiseShareGradientsMinimum`` parameters
        // whole passes run.
        for o in own { kernels.zero(o.arena.storage.data, count: o.arena.storage.count) }
        SingleThreadedBLAS.region {
            var more = true
            for i in (0..<depth).reversed() where more {
                SingleThreadedBLAS.parallelShares(shares) { w, r in
                    let s = scr.images(from: r.lowerBound, config: config)
                    if i == depth - 1 { s.zeroStep(batch: r.count, kernels: kernels) }
                    let goOn = backwardBlock(i, first: r.lowerBound, count: r.count, grads: shareGrads(w),
                                             request.images(from: r.lowerBound, config: config))
                    if w == 0 { more = goOn }  // the same in every share: it depends on the block and the request
                }
                addShareGradients(own, block: i)
            }
            if more && needAll {
                SingleThreadedBLAS.parallelShares(shares) { w, r in
                    backwardEmbedding(first: r.lowerBound, count: r.count, grads: shareGrads(w),
                                      request.images(from: r.lowerBound, config: config))
                }
            }
            addShareGradients(own, block: nil)
        }
    }

    /// The private parameter-gradient arena of share `index + 1` of an image-parallel backward (made on first use):
    /// every parameter (whole passes), or the layout of a one-block model viewed as a model whose every block is
    /// that one (block by block).
    func shareGradientArena(_ index: Int, blockwise: Bool) -> (arena: Arena<T>, view: ViTParameters<T>) {
        if blockwise {
            while shareBlockGradients.count <= index {
                var one = config
                one.depth = 1
                let arena = Arena<T>(layout: ViT.parameterLayout(one), allocator: kernels.allocator)
                shareBlockGradients.append((arena, ViTParameters(arena, config: one).repeatingBlock(count: depth)))
                shareBlockSpan = ViT.blockSpans(of: arena, depth: 1)[0]
            }
            return shareBlockGradients[index]
        }
        while shareGradients.count <= index {
            let arena = Arena<T>(sameLayoutAs: parameters, allocator: kernels.allocator)
            shareGradients.append((arena, ViTParameters(arena, config: config)))
        }
        return shareGradients[index]
    }

    /// Adds the shares' private gradients (in share order) into ``gradients`` and zeroes them: block `block`'s
    /// part, or with nil every parameter outside the blocks.
    func addShareGradients(_ own: [(arena: Arena<T>, view: ViTParameters<T>)], block: Int?) {
        for o in own {
            if let block {
                let span = shareBlockSpan, main = blockSpans[block]
                kernels.addInto(gradients.storage.data + main.lowerBound, o.arena.storage.data + span.lowerBound,
                                count: span.count)
                kernels.zero(o.arena.storage.data + span.lowerBound, count: span.count)
            } else {
                for e in o.arena.entries where !e.name.hasPrefix("blocks.") {
                    kernels.addInto(gradients.pointer(e.name), o.arena.storage.data + e.offset, count: e.count)
                    kernels.zero(o.arena.storage.data + e.offset, count: e.count)
                }
            }
        }
    }

    /// The elements of `arena` (a parameter layout of `depth` blocks) that each block's parameters occupy:
    /// contiguous, and laid out alike for every block and every arena of this config's layout (each entry is
    /// rounded to 16 elements from the block's start).
    static func blockSpans(of arena: Arena<T>, depth: Int) -> [Range<Int>] {
        (0..<depth).map { block in
            let prefix = "blocks.\(block)."
            let mine = arena.entries.filter { $0.name.hasPrefix(prefix) }
            let first = mine.first!, last = mine.last!
            return first.offset..<(last.offset + (last.count + 15) / 16 * 16)
        }
    }

    /// Block `i`'s norm1 output (from its stored input and statistics) into the shared buffer `a.ln`, for `rows`
    /// tokens of `a` (the forward's values bit for bit: the same kernel on the same inputs).
    func recomputeNorm1(_ i: Int, _ a: ViTActivations<T>, rows: Int) {
        let x = i == 0 ? a.tokens : a.blocks[i - 1].out, bp = params.blocks[i]
        kernels.layerNormForward(a.ln, a.blocks[i].ln1Mean, a.blocks[i].ln1Rstd, x, bp.norm1Weight, bp.norm1Bias,
                                 rows: rows, channels: C, eps: T(config.lnEps))
    }

    /// What a backward was asked for (``backward(dFeatures:dAttention:dLogits:dBlockOutputs:computeParameterGradients:dImage:blockOutputGradients:norm1Gradients:)``'s
    /// arguments, 0-based capture blocks), with every per-image pointer at image 0 or, after ``images(from:config:)``,
    /// at one share's first image.
    struct BackwardRequest {
        var dFeatures: [Int: UnsafePointer<T>], dAttention: [Int: UnsafePointer<T>], dLogits: UnsafePointer<T>?
        var dBlockOutputs: [Int: UnsafePointer<T>], dImage: UnsafeMutablePointer<T>?
        var blockOutputGradients: [Int: UnsafeMutablePointer<T>], norm1Gradients: [Int: UnsafeMutablePointer<T>]
        let needAll: Bool, outputCaptures: [Int], norm1Captures: [Int]

        /// The same request from image `b` on.
        func images(from b: Int, config c: ViTConfig) -> BackwardRequest {
            guard b > 0 else { return self }
            let NC = c.numTokens * c.dim, NpC = c.numPatches * c.dim, attn = c.heads * c.numTokens * c.numTokens
            var v = self
            v.dFeatures = dFeatures.mapValues { $0 + b * NpC }; v.dAttention = dAttention.mapValues { $0 + b * attn }
            v.dLogits = dLogits.map { $0 + b * c.numClasses }; v.dBlockOutputs = dBlockOutputs.mapValues { $0 + b * NC }
            v.dImage = dImage.map { $0 + b * 3 * c.imageSize * c.imageSize }
            v.blockOutputGradients = blockOutputGradients.mapValues { $0 + b * NC }
            v.norm1Gradients = norm1Gradients.mapValues { $0 + b * NC }
            return v
        }

        /// Whether block `i`'s branches are needed: while a block-output capture lies below `i` or a norm1
        /// capture at or below it (always with parameter gradients or dImage).
        func needBranches(_ i: Int) -> Bool {
            needAll || outputCaptures.contains { $0 < i } || norm1Captures.contains { $0 <= i }
        }

        /// Whether anything below block `i`'s norm1 is needed.
        func needBelowNorm1(_ i: Int) -> Bool {
            needAll || outputCaptures.contains { $0 < i } || norm1Captures.contains { $0 < i }
        }
    }

    /// Block `i` of the backward of images `b0 ..< b0 + B` (the gradients entering at its output, then its two
    /// branches), in their share of every buffer; `r`'s pointers already point at image `b0`, and the scratch's
    /// per-step buffers were zeroed before the last block. Parameter gradients go into `g` (nil: none). Returns
    /// false when nothing below this block is wanted (a capture-only backward, Grad-CAM).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    func backwardBlock(_ i: Int, first b0: Int, count B: Int, grads g: ViTParameters<T>?,
                       _ r: BackwardRequest) -> Bool {
        let k = kernels, p = params, a = acts.images(from: b0, config: config), s = scr.images(from: b0, config: config)
        let BN = B * N, eps = T(config.lnEps)
        let dResidual = s.dResidual  // (B, N, C): gradient of the residual stream, updated in place
        let bp = p.blocks[i], ba = a.blocks[i], bg = g?.blocks[i]
        let x = i == 0 ? a.tokens : a.blocks[i - 1].out
        // Gradients entering at this block's output.
        if i == depth - 1, let dLogits = r.dLogits, let clsNorm = a.headClsNorm, let headWeight = p.headWeight {
            k.linearBackward(s.dClsNorm, g?.headWeight, g?.headBias, dLogits, clsNorm, headWeight, rows: B,
                             inFeatures: C, outFeatures: config.numClasses)
            k.layerNormStridedBackward(dResidual, g?.normWeight, g?.normBias, s.dClsNorm, ba.out, p.normWeight,
                                       a.headMean!, a.headRstd!, batch: B, rows: 1, inputBatchStride: N * C,
                                       channels: C)
        }
        if let dF = r.dFeatures[i + 1] {
            k.layerNormStridedBackward(dResidual + (1 + R) * C, g?.normWeight, g?.normBias, dF,
                                       ba.out + (1 + R) * C, p.normWeight, ba.featuresMean, ba.featuresRstd,
                                       batch: B, rows: Np, inputBatchStride: N * C, channels: C)
        }
        if let dOut = r.dBlockOutputs[i + 1] { k.addInto(dResidual, dOut, count: BN * C) }
        if let capture = r.blockOutputGradients[i + 1] { k.addInto(capture, dResidual, count: BN * C) }
        if !r.needBranches(i) { return false }  // Grad-CAM: nothing below this block is wanted
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
        k.attentionBackward(s.dQKV, s.dScores, s.dAttnOut, r.dAttention[i + 1], ba.qkv, ba.probs, batch: B,
                            tokens: N, channels: C, heads: NH, dropMask: nil, dropped: nil)
        if bg != nil { recomputeNorm1(i, a, rows: BN) }
        k.linearBackward(s.dLN1, bg?.qkvWeight, bg?.qkvBias, s.dQKV, a.ln, bp.qkvWeight, rows: BN,
                         inFeatures: C, outFeatures: 3 * C)
        if let capture = r.norm1Gradients[i + 1] { k.addInto(capture, s.dLN1, count: BN * C) }
        if !r.needBelowNorm1(i) { return false }
        k.layerNormBackward(dResidual, bg?.norm1Weight, bg?.norm1Bias, s.dLN1, x, bp.norm1Weight, ba.ln1Mean,
                            ba.ln1Rstd, rows: BN, channels: C)
        return true
    }

    /// The embedding's backward for images `b0 ..< b0 + B`, after block 1's: tokens = TokenEmbed(patch.out);
    /// patch.out = PatchEmbed(input.normed); normed = Norm(image).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    func backwardEmbedding(first b0: Int, count B: Int, grads g: ViTParameters<T>?, _ r: BackwardRequest) {
        let k = kernels, p = params, a = acts.images(from: b0, config: config), s = scr.images(from: b0, config: config)
        k.tokenEmbedBackward(s.dPatches, g?.cls, g?.reg, g?.pos, s.dResidual, batch: B, patches: Np, registers: R,
                             channels: C, noEmbedClass: config.noEmbedClass)
        k.patchEmbedBackward(r.dImage != nil ? s.dNormed : nil, g?.patchWeight, g?.patchBias, s.dCols, s.dPatches,
                             a.patchCols, p.patchWeight, batch: B, inChannels: 3, height: H, width: H, patch: P,
                             channels: C)
        if let dImage = r.dImage {
            k.inputNormalizationBackward(dImage, s.dNormed, batch: B, pixels: H * H, std: InputNormalization.imagenetStd)
        }
    }
}
