import PatchGuardCore

/// The noise-prediction U-Net of DDPM with the layout and parameter names of `diffusers.UNet2DModel`, with
/// hand-written forward and backward.
///
/// ```
/// emb   = linear_2(SiLU(linear_1(Timesteps(t))))                           // (B, TE), TE = 4·C0
/// h     = conv_in(x);  skips = [h]
/// down i: for j: h = resnet_ij(h, emb) [→ attention_ij(h)]; skips += h;  then (not last) h = conv_s2(h); skips += h
/// mid:   h = resnet_1(attention(resnet_0(h, emb)), emb)
/// up i:  for j: h = resnet_ij(cat([h, skips.pop()], dim=1), emb) [→ attention_ij(h)];  (not last) h = conv(up2x(h))
/// ε̂     = conv_out(SiLU(conv_norm_out(h)))
/// resnet(x, emb)  = (conv_shortcut(x) or x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x))) + time_emb_proj(SiLU(emb)))))
/// attention(x)    = x + to_out(MHA(to_q, to_k, to_v of GN(x) as (B, HW, C) tokens)) back to (B, C, HW)
/// ```
/// Shape legend: `B` batch, `H` = `sampleSize`, `C0` first level's channels, `TE` time-embedding channels.
///
/// Storage (STYLE.md): ``parameters``/``gradients`` are arenas under diffusers' names (`down_blocks.0.resnets.1.conv2.weight`,
/// …), so a diffusers `state_dict` converted to safetensors loads by name (``loadWeights(from:)``). Activations live
/// in one arena sized for `maxBatch` and their gradients in a twin arena of the same layout (zeroed with one
/// memset per backward); both are read through the same typed view structs (``acts``, ``dActs``). All maths goes
/// through ``kernels``. One instance is not safe to use from two threads at once.
public final class UNet2D<T: NNScalar> {
    public let config: UNet2DConfig
    public let plan: UNetPlan
    public let maxBatch: Int
    public let parameters: Arena<T>
    /// Same layout as ``parameters``; backward adds into it (call `gradients.zero()` once per step).
    public let gradients: Arena<T>
    public let activations: Arena<T>
    /// Gradients of the activations (same layout), zeroed at the start of every backward.
    let activationGradients: Arena<T>
    /// im2col scratch, (maxColumns) each: `cols`, `dCols`.
    let scratch: Arena<T>
    public let kernels: any Kernels<T>
    public let params: UNetParameters<T>
    public let grads: UNetParameters<T>
    public let acts: UNetActivations<T>
    let dActs: UNetActivations<T>
    let cols: UnsafeMutablePointer<T>, dCols: UnsafeMutablePointer<T>
    /// Batch size of the last forward (0 before the first).
    public internal(set) var batch = 0
    let G: Int, eps: T

    /// A model with PyTorch's default initialisation (see ``initializeParameters(using:)``).
    public convenience init(config: UNet2DConfig, maxBatch: Int, seed: UInt64,
                            kernels: (any Kernels<T>)? = nil) throws {
        try self.init(config: config, maxBatch: maxBatch, kernels: kernels)
        var rng = SeededRNG(seed: seed)
        initializeParameters(using: &rng)
    }

    /// A model with all parameters zero (load weights next). `kernels` defaults to the CPU backend.
    public init(config: UNet2DConfig, maxBatch: Int, kernels: (any Kernels<T>)? = nil) throws {
        try config.validate()
        guard maxBatch >= 1 else { throw PatchGuardError.invalidArgument("UNet2D maxBatch must be ≥ 1, got \(maxBatch)") }
        self.config = config
        self.maxBatch = maxBatch
        let plan = UNetPlan(config)
        self.plan = plan
        G = config.normNumGroups
        eps = T(config.normEps)
        let k = kernels ?? Backend.cpu.kernels(T.self)
        self.kernels = k
        parameters = Arena(layout: UNetParameters<T>.layout(plan, config), allocator: k.allocator)
        gradients = Arena(sameLayoutAs: parameters, allocator: k.allocator)
        activations = Arena(layout: UNetActivations<T>.layout(plan, batch: maxBatch, groups: G,
                                                               outChannels: config.outChannels),
                            allocator: k.allocator)
        activationGradients = Arena(sameLayoutAs: activations, allocator: k.allocator)
        scratch = Arena(layout: [("cols", [plan.maxColumns]), ("dCols", [plan.maxColumns])], allocator: k.allocator)
        params = UNetParameters(parameters, plan: plan)
        grads = UNetParameters(gradients, plan: plan)
        acts = UNetActivations(activations, plan: plan)
        dActs = UNetActivations(activationGradients, plan: plan)
        cols = scratch.pointer("cols"); dCols = scratch.pointer("dCols")
    }

    /// PyTorch's default initialisation of `nn.Conv2d`/`nn.Linear` (weight and bias uniform ±1/√fan_in, what
    /// diffusers' `UNet2DModel(...)` starts from); GroupNorm weight 1, bias 0. Draws in parameter order.
    public func initializeParameters(using rng: inout SeededRNG) {
        parameters.zero()
        var fanIn = 1
        for e in parameters.entries {
            let buf = parameters[e.name].buffer
            let isNorm = e.name.contains("norm")
            if isNorm {
                if e.name.hasSuffix(".weight") { buf.update(repeating: 1) }
                continue
            }
            if e.name.hasSuffix(".weight") { fanIn = e.shape.dropFirst().reduce(1, *) }
            let bound = 1 / Double(fanIn).squareRoot()
            rng.fillUniform(buf, lo: -bound, hi: bound)
        }
    }

    /// Copies every parameter from a model of the same config, converting the scalar type (Float ↔ Double).
    public func copyParameters<U: NNScalar>(from other: UNet2D<U>) throws {
        guard other.config == config else {
            throw PatchGuardError.invalidArgument("copyParameters: U-Net configs differ")
        }
        let src = other.parameters.storage, dst = parameters.storage
        for i in 0..<dst.count { dst.data[i] = T(src.data[i]) }
    }

    /// The predicted noise of the last forward, (B, out, H, H).
    public var output: TensorView<T> {
        TensorView(acts.output, shape: [batch, config.outChannels, config.sampleSize, config.sampleSize])
    }

    public var parameterCount: Int { parameters.entries.reduce(0) { $0 + $1.count } }
}
