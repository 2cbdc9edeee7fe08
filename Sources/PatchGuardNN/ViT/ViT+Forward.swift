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
    /// Head logits are computed when the config has a head (``logits``). Raw block outputs: ``blockOutput(layer:)``.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(images: UnsafePointer<T>, batch B: Int, featureLayers: [Int] = [],
                        attentionLayers: [Int] = []) throws {
        guard (1...maxBatch).contains(B) else {
            throw PatchGuardError.invalidArgument("ViT forward: batch \(B) outside 1...\(maxBatch)")
        }
        for l in featureLayers { try checkLayer(l, "feature") }
        for l in attentionLayers { try checkLayer(l, "attention") }
        batch = B
        let featureSet = Set(featureLayers)
        let p = parameters.pointer, a = activations.pointer
        let eps = T(config.lnEps), BN = B * N
        let ls = config.hasLayerScale

        InputNormalization.forward(a("input.normed"), images, batch: B, pixels: H * H)
        PatchEmbed.forward(a("patch.out"), a("patch.cols"), a("input.normed"), p("patch_embed.proj.weight"),
                           p("patch_embed.proj.bias"), batch: B, inChannels: 3, height: H, width: H, patch: P, channels: C)
        TokenEmbed.forward(a("tokens"), a("patch.out"), p("cls_token"), R > 0 ? p("reg_token") : nil, p("pos_embed"),
                           batch: B, patches: Np, registers: R, channels: C, noEmbedClass: config.noEmbedClass)

        var x = a("tokens")
        for i in 0..<depth {
            let b = "blocks.\(i)."
            LayerNorm.forward(a(b + "ln1"), a(b + "ln1.mean"), a(b + "ln1.rstd"), x, p(b + "norm1.weight"),
                              p(b + "norm1.bias"), rows: BN, channels: C, eps: eps)
            Linear.forward(a(b + "qkv"), a(b + "ln1"), p(b + "attn.qkv.weight"),
                           config.qkvBias ? p(b + "attn.qkv.bias") : nil, rows: BN, inFeatures: C, outFeatures: 3 * C)
            Attention.forward(a(b + "attn.out"), a(b + "attn.probs"), a(b + "qkv"), batch: B, tokens: N, channels: C,
                              heads: NH)
            Linear.forward(a(b + "proj"), a(b + "attn.out"), p(b + "attn.proj.weight"), p(b + "attn.proj.bias"),
                           rows: BN, inFeatures: C, outFeatures: C)
            Residual.forward(a(b + "x2"), x, a(b + "proj"), ls ? p(b + "ls1.gamma") : nil, rows: BN, channels: C)
            LayerNorm.forward(a(b + "ln2"), a(b + "ln2.mean"), a(b + "ln2.rstd"), a(b + "x2"), p(b + "norm2.weight"),
                              p(b + "norm2.bias"), rows: BN, channels: C, eps: eps)
            Linear.forward(a(b + "fc1"), a(b + "ln2"), p(b + "mlp.fc1.weight"), p(b + "mlp.fc1.bias"),
                           rows: BN, inFeatures: C, outFeatures: HD)
            GELU.forward(a(b + "gelu"), a(b + "fc1"), count: BN * HD)
            Linear.forward(a(b + "fc2"), a(b + "gelu"), p(b + "mlp.fc2.weight"), p(b + "mlp.fc2.bias"),
                           rows: BN, inFeatures: HD, outFeatures: C)
            Residual.forward(a(b + "out"), a(b + "x2"), a(b + "fc2"), ls ? p(b + "ls2.gamma") : nil, rows: BN, channels: C)
            x = a(b + "out")

            if featureSet.contains(i + 1) {
                // features (B, Np, C) = norm(block output)[:, 1+R:, :], one LayerNorm call per image.
                let f = "features.\(i)"
                for bi in 0..<B {
                    LayerNorm.forward(a(f) + bi * Np * C, a(f + ".mean") + bi * Np, a(f + ".rstd") + bi * Np,
                                      x + (bi * N + 1 + R) * C, p("norm.weight"), p("norm.bias"),
                                      rows: Np, channels: C, eps: eps)
                }
            }
        }

        if config.numClasses > 0 {
            // logits (B, classes) = head(norm(x)[:, 0, :]): the class token of each image.
            for bi in 0..<B {
                LayerNorm.forward(a("head.clsnorm") + bi * C, a("head.mean") + bi, a("head.rstd") + bi, x + bi * N * C,
                                  p("norm.weight"), p("norm.bias"), rows: 1, channels: C, eps: eps)
            }
            Linear.forward(a("head.logits"), a("head.clsnorm"), p("head.weight"), p("head.bias"), rows: B,
                           inFeatures: C, outFeatures: config.numClasses)
        }
    }

    /// `forward` on a ``Tensor`` of shape (B, 3, H, W).
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(images: Tensor<T>, featureLayers: [Int] = [], attentionLayers: [Int] = []) throws {
        guard images.shape.count == 4, images.shape[1] == 3, images.shape[2] == H, images.shape[3] == H else {
            throw PatchGuardError.invalidArgument("ViT forward: images must be (B, 3, \(H), \(H)), got \(images.shape)")
        }
        try forward(images: images.data, batch: images.shape[0], featureLayers: featureLayers,
                    attentionLayers: attentionLayers)
    }
}
