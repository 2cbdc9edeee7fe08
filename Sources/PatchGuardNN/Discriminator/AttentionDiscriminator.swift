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
/// Backward *adds* into `grads` and into `dFeatures`; the caller zeroes gradients once per step. All maths goes
/// through ``kernels``; buffers are typed views (``DiscriminatorParameters``, ``DiscriminatorActivations``) into
/// arenas from the kernels' allocator.
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
    /// The backend every call goes through; the arenas come from its allocator.
    public let kernels: any Kernels<T>
    /// Typed views into ``params`` and ``grads`` (built once at init).
    public let paramViews: DiscriminatorParameters<T>
    public let gradViews: DiscriminatorParameters<T>
    public private(set) var maxBatch = 0
    /// Activations and backward scratch for `maxBatch` images (a smaller batch uses a prefix); regrown by a larger batch.
    var activations: Arena<T>?
    var acts: DiscriminatorActivations<T>?
    var lastBatch = 0
    var lastTraining = false

    /// Patch logits (B, Np) of the last forward.
    public var logits: TensorView<T> {
        TensorView(acts?.logits ?? UnsafeMutablePointer<T>(bitPattern: 64)!, shape: [lastBatch * config.numPatches])
    }

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
    public init(config: Config, using rng: inout SeededRNG, kernels: (any Kernels<T>)? = nil) throws {
        guard config.dim % config.heads == 0 else {
            throw PatchGuardError.invalidArgument("discriminator: dim \(config.dim) is not divisible by heads \(config.heads)")
        }
        guard config.dropout >= 0, config.dropout < 1 else {
            throw PatchGuardError.invalidArgument("discriminator: dropout must be in [0, 1), got \(config.dropout)")
        }
        self.config = config
        let k = kernels ?? Backend.cpu.kernels(T.self)
        self.kernels = k
        params = Arena(layout: Self.parameterLayout(config), allocator: k.allocator)
        grads = Arena(sameLayoutAs: params, allocator: k.allocator)
        paramViews = DiscriminatorParameters(params, config: config)
        gradViews = DiscriminatorParameters(grads, config: config)
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
        let arena = Arena<T>(layout: DiscriminatorActivations<T>.layout(config, maxBatch: batch), allocator: kernels.allocator)
        activations = arena
        acts = DiscriminatorActivations(arena, config: config)
    }

    /// Patch logits (B, Np) for features (B, Np, C). With `training`, dropout masks are drawn from `rng`.
    @discardableResult
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func forward(features: UnsafePointer<T>, batch B: Int, training: Bool,
                        using rng: inout SeededRNG) -> UnsafeMutablePointer<T> {
        ensureCapacity(B)
        lastBatch = B; lastTraining = training
        let k = kernels, p = paramViews, a = acts!
        let c = config, C = c.dim, Np = c.numPatches, R = B * Np, H = c.hidden, NH = c.heads
        k.broadcastAdd(a.x0, features, p.pos, batch: B, count: Np * C)
        var x = UnsafePointer(a.x0)
        for (bp, ba) in zip(p.blocks, a.blocks) {
            k.linearForward(ba.qkv, x, bp.inProjWeight, bp.inProjBias, rows: R, inFeatures: C, outFeatures: 3 * C)
            let pDrop = training ? c.dropout : 0
            if pDrop > 0 {
                k.dropoutMask(ba.maskP, count: B * NH * Np * Np, p: pDrop, using: &rng)
                k.attentionForward(ba.attn, ba.probs, ba.qkv, batch: B, tokens: Np, channels: C, heads: NH,
                                   dropMask: ba.maskP, dropped: ba.dropped)
            } else {
                k.attentionForward(ba.attn, ba.probs, ba.qkv, batch: B, tokens: Np, channels: C, heads: NH,
                                   dropMask: nil, dropped: nil)
            }
            k.linearForward(ba.proj, ba.attn, bp.outProjWeight, bp.outProjBias, rows: R, inFeatures: C, outFeatures: C)
            k.dropoutMask(ba.mask1, count: R * C, p: pDrop, using: &rng)
            k.dropoutForward(ba.proj, ba.mask1, ba.proj, count: R * C)
            k.residualForward(ba.s, x, ba.proj, nil, rows: R, channels: C)
            k.layerNormForward(ba.y, ba.mean, ba.rstd, ba.s, bp.norm1Weight, bp.norm1Bias, rows: R, channels: C,
                               eps: T(c.lnEps))
            k.linearForward(ba.h, ba.y, bp.fc1Weight, bp.fc1Bias, rows: R, inFeatures: C, outFeatures: H)
            k.geluForward(ba.g, ba.h, count: R * H)
            k.dropoutMask(ba.maskH, count: R * H, p: pDrop, using: &rng)
            k.dropoutForward(ba.gd, ba.maskH, ba.g, count: R * H)
            k.linearForward(ba.m, ba.gd, bp.fc2Weight, bp.fc2Bias, rows: R, inFeatures: H, outFeatures: C)
            k.dropoutMask(ba.mask2, count: R * C, p: pDrop, using: &rng)
            k.dropoutForward(ba.m, ba.mask2, ba.m, count: R * C)
            k.residualForward(ba.z, ba.y, ba.m, nil, rows: R, channels: C)
            x = UnsafePointer(ba.z)
        }
        k.linearForward(a.logits, x, p.outWeight, p.outBias, rows: R, inFeatures: C, outFeatures: 1)
        return a.logits
    }

    /// Backward of the last `forward`: adds parameter gradients into `grads` (unless skipped) and the feature
    /// gradient into `dFeatures` (B, Np, C) when given. Scratch is zeroed in one place per block
    /// (``DiscriminatorActivations/zeroBlockScratch(batch:kernels:)``) plus `dZ` once per call.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public func backward(dLogits: UnsafePointer<T>, dFeatures: UnsafeMutablePointer<T>?,
                         computeParameterGradients: Bool = true) {
        let c = config, B = lastBatch, C = c.dim, Np = c.numPatches, R = B * Np, H = c.hidden, NH = c.heads
        let k = kernels, p = paramViews, a = acts!
        let g: DiscriminatorParameters<T>? = computeParameterGradients ? gradViews : nil
        let xLast = UnsafePointer(a.blocks.last?.z ?? a.x0)
        // logits = Linear(z)
        k.zero(a.dZ, count: R * C)
        k.linearBackward(a.dZ, g?.outWeight, g?.outBias, dLogits, xLast, p.outWeight, rows: R, inFeatures: C,
                         outFeatures: 1)
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let bp = p.blocks[l], ba = a.blocks[l], bg = g?.blocks[l]
            let x = UnsafePointer(l == 0 ? a.x0 : a.blocks[l - 1].z)
            a.zeroBlockScratch(batch: B, kernels: k)
            // z = y + drop(m):  dY = dZ, dM = dZ ⊙ mask2
            k.copy(a.dY, a.dZ, count: R * C)
            k.dropoutBackward(a.dM, a.dZ, ba.mask2, count: R * C)
            // m = fc2(gd)
            k.linearBackward(a.dGD, bg?.fc2Weight, bg?.fc2Bias, a.dM, ba.gd, bp.fc2Weight, rows: R, inFeatures: H,
                             outFeatures: C)
            // gd = drop(g); g = GELU(h)
            k.dropoutBackward(a.dG, a.dGD, ba.maskH, count: R * H)
            k.geluBackward(a.dH, a.dG, ba.h, count: R * H)
            // h = fc1(y)
            k.linearBackward(a.dY, bg?.fc1Weight, bg?.fc1Bias, a.dH, ba.y, bp.fc1Weight, rows: R, inFeatures: C,
                             outFeatures: H)
            // y = LN(s)
            k.layerNormBackward(a.dS, bg?.norm1Weight, bg?.norm1Bias, a.dY, ba.s, bp.norm1Weight, ba.mean, ba.rstd,
                                rows: R, channels: C)
            // s = x + drop(proj):  dX = dS (dZ becomes the next dX), dProj = dS ⊙ mask1
            k.copy(a.dZ, a.dS, count: R * C)
            k.dropoutBackward(a.dProj, a.dS, ba.mask1, count: R * C)
            // proj = out_proj(attn)
            k.linearBackward(a.dAttn, bg?.outProjWeight, bg?.outProjBias, a.dProj, ba.attn, bp.outProjWeight,
                             rows: R, inFeatures: C, outFeatures: C)
            // attn = MHA(qkv)
            let dropped = lastTraining && c.dropout > 0
            k.attentionBackward(a.dQKV, a.dScores, a.dAttn, nil, ba.qkv, ba.probs, batch: B, tokens: Np, channels: C,
                                heads: NH, dropMask: dropped ? UnsafePointer(ba.maskP) : nil,
                                dropped: dropped ? UnsafePointer(ba.dropped) : nil)
            // qkv = in_proj(x)
            k.linearBackward(a.dZ, bg?.inProjWeight, bg?.inProjBias, a.dQKV, x, bp.inProjWeight, rows: R,
                             inFeatures: C, outFeatures: 3 * C)
        }
        // x₀ = features + pos
        if let dPos = g?.pos { k.batchSumInto(dPos, a.dZ, batch: B, count: Np * C) }
        if let dFeatures { k.addInto(dFeatures, a.dZ, count: R * C) }
    }
}

/// One discriminator block's parameters (or their gradients), official PyTorch names in the arena.
public struct DiscriminatorBlockParameters<T: NNScalar> {
    public let inProjWeight: UnsafeMutablePointer<T>   // (3C, C) attn.in_proj_weight
    public let inProjBias: UnsafeMutablePointer<T>     // (3C)
    public let outProjWeight: UnsafeMutablePointer<T>  // (C, C) attn.out_proj.weight
    public let outProjBias: UnsafeMutablePointer<T>    // (C)
    public let norm1Weight: UnsafeMutablePointer<T>    // (C) layer_norm_1.weight
    public let norm1Bias: UnsafeMutablePointer<T>      // (C)
    public let fc1Weight: UnsafeMutablePointer<T>      // (H, C) linear.0.weight
    public let fc1Bias: UnsafeMutablePointer<T>        // (H)
    public let fc2Weight: UnsafeMutablePointer<T>      // (C, H) linear.3.weight
    public let fc2Bias: UnsafeMutablePointer<T>        // (C)
}

/// All discriminator parameters (or gradients).
public struct DiscriminatorParameters<T: NNScalar> {
    public let pos: UnsafeMutablePointer<T>            // (Np, C) positional_encodings
    public let blocks: [DiscriminatorBlockParameters<T>]
    public let outWeight: UnsafeMutablePointer<T>      // (1, C) output_layer.0.weight
    public let outBias: UnsafeMutablePointer<T>        // (1)

    init(_ arena: Arena<T>, config c: AttentionDiscriminator<T>.Config) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { arena.pointer(n) }
        pos = v("discriminator.positional_encodings")
        blocks = (0..<c.layers).map { l in
            let p = "discriminator.transformer_encoder.\(l)."
            return DiscriminatorBlockParameters(
                inProjWeight: v(p + "attn.in_proj_weight"), inProjBias: v(p + "attn.in_proj_bias"),
                outProjWeight: v(p + "attn.out_proj.weight"), outProjBias: v(p + "attn.out_proj.bias"),
                norm1Weight: v(p + "layer_norm_1.weight"), norm1Bias: v(p + "layer_norm_1.bias"),
                fc1Weight: v(p + "linear.0.weight"), fc1Bias: v(p + "linear.0.bias"),
                fc2Weight: v(p + "linear.3.weight"), fc2Bias: v(p + "linear.3.bias"))
        }
        outWeight = v("discriminator.output_layer.0.weight"); outBias = v("discriminator.output_layer.0.bias")
    }
}

/// One block's activations (R = B·Np rows).
public struct DiscriminatorBlockActivations<T: NNScalar> {
    public let qkv: UnsafeMutablePointer<T>      // (R, 3C)
    public let attn: UnsafeMutablePointer<T>     // (R, C)
    public let probs: UnsafeMutablePointer<T>    // (B, NH, Np, Np)
    public let maskP: UnsafeMutablePointer<T>    // (B, NH, Np, Np) attention-dropout mask
    public let dropped: UnsafeMutablePointer<T>  // (B, NH, Np, Np) dropped probabilities
    public let proj: UnsafeMutablePointer<T>     // (R, C) after dropout
    public let mask1: UnsafeMutablePointer<T>    // (R, C)
    public let s: UnsafeMutablePointer<T>        // (R, C) x + drop(proj)
    public let y: UnsafeMutablePointer<T>        // (R, C) LN(s)
    public let mean: UnsafeMutablePointer<T>     // (R)
    public let rstd: UnsafeMutablePointer<T>     // (R)
    public let h: UnsafeMutablePointer<T>        // (R, H) fc1
    public let g: UnsafeMutablePointer<T>        // (R, H) GELU
    public let maskH: UnsafeMutablePointer<T>    // (R, H)
    public let gd: UnsafeMutablePointer<T>       // (R, H) drop(GELU)
    public let m: UnsafeMutablePointer<T>        // (R, C) fc2 after dropout
    public let mask2: UnsafeMutablePointer<T>    // (R, C)
    public let z: UnsafeMutablePointer<T>        // (R, C) block output
}

/// Activations and backward scratch of the discriminator for `maxBatch` images.
public struct DiscriminatorActivations<T: NNScalar> {
    public let x0: UnsafeMutablePointer<T>       // (B, Np, C) features + pos
    public let blocks: [DiscriminatorBlockActivations<T>]
    public let logits: UnsafeMutablePointer<T>   // (B, Np)
    // Backward scratch (R = B·Np rows). dZ, dY: overwritten by copies (dZ zeroed once per call);
    // the rest are added into and zeroed once per block by ``zeroBlockScratch(batch:kernels:)``.
    public let dZ: UnsafeMutablePointer<T>       // (R, C)
    public let dY: UnsafeMutablePointer<T>       // (R, C)
    public let dM: UnsafeMutablePointer<T>       // (R, C)
    public let dGD: UnsafeMutablePointer<T>      // (R, H)
    public let dG: UnsafeMutablePointer<T>       // (R, H)
    public let dH: UnsafeMutablePointer<T>       // (R, H)
    public let dS: UnsafeMutablePointer<T>       // (R, C)
    public let dProj: UnsafeMutablePointer<T>    // (R, C)
    public let dAttn: UnsafeMutablePointer<T>    // (R, C)
    public let dQKV: UnsafeMutablePointer<T>     // (R, 3C)
    public let dScores: UnsafeMutablePointer<T>  // (B, NH, Np, Np) overwritten
    let np: Int, c: Int, hidden: Int

    static func layout(_ c: AttentionDiscriminator<T>.Config, maxBatch b: Int) -> [(name: String, shape: [Int])] {
        let r = b * c.numPatches, C = c.dim, H = c.hidden, NH = c.heads, Np = c.numPatches
        var l: [(name: String, shape: [Int])] = [("x0", [r, C]), ("logits", [r])]
        for i in 0..<c.layers {
            let p = "blocks.\(i)."
            l += [(p + "qkv", [r, 3 * C]), (p + "attn", [r, C]), (p + "probs", [b, NH, Np, Np]),
                  (p + "maskP", [b, NH, Np, Np]), (p + "dropped", [b, NH, Np, Np]), (p + "proj", [r, C]),
                  (p + "mask1", [r, C]), (p + "s", [r, C]), (p + "y", [r, C]), (p + "mean", [r]), (p + "rstd", [r]),
                  (p + "h", [r, H]), (p + "g", [r, H]), (p + "maskH", [r, H]), (p + "gd", [r, H]), (p + "m", [r, C]),
                  (p + "mask2", [r, C]), (p + "z", [r, C])]
        }
        l += [("dZ", [r, C]), ("dY", [r, C]), ("dM", [r, C]), ("dGD", [r, H]), ("dG", [r, H]), ("dH", [r, H]),
              ("dS", [r, C]), ("dProj", [r, C]), ("dAttn", [r, C]), ("dQKV", [r, 3 * C]), ("dScores", [b, NH, Np, Np])]
        return l
    }

    init(_ arena: Arena<T>, config c: AttentionDiscriminator<T>.Config) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { arena.pointer(n) }
        x0 = v("x0"); logits = v("logits")
        blocks = (0..<c.layers).map { i in
            let p = "blocks.\(i)."
            return DiscriminatorBlockActivations(
                qkv: v(p + "qkv"), attn: v(p + "attn"), probs: v(p + "probs"), maskP: v(p + "maskP"),
                dropped: v(p + "dropped"), proj: v(p + "proj"), mask1: v(p + "mask1"), s: v(p + "s"), y: v(p + "y"),
                mean: v(p + "mean"), rstd: v(p + "rstd"), h: v(p + "h"), g: v(p + "g"), maskH: v(p + "maskH"),
                gd: v(p + "gd"), m: v(p + "m"), mask2: v(p + "mask2"), z: v(p + "z"))
        }
        dZ = v("dZ"); dY = v("dY"); dM = v("dM"); dGD = v("dGD"); dG = v("dG"); dH = v("dH"); dS = v("dS")
        dProj = v("dProj"); dAttn = v("dAttn"); dQKV = v("dQKV"); dScores = v("dScores")
        np = c.numPatches; self.c = c.dim; hidden = c.hidden
    }

    /// Zeroes, for `batch` images, every scratch buffer a block's backward adds into (the one place they are zeroed).
    func zeroBlockScratch(batch: Int, kernels k: any Kernels<T>) {
        let r = batch * np
        for p in [dM, dS, dProj, dAttn] { k.zero(p, count: r * c) }
        for p in [dGD, dG, dH] { k.zero(p, count: r * hidden) }
        k.zero(dQKV, count: r * 3 * c)
    }
}
