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
    ///     residual-stream gradient Grad-CAM needs. When neither parameter gradients nor `dImage` are wanted, the
    ///     backward stops at the lowest requested block.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(dFeatures: [Int: UnsafePointer<T>] = [:], dAttention: [Int: UnsafePointer<T>] = [:],
                         dLogits: UnsafePointer<T>? = nil, dBlockOutputs: [Int: UnsafePointer<T>] = [:],
                         computeParameterGradients: Bool = true, dImage: UnsafeMutablePointer<T>? = nil,
                         blockOutputGradients: [Int: UnsafeMutablePointer<T>] = [:]) throws {
        let B = batch
        guard B > 0 else { throw PatchGuardError.invalidArgument("ViT backward called before forward") }
        for l in dFeatures.keys { try checkLayer(l, "dFeatures") }
        for l in dAttention.keys { try checkLayer(l, "dAttention") }
        for l in dBlockOutputs.keys { try checkLayer(l, "dBlockOutputs") }
        for l in blockOutputGradients.keys { try checkLayer(l, "blockOutputGradients") }
        if dLogits != nil && config.numClasses == 0 {
            throw PatchGuardError.invalidArgument("ViT backward: dLogits given but the model has no head")
        }
        let p = parameters.pointer, a = activations.pointer, s = scratch.pointer
        let gp = gradients.pointer
        let wantParams = computeParameterGradients
        func g(_ name: String) -> UnsafeMutablePointer<T>? { wantParams ? gp(name) : nil }
        let BN = B * N
        let ls = config.hasLayerScale
        // Without parameter gradients and dImage, only blocks above the lowest captured output must run.
        let needAll = wantParams || dImage != nil
        let lowestCapture = blockOutputGradients.keys.min().map { $0 - 1 } ?? -1  // 0-based block index
        if !needAll && lowestCapture < 0 { return }

        let dResidual = s("dResidual")  // (B, N, C): gradient of the residual stream, updated in place
        dResidual.update(repeating: 0, count: BN * C)
        for i in (0..<depth).reversed() {
            let b = "blocks.\(i)."
            let x = i == 0 ? a("tokens") : a("blocks.\(i - 1).out")
            let out = a(b + "out")
            // Gradients entering at this block's output.
            if i == depth - 1, let dLogits {
                let dClsNorm = s("dClsNorm")
                dClsNorm.update(repeating: 0, count: B * C)
                Linear.backward(dClsNorm, g("head.weight"), g("head.bias"), dLogits, a("head.clsnorm"), p("head.weight"),
                                rows: B, inFeatures: C, outFeatures: config.numClasses)
                for bi in 0..<B {
                    LayerNorm.backward(dResidual + bi * N * C, g("norm.weight"), g("norm.bias"), dClsNorm + bi * C,
                                       out + bi * N * C, p("norm.weight"), a("head.mean") + bi, a("head.rstd") + bi,
                                       rows: 1, channels: C)
                }
            }
            if let dF = dFeatures[i + 1] {
                let f = "features.\(i)"
                for bi in 0..<B {
                    LayerNorm.backward(dResidual + (bi * N + 1 + R) * C, g("norm.weight"), g("norm.bias"),
                                       dF + bi * Np * C, out + (bi * N + 1 + R) * C, p("norm.weight"),
                                       a(f + ".mean") + bi * Np, a(f + ".rstd") + bi * Np, rows: Np, channels: C)
                }
            }
            if let dOut = dBlockOutputs[i + 1] {
                parallelFor(BN, minChunk: 32) { r in
                    let d = dResidual + r * C, o = dOut + r * C
                    for j in 0..<C { d[j] += o[j] }
                }
            }
            if let capture = blockOutputGradients[i + 1] {
                parallelFor(BN, minChunk: 32) { r in
                    let d = capture + r * C, o = dResidual + r * C
                    for j in 0..<C { d[j] += o[j] }
                }
            }
            if !needAll && i <= lowestCapture { return }  // Grad-CAM: nothing below this block is wanted

            // MLP branch: out = x2 + ls2 ⊙ fc2. dResidual holds dOut and becomes dX2 (the skip passes through).
            var dFC2 = UnsafeMutablePointer<T>(mutating: dResidual)
            if ls {
                dFC2 = s("dBranch")
                dFC2.update(repeating: 0, count: BN * C)
                Residual.backward(nil, dFC2, g(b + "ls2.gamma"), dResidual, a(b + "fc2"), p(b + "ls2.gamma"),
                                  rows: BN, channels: C)
            }
            let dGELU = s("dGELU"), dFC1 = s("dFC1"), dLN = s("dLN")
            dGELU.update(repeating: 0, count: BN * HD)
            Linear.backward(dGELU, g(b + "mlp.fc2.weight"), g(b + "mlp.fc2.bias"), dFC2, a(b + "gelu"),
                            p(b + "mlp.fc2.weight"), rows: BN, inFeatures: HD, outFeatures: C)
            dFC1.update(repeating: 0, count: BN * HD)
            GELU.backward(dFC1, dGELU, a(b + "fc1"), count: BN * HD)
            dLN.update(repeating: 0, count: BN * C)
            Linear.backward(dLN, g(b + "mlp.fc1.weight"), g(b + "mlp.fc1.bias"), dFC1, a(b + "ln2"),
                            p(b + "mlp.fc1.weight"), rows: BN, inFeatures: C, outFeatures: HD)
            LayerNorm.backward(dResidual, g(b + "norm2.weight"), g(b + "norm2.bias"), dLN, a(b + "x2"),
                               p(b + "norm2.weight"), a(b + "ln2.mean"), a(b + "ln2.rstd"), rows: BN, channels: C)

            // Attention branch: x2 = x + ls1 ⊙ proj. dResidual holds dX2 and becomes dX.
            var dProj = UnsafeMutablePointer<T>(mutating: dResidual)
            if ls {
                dProj = s("dBranch")
                dProj.update(repeating: 0, count: BN * C)
                Residual.backward(nil, dProj, g(b + "ls1.gamma"), dResidual, a(b + "proj"), p(b + "ls1.gamma"),
                                  rows: BN, channels: C)
            }
            let dAttnOut = s("dAttnOut"), dQKV = s("dQKV")
            dAttnOut.update(repeating: 0, count: BN * C)
            Linear.backward(dAttnOut, g(b + "attn.proj.weight"), g(b + "attn.proj.bias"), dProj, a(b + "attn.out"),
                            p(b + "attn.proj.weight"), rows: BN, inFeatures: C, outFeatures: C)
            dQKV.update(repeating: 0, count: BN * 3 * C)
            Attention.backward(dQKV, s("dScores"), dAttnOut, dAttention[i + 1], a(b + "qkv"), a(b + "attn.probs"),
                               batch: B, tokens: N, channels: C, heads: NH)
            dLN.update(repeating: 0, count: BN * C)
            Linear.backward(dLN, g(b + "attn.qkv.weight"), config.qkvBias ? g(b + "attn.qkv.bias") : nil, dQKV,
                            a(b + "ln1"), p(b + "attn.qkv.weight"), rows: BN, inFeatures: C, outFeatures: 3 * C)
            LayerNorm.backward(dResidual, g(b + "norm1.weight"), g(b + "norm1.bias"), dLN, x, p(b + "norm1.weight"),
                               a(b + "ln1.mean"), a(b + "ln1.rstd"), rows: BN, channels: C)
        }
        guard wantParams || dImage != nil else { return }

        // Embedding: tokens = TokenEmbed(patch.out); patch.out = PatchEmbed(input.normed); normed = Norm(image).
        let dPatches = s("dPatches")
        dPatches.update(repeating: 0, count: B * Np * C)
        TokenEmbed.backward(dPatches, g("cls_token"), R > 0 ? g("reg_token") : nil, g("pos_embed"), dResidual,
                            batch: B, patches: Np, registers: R, channels: C, noEmbedClass: config.noEmbedClass)
        var dNormed: UnsafeMutablePointer<T>? = nil
        if dImage != nil {
            dNormed = s("dNormed")
            dNormed!.update(repeating: 0, count: B * 3 * H * H)
        }
        PatchEmbed.backward(dNormed, g("patch_embed.proj.weight"), g("patch_embed.proj.bias"), s("dCols"), dPatches,
                            a("patch.cols"), p("patch_embed.proj.weight"), batch: B, inChannels: 3, height: H, width: H,
                            patch: P, channels: C)
        if let dImage, let dNormed {
            InputNormalization.backward(dImage, dNormed, batch: B, pixels: H * H)
        }
    }
}
