import PatchGuardCore

/// PatchGuard's patch-wise attention discriminator (the official `Discriminator` / `AttentionBlock`):
///
///     x₀ = features + pos                                   pos: learned, one vector per patch
///     for each block:  s = x + drop(MHA(x));  y = LN(s);  z = y + drop(fc2(drop(GELU(fc1(y)))))
///                      (in training MHA mixes the values with drop(softmax(q·kᵀ/√HS)))
///     logits = z · wₒᵀ + bₒ                                 one logit per patch
///
/// Post-norm blocks (LayerNorm ε = 1e-5, PyTorch's default), `nn.MultiheadAttention` layout (fused `in_proj`,
/// `out_proj`), exact GELU, dropout `p` (0.2 in training) on the attention weights (as `nn.MultiheadAttention(
/// dropout=p)` does), on the attention output, inside the MLP and after it.
///
/// Shape legend: `B` batch, `Np` patches, `C` feature channels, `H` MLP hidden, `NH` heads, `R = B·Np` rows.
/// Parameter names follow the official PyTorch module (`discriminator.…`), so its state dict maps one to one.
/// Backward *adds* into `grads` and into `dFeatures`; the caller zeroes gradients once per step.
/// `forward`/`backward` are exported specialised for Float and Double: callers in other modules would otherwise run
/// the unspecialised generic body, whose element-wise loops go through protocol witnesses.
public final class AttentionDiscriminator<T: NNScalar> {
    public struct Config: Equatable, Sendable {
        public var dim: Int
        public var numPatches: Int
        public var layers = 1
        public var heads = 4
        public var hidden = 2048
        public var dropout = 0.2
        public var lnEps = 1e-5
        public init(dim: Int, numPatches: Int, layers: Int = 1, heads: Int = 4, hidden: Int = 2048, dropout: Double = 0.2) {
            self.dim = dim; self.numPatches = numPatches; self.layers = layers; self.heads = heads
            self.hidden = hidden; self.dropout = dropout
        }
    }

    public let config: Config
    public let params: Arena<T>
    public let grads: Arena<T>
    public private(set) var maxBatch = 0

    /// Activations of one block for `maxBatch` images (a smaller batch uses a prefix).
    final class BlockActs {
        let qkv, attn, probs, maskP, dropped, proj, mask1, s, y, mean, rstd, h, g, maskH, gd, m, mask2, z: Tensor<T>
        init(r: Int, b: Int, np: Int, c: Int, hid: Int, nh: Int) {
            qkv = Tensor(shape: [r, 3 * c]); attn = Tensor(shape: [r, c]); probs = Tensor(shape: [b, nh, np, np])
            maskP = Tensor(shape: [b, nh, np, np]); dropped = Tensor(shape: [b, nh, np, np])
            proj = Tensor(shape: [r, c]); mask1 = Tensor(shape: [r, c]); s = Tensor(shape: [r, c])
            y = Tensor(shape: [r, c]); mean = Tensor(shape: [r]); rstd = Tensor(shape: [r])
            h = Tensor(shape: [r, hid]); g = Tensor(shape: [r, hid]); maskH = Tensor(shape: [r, hid])
            gd = Tensor(shape: [r, hid]); m = Tensor(shape: [r, c]); mask2 = Tensor(shape: [r, c]); z = Tensor(shape: [r, c])
        }
    }
    var blocks: [BlockActs] = []
    var x0 = Tensor<T>(shape: [0])        // (B, Np, C) features + pos
    public private(set) var logits = Tensor<T>(shape: [0])   // (B, Np)
    // Backward scratch.
    var dZ = Tensor<T>(shape: [0]), dY = Tensor<T>(shape: [0]), dS = Tensor<T>(shape: [0])
    var dH = Tensor<T>(shape: [0]), dG = Tensor<T>(shape: [0]), dProj = Tensor<T>(shape: [0])
    var dAttn = Tensor<T>(shape: [0]), dQKV = Tensor<T>(shape: [0]), dScores = Tensor<T>(shape: [0])
    var lastBatch = 0
    var lastTraining = false

    public static func parameterLayout(_ c: Config) -> [(name: String, shape: [Int])] {
        let C = c.dim, H = c.hidden
        var layout: [(String, [Int])] = [("discriminator.positional_encodings", [c.numPatches, C])]
        for l in 0..<c.layers {
            let p = "discriminator.transformer_encoder.\(l)."
            layout += [(p + "attn.in_proj_weight", [3 * C, C]), (p + "attn.in_proj_bias", [3 * C]),
                       (p + "attn.out_proj.weight", [C, C]), (p + "attn.out_proj.bias", [C]),
                       (p + "layer_norm_1.weight", [C]), (p + "layer_norm_1.bias", [C]),
                       (p + "linear.0.weight", [H, C]), (p + "linear.0.bias", [H]),
                       (p + "linear.3.weight", [C, H]), (p + "linear.3.bias", [C])]
        }
        layout += [("discriminator.output_layer.0.weight", [1, C]), ("discriminator.output_layer.0.bias", [1])]
        return layout
    }

    /// A discriminator initialised as PyTorch initialises the official module (seeded).
    public init(config: Config, using rng: inout SeededRNG) throws {
        guard config.dim % config.heads == 0 else {
            throw PatchGuardError.invalidArgument("discriminator: dim \(config.dim) is not divisible by heads \(config.heads)")
        }
        guard config.dropout >= 0, config.dropout < 1 else {
            throw PatchGuardError.invalidArgument("discriminator: dropout must be in [0, 1), got \(config.dropout)")
        }
        self.config = config
        params = Arena(layout: Self.parameterLayout(config))
        grads = Arena(sameLayoutAs: params)
        let C = Double(config.dim), H = Double(config.hidden)
        rng.fillNormal(params["discriminator.positional_encodings"].buffer, std: 1)
        for l in 0..<config.layers {
            let p = "discriminator.transformer_encoder.\(l)."
            let xavier = (6 / (C + 3 * C)).squareRoot()
            rng.fillUniform(params[p + "attn.in_proj_weight"].buffer, lo: -xavier, hi: xavier)
            rng.fillUniform(params[p + "attn.out_proj.weight"].buffer, lo: -1 / C.squareRoot(), hi: 1 / C.squareRoot())
            params[p + "layer_norm_1.weight"].buffer.update(repeating: 1)
            rng.fillUniform(params[p + "linear.0.weight"].buffer, lo: -1 / C.squareRoot(), hi: 1 / C.squareRoot())
            rng.fillUniform(params[p + "linear.0.bias"].buffer, lo: -1 / C.squareRoot(), hi: 1 / C.squareRoot())
            rng.fillUniform(params[p + "linear.3.weight"].buffer, lo: -1 / H.squareRoot(), hi: 1 / H.squareRoot())
            rng.fillUniform(params[p + "linear.3.bias"].buffer, lo: -1 / H.squareRoot(), hi: 1 / H.squareRoot())
        }
        rng.fillUniform(params["discriminator.output_layer.0.weight"].buffer, lo: -1 / C.squareRoot(), hi: 1 / C.squareRoot())
        rng.fillUniform(params["discriminator.output_layer.0.bias"].buffer, lo: -1 / C.squareRoot(), hi: 1 / C.squareRoot())
    }

    func ensureCapacity(_ batch: Int) {
        guard batch > maxBatch else { return }
        maxBatch = batch
        let c = config, r = batch * c.numPatches
        blocks = (0..<c.layers).map { _ in
            BlockActs(r: r, b: batch, np: c.numPatches, c: c.dim, hid: c.hidden, nh: c.heads)
        }
        x0 = Tensor(shape: [r, c.dim]); logits = Tensor(shape: [r])
        dZ = Tensor(shape: [r, c.dim]); dY = Tensor(shape: [r, c.dim]); dS = Tensor(shape: [r, c.dim])
        dH = Tensor(shape: [r, c.hidden]); dG = Tensor(shape: [r, c.hidden]); dProj = Tensor(shape: [r, c.dim])
        dAttn = Tensor(shape: [r, c.dim]); dQKV = Tensor(shape: [r, 3 * c.dim])
        dScores = Tensor(shape: [batch, c.heads, c.numPatches, c.numPatches])
    }

    /// Patch logits (B, Np) for features (B, Np, C). With `training`, dropout masks are drawn from `rng`.
    @discardableResult
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(features: UnsafePointer<T>, batch B: Int, training: Bool,
                        using rng: inout SeededRNG) -> UnsafeMutablePointer<T> {
        ensureCapacity(B)
        lastBatch = B; lastTraining = training
        let c = config, C = c.dim, Np = c.numPatches, R = B * Np, H = c.hidden
        let pos = params.pointer("discriminator.positional_encodings")
        for b in 0..<B { Residual.forward(x0.data + b * Np * C, features + b * Np * C, pos, nil, rows: Np, channels: C) }
        var x = UnsafePointer(x0.data)
        for (l, a) in blocks.enumerated() {
            let p = "discriminator.transformer_encoder.\(l)."
            Linear.forward(a.qkv.data, x, params.pointer(p + "attn.in_proj_weight"), params.pointer(p + "attn.in_proj_bias"),
                           rows: R, inFeatures: C, outFeatures: 3 * C)
            let pDrop = training ? c.dropout : 0
            if pDrop > 0 {
                Dropout.drawMask(a.maskP.data, count: B * c.heads * Np * Np, p: pDrop, using: &rng)
                Attention.forward(a.attn.data, a.probs.data, a.qkv.data, batch: B, tokens: Np, channels: C,
                                  heads: c.heads, dropMask: a.maskP.data, dropped: a.dropped.data)
            } else {
                Attention.forward(a.attn.data, a.probs.data, a.qkv.data, batch: B, tokens: Np, channels: C,
                                  heads: c.heads)
            }
            Linear.forward(a.proj.data, a.attn.data, params.pointer(p + "attn.out_proj.weight"),
                           params.pointer(p + "attn.out_proj.bias"), rows: R, inFeatures: C, outFeatures: C)
            Dropout.drawMask(a.mask1.data, count: R * C, p: pDrop, using: &rng)
            Dropout.forward(a.proj.data, a.mask1.data, a.proj.data, count: R * C)
            Residual.forward(a.s.data, x, a.proj.data, nil, rows: R, channels: C)
            LayerNorm.forward(a.y.data, a.mean.data, a.rstd.data, a.s.data, params.pointer(p + "layer_norm_1.weight"),
                              params.pointer(p + "layer_norm_1.bias"), rows: R, channels: C, eps: T(c.lnEps))
            Linear.forward(a.h.data, a.y.data, params.pointer(p + "linear.0.weight"), params.pointer(p + "linear.0.bias"),
                           rows: R, inFeatures: C, outFeatures: H)
            GELU.forward(a.g.data, a.h.data, count: R * H)
            Dropout.drawMask(a.maskH.data, count: R * H, p: pDrop, using: &rng)
            Dropout.forward(a.gd.data, a.maskH.data, a.g.data, count: R * H)
            Linear.forward(a.m.data, a.gd.data, params.pointer(p + "linear.3.weight"), params.pointer(p + "linear.3.bias"),
                           rows: R, inFeatures: H, outFeatures: C)
            Dropout.drawMask(a.mask2.data, count: R * C, p: pDrop, using: &rng)
            Dropout.forward(a.m.data, a.mask2.data, a.m.data, count: R * C)
            Residual.forward(a.z.data, a.y.data, a.m.data, nil, rows: R, channels: C)
            x = UnsafePointer(a.z.data)
        }
        Linear.forward(logits.data, x, params.pointer("discriminator.output_layer.0.weight"),
                       params.pointer("discriminator.output_layer.0.bias"), rows: R, inFeatures: C, outFeatures: 1)
        return logits.data
    }

    /// Backward of the last `forward`: adds parameter gradients into `grads` (unless skipped) and the feature
    /// gradient into `dFeatures` (B, Np, C) when given.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(dLogits: UnsafePointer<T>, dFeatures: UnsafeMutablePointer<T>?,
                         computeParameterGradients: Bool = true) {
        let c = config, B = lastBatch, C = c.dim, Np = c.numPatches, R = B * Np, H = c.hidden
        func g(_ name: String) -> UnsafeMutablePointer<T>? { computeParameterGradients ? grads.pointer(name) : nil }
        let xLast = blocks.last.map { UnsafePointer($0.z.data) } ?? UnsafePointer(x0.data)
        // logits = Linear(z)
        dZ.zero()
        Linear.backward(dZ.data, g("discriminator.output_layer.0.weight"), g("discriminator.output_layer.0.bias"),
                        dLogits, xLast, params.pointer("discriminator.output_layer.0.weight"),
                        rows: R, inFeatures: C, outFeatures: 1)
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let a = blocks[l], p = "discriminator.transformer_encoder.\(l)."
            let x = l == 0 ? UnsafePointer(x0.data) : UnsafePointer(blocks[l - 1].z.data)
            // z = y + drop(m):  dY = dZ, dM = dZ ⊙ mask2
            dY.data.update(from: dZ.data, count: R * C)
            dProj.zero()
            Dropout.backward(dProj.data, dZ.data, a.mask2.data, count: R * C)         // dProj holds dM here
            // m = fc2(gd)
            dG.zero()
            Linear.backward(dG.data, g(p + "linear.3.weight"), g(p + "linear.3.bias"), dProj.data, a.gd.data,
                            params.pointer(p + "linear.3.weight"), rows: R, inFeatures: H, outFeatures: C)
            // gd = drop(g); g = GELU(h)
            dH.zero()
            for i in 0..<(R * H) { dG.data[i] *= a.maskH.data[i] }
            GELU.backward(dH.data, dG.data, a.h.data, count: R * H)
            // h = fc1(y)
            Linear.backward(dY.data, g(p + "linear.0.weight"), g(p + "linear.0.bias"), dH.data, a.y.data,
                            params.pointer(p + "linear.0.weight"), rows: R, inFeatures: C, outFeatures: H)
            // y = LN(s)
            dS.zero()
            LayerNorm.backward(dS.data, g(p + "layer_norm_1.weight"), g(p + "layer_norm_1.bias"), dY.data, a.s.data,
                               params.pointer(p + "layer_norm_1.weight"), a.mean.data, a.rstd.data, rows: R, channels: C)
            // s = x + drop(proj):  dX = dS (reuse dZ as the next dX), dProj = dS ⊙ mask1
            dZ.data.update(from: dS.data, count: R * C)
            dProj.zero()
            Dropout.backward(dProj.data, dS.data, a.mask1.data, count: R * C)
            // proj = out_proj(attn)
            dAttn.zero()
            Linear.backward(dAttn.data, g(p + "attn.out_proj.weight"), g(p + "attn.out_proj.bias"), dProj.data,
                            a.attn.data, params.pointer(p + "attn.out_proj.weight"), rows: R, inFeatures: C, outFeatures: C)
            // attn = MHA(qkv)
            dQKV.zero()
            let dropped = lastTraining && c.dropout > 0
            Attention.backward(dQKV.data, dScores.data, dAttn.data, nil, a.qkv.data, a.probs.data,
                               batch: B, tokens: Np, channels: C, heads: c.heads,
                               dropMask: dropped ? UnsafePointer(a.maskP.data) : nil,
                               dropped: dropped ? UnsafePointer(a.dropped.data) : nil)
            // qkv = in_proj(x)
            Linear.backward(dZ.data, g(p + "attn.in_proj_weight"), g(p + "attn.in_proj_bias"), dQKV.data, x,
                            params.pointer(p + "attn.in_proj_weight"), rows: R, inFeatures: C, outFeatures: 3 * C)
        }
        // x₀ = features + pos
        if let dPos = g("discriminator.positional_encodings") {
            for b in 0..<B { for i in 0..<(Np * C) { dPos[i] += dZ.data[b * Np * C + i] } }
        }
        if let dFeatures { for i in 0..<(R * C) { dFeatures[i] += dZ.data[i] } }
    }
}
