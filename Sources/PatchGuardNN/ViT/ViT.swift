import Foundation
import PatchGuardCore

/// A pre-norm Vision Transformer (timm `VisionTransformer` layout) with hand-written forward and backward.
///
/// ```
/// x0  = TokenEmbed(PatchEmbed(InputNormalization(image)), cls, reg, pos)         // (B, N, C)
/// for each block i:  x = x + ls1 ⊙ proj(Attention(qkv(norm1(x))))
///                    x = x + ls2 ⊙ fc2(GELU(fc1(norm2(x))))                       // block i output (B, N, C)
/// features.i = norm(block i output)[:, 1+R:, :]                                   // (B, Np, C)
/// logits     = head(norm(block depth output)[:, 0, :])                            // (B, classes)
/// ```
/// Shape legend: `B` batch, `N = 1 + R + Np` tokens, `Np` patches, `R` registers, `C` = `dim`, `NH` heads,
/// `HD` MLP hidden, `K = 3·P·P`, `H = W` = `imageSize`.
///
/// Storage (STYLE.md): ``parameters`` and ``gradients`` are arenas whose entry names are timm's parameter names
/// (`blocks.3.attn.qkv.weight`, …), so a checkpoint is one loop over entries. Activations live in one arena sized
/// for `maxBatch`; a smaller batch uses a prefix of every buffer. Backward scratch lives in a fourth arena. The hot
/// path reads them through typed views built once at init (``params``, ``grads``, ``acts``, ``ViTScratch``) and
/// does all its maths through ``kernels`` (``Kernels``): no element loops, no memsets, no name look-ups here.
/// Layers are 1-based in the public API (`featureLayers: [12]` is the last block of ViT-S), matching timm's
/// "block i" in the fixtures; arena names use timm's 0-based block index.
///
/// The type is a reference type holding raw buffers; one instance is not safe to use from two threads at once.
public final class ViT<T: NNScalar> {
    public let config: ViTConfig
    public let maxBatch: Int
    /// Parameters under timm names.
    public let parameters: Arena<T>
    /// Gradients, same layout as ``parameters``. Backward adds into them; call `gradients.zero()` once per step.
    public let gradients: Arena<T>
    /// Forward activations and caches, sized for `maxBatch`.
    public let activations: Arena<T>
    /// Backward scratch (reused by every block), sized for `maxBatch`.
    let scratch: Arena<T>
    /// The backend every forward/backward call goes through; the arenas come from its allocator.
    public let kernels: any Kernels<T>
    /// Typed views (built once at init) into ``parameters``, ``gradients``, ``activations`` and the scratch arena.
    public let params: ViTParameters<T>
    public let grads: ViTParameters<T>
    public let acts: ViTActivations<T>
    let scr: ViTScratch<T>
    /// Batch size of the last forward (0 before the first).
    public internal(set) var batch = 0
    /// Whether the last forward stored every block's activations (what backward needs); false after a
    /// forward-only pass (`forward(…, storeCaches: false)`).
    public internal(set) var cachesStored = false
    /// Image-parallel passes: with more than one worker, forward and backward split the batch into this many
    /// contiguous shares of images and run each share's whole pass on its own thread, OpenBLAS at one thread
    /// (``SingleThreadedBLAS/parallelShares(_:_:)``), instead of one pass whose GEMMs OpenBLAS splits. Parameter
    /// gradients of every share but the first go to a private arena (made on first use) and are added into
    /// ``gradients`` at the end of the backward, or, for models of ``blockwiseShareGradientsMinimum`` parameters
    /// and more, after each block (the backward then joins the shares once per block). Default:
    /// ``defaultImageParallelWorkers``.
    /// Same maths; the gradient sums round in a different order than with one share.
    public var imageParallelWorkers: Int
    /// Private parameter-gradient arenas of shares 2… of an image-parallel backward (made on first use): every
    /// parameter (whole passes), or one block and the parameters outside the blocks (block by block, large models;
    /// see ``blockwiseShareGradientsMinimum``).
    var shareGradients: [(arena: Arena<T>, view: ViTParameters<T>)] = []
    var shareBlockGradients: [(arena: Arena<T>, view: ViTParameters<T>)] = []
    /// The elements block i's parameters occupy in ``gradients`` (and ``parameters``), and block 0's in every
    /// arena of ``shareBlockGradients`` (set when the first is made).
    let blockSpans: [Range<Int>]
    var shareBlockSpan = 0..<0
    /// Parameter count (of the arena) from which an image-parallel backward with parameter gradients runs block by
    /// block (private per-share gradients of one block) instead of in whole passes (a private copy of every
    /// parameter per share): 8 M, 32 MB of fp32 per extra share. ViT-S/14 (22 M) runs block by block, ViT-Ti
    /// (5.7 M) and `vit_cpu_tiny` (0.8 M) in whole passes. Same results either way (tests set it to 0).
    public var blockwiseShareGradientsMinimum = 8 << 20

    // Cached sizes.
    let C: Int, N: Int, Np: Int, R: Int, NH: Int, HD: Int, P: Int, H: Int, K: Int, depth: Int

    /// A model with timm-style random weights (see ``initializeParameters(using:)``).
    public convenience init(config: ViTConfig, maxBatch: Int, seed: UInt64, kernels: (any Kernels<T>)? = nil) throws {
        try self.init(config: config, maxBatch: maxBatch, kernels: kernels)
        var rng = SeededRNG(seed: seed)
        initializeParameters(using: &rng)
    }

    /// A model with all parameters zero (load weights next). `kernels` defaults to the CPU backend.
    public init(config: ViTConfig, maxBatch: Int, kernels: (any Kernels<T>)? = nil) throws {
        try config.validate()
        guard maxBatch >= 1 else { throw PatchGuardError.invalidArgument("ViT maxBatch must be ≥ 1, got \(maxBatch)") }
        self.config = config
        self.maxBatch = maxBatch
        C = config.dim; N = config.numTokens; Np = config.numPatches; R = config.numRegisters; NH = config.heads
        HD = config.mlpHidden; P = config.patchSize; H = config.imageSize; K = 3 * P * P; depth = config.depth
        let k = kernels ?? Backend.cpu.kernels(T.self)
        self.kernels = k
        parameters = Arena(layout: ViT.parameterLayout(config), allocator: k.allocator)
        gradients = Arena(sameLayoutAs: parameters, allocator: k.allocator)
        activations = Arena(layout: ViT.activationLayout(config, maxBatch: maxBatch), allocator: k.allocator)
        scratch = Arena(layout: ViTScratch<T>.layout(config, maxBatch: maxBatch), allocator: k.allocator)
        blockSpans = ViT.blockSpans(of: parameters, depth: depth)
        params = ViTParameters(parameters, config: config)
        grads = ViTParameters(gradients, config: config)
        acts = ViTActivations(activations, config: config)
        scr = ViTScratch(scratch, config: config)
        imageParallelWorkers = ViT.defaultImageParallelWorkers
    }

    /// `Parallel.threads`, or 1 with `PATCHGUARD_IMAGE_PARALLEL=0`. Measured on 2 Zen 4 cores (best of 3
    /// interleaved runs, README "Performance notes"): faster than threaded GEMMs for every preset, most for narrow
    /// models (`vit_cpu_tiny` train +15–25 %, ViT-Ti +40 %; ViT-S/14 bf16 +10–16 %, fp32 0–7 %).
    public static var defaultImageParallelWorkers: Int {
        ProcessInfo.processInfo.environment["PATCHGUARD_IMAGE_PARALLEL"] == "0" ? 1 : Parallel.threads
    }

    /// The shares of a `B`-image batch an image-parallel pass splits it into (one share: a plain pass).
    func imageShares(_ B: Int) -> [Range<Int>] {
        Parallel.shares(B, parts: max(1, imageParallelWorkers))
    }

    /// timm parameter names and shapes, in timm's `state_dict` order.
    public static func parameterLayout(_ c: ViTConfig) -> [(name: String, shape: [Int])] {
        let C = c.dim, HD = c.mlpHidden, P = c.patchSize
        var l: [(name: String, shape: [Int])] = [("cls_token", [1, 1, C])]
        if c.numRegisters > 0 { l.append(("reg_token", [1, c.numRegisters, C])) }
        l += [("pos_embed", [1, c.posEmbedRows, C]), ("patch_embed.proj.weight", [C, 3, P, P]),
              ("patch_embed.proj.bias", [C])]
        for i in 0..<c.depth {
            let p = "blocks.\(i)."
            l += [(p + "norm1.weight", [C]), (p + "norm1.bias", [C]), (p + "attn.qkv.weight", [3 * C, C])]
            if c.qkvBias { l.append((p + "attn.qkv.bias", [3 * C])) }
            l += [(p + "attn.proj.weight", [C, C]), (p + "attn.proj.bias", [C])]
            if c.hasLayerScale { l.append((p + "ls1.gamma", [C])) }
            l += [(p + "norm2.weight", [C]), (p + "norm2.bias", [C]), (p + "mlp.fc1.weight", [HD, C]),
                  (p + "mlp.fc1.bias", [HD]), (p + "mlp.fc2.weight", [C, HD]), (p + "mlp.fc2.bias", [C])]
            if c.hasLayerScale { l.append((p + "ls2.gamma", [C])) }
        }
        l += [("norm.weight", [C]), ("norm.bias", [C])]
        if c.numClasses > 0 { l += [("head.weight", [c.numClasses, C]), ("head.bias", [c.numClasses])] }
        return l
    }

    static func activationLayout(_ c: ViTConfig, maxBatch B: Int) -> [(name: String, shape: [Int])] {
        let C = c.dim, N = c.numTokens, Np = c.numPatches, NH = c.heads, HD = c.mlpHidden, H = c.imageSize
        let K = 3 * c.patchSize * c.patchSize
        var l: [(name: String, shape: [Int])] = [
            ("input.normed", [B, 3, H, H]), ("patch.cols", [B, Np, K]), ("patch.out", [B, Np, C]), ("tokens", [B, N, C]),
            ("ln", [B, N, C]), ("gelu", [B, N, HD]),
        ]
        for i in 0..<c.depth {
            let p = "blocks.\(i)."
            l += [(p + "ln1.mean", [B, N]), (p + "ln1.rstd", [B, N]), (p + "qkv", [B, N, 3 * C]),
                  (p + "attn.probs", [B, NH, N, N]), (p + "attn.out", [B, N, C]), (p + "proj", [B, N, C]),
                  (p + "x2", [B, N, C]), (p + "ln2.mean", [B, N]), (p + "ln2.rstd", [B, N]),
                  (p + "fc1", [B, N, HD]), (p + "fc2", [B, N, C]), (p + "out", [B, N, C]),
                  ("features.\(i)", [B, Np, C]), ("features.\(i).mean", [B, Np]), ("features.\(i).rstd", [B, Np])]
        }
        if c.numClasses > 0 {
            l += [("head.clsnorm", [B, C]), ("head.mean", [B]), ("head.rstd", [B]), ("head.logits", [B, c.numClasses])]
        }
        return l
    }

    /// timm's initialisation (`init_weights_vit_timm`): Linear weights truncated normal (σ 0.02, cut at ±2σ) and zero
    /// biases; `pos_embed` truncated normal σ 0.02; `cls_token`/`reg_token` normal σ 1e-6; LayerNorm ones/zeros;
    /// LayerScale γ = `config.layerScale`; the patch-embedding conv keeps PyTorch's default
    /// (uniform ±1/√(3·P·P) for weight and bias). Draws in parameter order from `rng`.
    public func initializeParameters(using rng: inout SeededRNG) {
        parameters.zero()
        let fanIn = Double(K)
        for e in parameters.entries {
            let buf = parameters[e.name].buffer
            let n = e.name
            if n == "cls_token" || n == "reg_token" {
                rng.fillNormal(buf, std: 1e-6)
            } else if n == "pos_embed" {
                rng.fillNormal(buf, std: 0.02, truncate: true)
            } else if n.hasPrefix("patch_embed.proj.") {
                rng.fillUniform(buf, lo: -1 / fanIn.squareRoot(), hi: 1 / fanIn.squareRoot())
            } else if n.hasSuffix(".gamma") {
                buf.update(repeating: T(config.layerScale))
            } else if n.hasSuffix("norm1.weight") || n.hasSuffix("norm2.weight") || n == "norm.weight" {
                buf.update(repeating: 1)
            } else if n.hasSuffix(".weight") {
                rng.fillNormal(buf, std: 0.02, truncate: true)
            }  // biases stay zero
        }
    }

    /// Copies every parameter from a model of the same config, converting the scalar type (Float ↔ Double).
    public func copyParameters<U: NNScalar>(from other: ViT<U>) throws {
        guard other.config == config else {
            throw PatchGuardError.invalidArgument("copyParameters: configs differ (\(other.config) vs \(config))")
        }
        let src = other.parameters.storage, dst = parameters.storage
        for i in 0..<dst.count { dst.data[i] = T(src.data[i]) }
    }

    // MARK: access to outputs of the last forward (views valid until the next forward)

    func checkLayer(_ layer: Int, _ what: String) throws {
        guard (1...depth).contains(layer) else {
            throw PatchGuardError.invalidArgument("\(what) layer \(layer) is outside 1...\(depth)")
        }
    }

    /// Final-normed patch tokens of block `layer` (1-based), (B, Np, C). Computed for `featureLayers` only.
    public func features(layer: Int) -> TensorView<T> {
        TensorView(acts.blocks[layer - 1].features, shape: [batch, Np, C])
    }

    /// Attention probabilities of block `layer` (1-based), (B, NH, N, N), all tokens incl. class/register tokens.
    public func attention(layer: Int) -> TensorView<T> {
        TensorView(acts.blocks[layer - 1].probs, shape: [batch, NH, N, N])
    }

    /// Raw output of block `layer` (1-based, the residual stream before the final norm), (B, N, C).
    public func blockOutput(layer: Int) -> TensorView<T> {
        TensorView(acts.blocks[layer - 1].out, shape: [batch, N, C])
    }

    /// Output of block `layer`'s first LayerNorm (`blocks[layer-1].norm1`, the tokens entering its attention),
    /// (B, N, C). Its gradient can be captured by ``backward(dFeatures:dAttention:dLogits:dBlockOutputs:computeParameterGradients:dImage:blockOutputGradients:norm1Gradients:)``.
    /// The forward keeps no LayerNorm outputs (``ViTActivations/ln``): this recomputes the layer's from its stored
    /// input and statistics into the shared buffer, bit for bit the forward's values; the view is valid until the
    /// next forward, backward or `norm1Output`. Needs a caching forward (`storeCaches: true`).
    public func norm1Output(layer: Int) throws -> TensorView<T> {
        try checkLayer(layer, "norm1Output")
        guard batch > 0, cachesStored else {
            throw PatchGuardError.invalidArgument("ViT norm1Output needs a caching forward (storeCaches: true) first")
        }
        recomputeNorm1(layer - 1, acts, rows: batch * N)
        return TensorView(acts.ln, shape: [batch, N, C])
    }

    /// Head logits (B, classes), or nil without a head.
    public var logits: TensorView<T>? {
        acts.headLogits.map { TensorView($0, shape: [batch, config.numClasses]) }
    }

    /// Total parameter count.
    public var parameterCount: Int { parameters.entries.reduce(0) { $0 + $1.count } }
}
