import PatchGuardCore

/// Hyper-parameters of a ``UNet2D`` in the vocabulary of `diffusers.UNet2DModel` (JSON keys are diffusers' own
/// snake_case config keys, so a model's `config.json` reads directly).
///
/// What is supported is diffusers' default path: `time_embedding_type="positional"` (`Timesteps(C0,
/// flip_sin_to_cos, freq_shift)` + `TimestepEmbedding` linear/SiLU/linear to `4·C0`), `act_fn="silu"`,
/// `resnet_time_scale_shift="default"`, `downsample_type="conv"`, `upsample_type="conv"`, `downsample_padding=1`,
/// `mid_block_scale_factor=1`, `center_input_sample=false`, no class embedding, dropout 0; blocks
/// `DownBlock2D`/`AttnDownBlock2D` and `UpBlock2D`/`AttnUpBlock2D`; the mid block `UNetMidBlock2D`.
public struct UNet2DConfig: Codable, Equatable, Sendable {
    /// Square input side in pixels; divisible by 2^(levels − 1).
    public var sampleSize: Int
    public var inChannels: Int
    public var outChannels: Int
    /// Channels per level `C0, C1, …` (diffusers `block_out_channels`).
    public var blockOutChannels: [Int]
    /// ResNet blocks per down level (up levels have one more).
    public var layersPerBlock: Int
    public var downBlockTypes: [String]
    public var upBlockTypes: [String]
    /// Channels per attention head (diffusers default 8); nil = one head per attention block.
    public var attentionHeadDim: Int?
    /// Groups of every GroupNorm (ResNet norms, attention norms, `conv_norm_out`).
    public var normNumGroups: Int
    public var normEps: Double
    /// Attention in the mid block.
    public var addAttention: Bool
    public var flipSinToCos: Bool
    public var freqShift: Double

    public init(sampleSize: Int, inChannels: Int = 3, outChannels: Int = 3, blockOutChannels: [Int],
                layersPerBlock: Int = 2, downBlockTypes: [String], upBlockTypes: [String],
                attentionHeadDim: Int? = 8, normNumGroups: Int = 32, normEps: Double = 1e-5,
                addAttention: Bool = true, flipSinToCos: Bool = true, freqShift: Double = 0) {
        self.sampleSize = sampleSize; self.inChannels = inChannels; self.outChannels = outChannels
        self.blockOutChannels = blockOutChannels; self.layersPerBlock = layersPerBlock
        self.downBlockTypes = downBlockTypes; self.upBlockTypes = upBlockTypes
        self.attentionHeadDim = attentionHeadDim; self.normNumGroups = normNumGroups; self.normEps = normEps
        self.addAttention = addAttention; self.flipSinToCos = flipSinToCos; self.freqShift = freqShift
    }

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types"
        case attentionHeadDim = "attention_head_dim", normNumGroups = "norm_num_groups", normEps = "norm_eps"
        case addAttention = "add_attention", flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
    }

    /// Reads a diffusers `UNet2DModel` config (`config.json`, or our own encoding). Missing keys take diffusers'
    /// defaults; a key that selects a variant this implementation does not have (`act_fn` other than "silu",
    /// `resnet_time_scale_shift` other than "default", a class embedding, …) is an error naming key and value. Other
    /// bookkeeping keys diffusers writes (`_class_name`, `_diffusers_version`, …) are ignored.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = UNet2DConfig(sampleSize: 0, blockOutChannels: [], downBlockTypes: [], upBlockTypes: [])
        sampleSize = try c.decode(Int.self, forKey: .sampleSize)
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? 3
        outChannels = try c.decodeIfPresent(Int.self, forKey: .outChannels) ?? 3
        blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? [224, 448, 672, 896]
        layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? d.layersPerBlock
        downBlockTypes = try c.decodeIfPresent([String].self, forKey: .downBlockTypes)
            ?? ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
        upBlockTypes = try c.decodeIfPresent([String].self, forKey: .upBlockTypes)
            ?? ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        attentionHeadDim = c.contains(.attentionHeadDim) ? try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) : 8
        normNumGroups = try c.decodeIfPresent(Int.self, forKey: .normNumGroups) ?? d.normNumGroups
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? d.normEps
        addAttention = try c.decodeIfPresent(Bool.self, forKey: .addAttention) ?? d.addAttention
        flipSinToCos = try c.decodeIfPresent(Bool.self, forKey: .flipSinToCos) ?? d.flipSinToCos
        freqShift = try c.decodeIfPresent(Double.self, forKey: .freqShift) ?? d.freqShift
        let u = try decoder.container(keyedBy: AnyKey.self)
        func require<V: Decodable & Equatable>(_ key: String, _ supported: V?, _: V.Type) throws {
            let k = AnyKey(key)
            guard u.contains(k) else { return }
            let v = try u.decodeIfPresent(V.self, forKey: k)
            guard v == supported else {
                throw PatchGuardError.config("UNet2D config: \(key) = \(v.map { "\($0)" } ?? "null") is not supported "
                                             + "(only \(supported.map { "\($0)" } ?? "null"))")
            }
        }
        try require("act_fn", "silu", String.self)
        try require("resnet_time_scale_shift", "default", String.self)
        try require("time_embedding_type", "positional", String.self)
        try require("downsample_type", "conv", String.self)
        try require("upsample_type", "conv", String.self)
        try require("mid_block_type", "UNetMidBlock2D", String.self)
        try require("downsample_padding", 1, Int.self)
        try require("mid_block_scale_factor", 1, Double.self)
        try require("center_input_sample", false, Bool.self)
        try require("class_embed_type", nil, String.self)
        try require("num_class_embeds", nil, Int.self)
        try require("attn_norm_num_groups", nil, Int.self)
        try require("time_embedding_dim", nil, Int.self)
        try require("dropout", 0, Double.self)
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Channels of the time embedding (`4·C0`).
    public var timeEmbedDim: Int { 4 * blockOutChannels[0] }
    public var levels: Int { blockOutChannels.count }

    /// Every shape rule, with a message naming the field.
    public func validate() throws {
        func fail(_ m: String) -> PatchGuardError { .invalidArgument("UNet2D config: \(m)") }
        guard !blockOutChannels.isEmpty, blockOutChannels.allSatisfy({ $0 > 0 }) else {
            throw fail("block_out_channels must be non-empty and positive, got \(blockOutChannels)")
        }
        guard downBlockTypes.count == levels, upBlockTypes.count == levels else {
            throw fail("down_block_types (\(downBlockTypes.count)) and up_block_types (\(upBlockTypes.count)) must "
                       + "have one entry per block_out_channels entry (\(levels))")
        }
        for t in downBlockTypes where t != "DownBlock2D" && t != "AttnDownBlock2D" {
            throw fail("down block type '\(t)' is not supported (DownBlock2D, AttnDownBlock2D)")
        }
        for t in upBlockTypes where t != "UpBlock2D" && t != "AttnUpBlock2D" {
            throw fail("up block type '\(t)' is not supported (UpBlock2D, AttnUpBlock2D)")
        }
        guard layersPerBlock >= 1, inChannels >= 1, outChannels >= 1 else {
            throw fail("layers_per_block, in_channels and out_channels must be ≥ 1")
        }
        let factor = 1 << (levels - 1)
        guard sampleSize >= factor, sampleSize % factor == 0 else {
            throw fail("sample_size \(sampleSize) must be a multiple of 2^(levels − 1) = \(factor)")
        }
        guard normNumGroups >= 1, normEps > 0 else { throw fail("norm_num_groups ≥ 1 and norm_eps > 0 required") }
        if let hd = attentionHeadDim, hd < 1 {
            throw fail("attention_head_dim must be ≥ 1 (or null: one head), got \(hd)")
        }
        let plan = UNetPlan(self)
        for n in plan.groupNormChannels where n % normNumGroups != 0 {
            throw fail("a GroupNorm over \(n) channels cannot have norm_num_groups = \(normNumGroups)")
        }
        if let hd = attentionHeadDim {
            for a in plan.attentions where a.channels % hd != 0 {
                throw fail("attention over \(a.channels) channels is not a multiple of attention_head_dim \(hd)")
            }
        }
    }
}

/// One ResNet block of the plan: `inC` → `outC` at `side × side` (a 1×1 `conv_shortcut` when they differ).
public struct UNetResnetSpec: Sendable {
    public let name: String, inC: Int, outC: Int, side: Int
    public var hasShortcut: Bool { inC != outC }
}

/// One spatial self-attention block (diffusers `Attention` with a group norm and a residual).
public struct UNetAttentionSpec: Sendable {
    public let name: String, channels: Int, heads: Int, side: Int
}

/// A convolution: input `inC × side × side`.
public struct UNetConvSpec: Sendable {
    public let name: String, inC: Int, outC: Int, side: Int, kernel: Int, stride: Int, padding: Int
    public var outSide: Int { Conv2d.outputSize(side, kernel: kernel, stride: stride, padding: padding) }
}

public struct UNetDownBlockSpec: Sendable {
    public let resnets: [UNetResnetSpec], attentions: [UNetAttentionSpec], downsample: UNetConvSpec?
}

/// An up block: resnet `j` reads `cat([h, skip_j], dim=1)`, `skipChannels[j]` the skip's channels.
public struct UNetUpBlockSpec: Sendable {
    public let resnets: [UNetResnetSpec], attentions: [UNetAttentionSpec], skipChannels: [Int]
    /// The conv after nearest ×2 upsampling (its `side` is the upsampled side).
    public let upsample: UNetConvSpec?
}

/// The layer list `diffusers.UNet2DModel.__init__` builds, with channels and resolutions worked out once; the
/// parameter layout, the activation layout and forward/backward all walk this.
public struct UNetPlan: Sendable {
    public let convIn: UNetConvSpec
    public let down: [UNetDownBlockSpec]
    public let midResnets: [UNetResnetSpec]
    public let midAttention: UNetAttentionSpec?
    public let up: [UNetUpBlockSpec]
    public let convOut: UNetConvSpec
    public let c0: Int, timeDim: Int, side: Int

    public init(_ c: UNet2DConfig) {
        let ch = c.blockOutChannels, L = ch.count
        func heads(_ n: Int) -> Int { c.attentionHeadDim.map { max(1, n / $0) } ?? 1 }
        c0 = ch[0]; timeDim = c.timeEmbedDim; side = c.sampleSize
        convIn = UNetConvSpec(name: "conv_in", inC: c.inChannels, outC: ch[0], side: side, kernel: 3, stride: 1,
                              padding: 1)
        var s = side, outC = ch[0]
        var skips = [ch[0]]  // channels of down_block_res_samples, in order
        var down: [UNetDownBlockSpec] = []
        for i in 0..<L {
            let inC = outC
            outC = ch[i]
            let p = "down_blocks.\(i)."
            let attn = c.downBlockTypes[i] == "AttnDownBlock2D"
            var rs: [UNetResnetSpec] = [], at: [UNetAttentionSpec] = []
            for j in 0..<c.layersPerBlock {
                rs.append(UNetResnetSpec(name: p + "resnets.\(j).", inC: j == 0 ? inC : outC, outC: outC, side: s))
                if attn { at.append(UNetAttentionSpec(name: p + "attentions.\(j).", channels: outC, heads: heads(outC), side: s)) }
                skips.append(outC)
            }
            var ds: UNetConvSpec?
            if i < L - 1 {
                ds = UNetConvSpec(name: p + "downsamplers.0.conv", inC: outC, outC: outC, side: s, kernel: 3, stride: 2,
                                  padding: 1)
                s /= 2
                skips.append(outC)
            }
            down.append(UNetDownBlockSpec(resnets: rs, attentions: at, downsample: ds))
        }
        self.down = down
        let cl = ch[L - 1]
        midResnets = [UNetResnetSpec(name: "mid_block.resnets.0.", inC: cl, outC: cl, side: s),
                      UNetResnetSpec(name: "mid_block.resnets.1.", inC: cl, outC: cl, side: s)]
        midAttention = c.addAttention
            ? UNetAttentionSpec(name: "mid_block.attentions.0.", channels: cl, heads: heads(cl), side: s) : nil
        let rev = Array(ch.reversed())
        var up: [UNetUpBlockSpec] = []
        outC = rev[0]
        for i in 0..<L {
            let prevOut = outC
            outC = rev[i]
            let inputC = rev[min(i + 1, L - 1)]
            let p = "up_blocks.\(i)."
            let attn = c.upBlockTypes[i] == "AttnUpBlock2D"
            var rs: [UNetResnetSpec] = [], at: [UNetAttentionSpec] = [], sk: [Int] = []
            let layers = c.layersPerBlock + 1
            for j in 0..<layers {
                let skipC = j == layers - 1 ? inputC : outC
                let resIn = j == 0 ? prevOut : outC
                precondition(skips.last == skipC, "UNetPlan: skip channels \(skips) do not end in \(skipC)")
                skips.removeLast()
                sk.append(skipC)
                rs.append(UNetResnetSpec(name: p + "resnets.\(j).", inC: resIn + skipC, outC: outC, side: s))
                if attn { at.append(UNetAttentionSpec(name: p + "attentions.\(j).", channels: outC, heads: heads(outC), side: s)) }
            }
            var us: UNetConvSpec?
            if i < L - 1 {
                s *= 2
                us = UNetConvSpec(name: p + "upsamplers.0.conv", inC: outC, outC: outC, side: s, kernel: 3, stride: 1,
                                  padding: 1)
            }
            up.append(UNetUpBlockSpec(resnets: rs, attentions: at, skipChannels: sk, upsample: us))
        }
        self.up = up
        convOut = UNetConvSpec(name: "conv_out", inC: ch[0], outC: c.outChannels, side: side, kernel: 3, stride: 1,
                               padding: 1)
    }

    public var resnets: [UNetResnetSpec] { down.flatMap(\.resnets) + midResnets + up.flatMap(\.resnets) }
    public var attentions: [UNetAttentionSpec] {
        down.flatMap(\.attentions) + (midAttention.map { [$0] } ?? []) + up.flatMap(\.attentions)
    }
    public var convs: [UNetConvSpec] {
        var l = [convIn]
        for r in resnets {
            l.append(UNetConvSpec(name: r.name + "conv1", inC: r.inC, outC: r.outC, side: r.side, kernel: 3, stride: 1, padding: 1))
            l.append(UNetConvSpec(name: r.name + "conv2", inC: r.outC, outC: r.outC, side: r.side, kernel: 3, stride: 1, padding: 1))
            if r.hasShortcut {
                l.append(UNetConvSpec(name: r.name + "conv_shortcut", inC: r.inC, outC: r.outC, side: r.side, kernel: 1,
                                      stride: 1, padding: 0))
            }
        }
        l += down.compactMap(\.downsample) + up.compactMap(\.upsample) + [convOut]
        return l
    }
    /// Channel counts of every GroupNorm.
    public var groupNormChannels: [Int] {
        resnets.flatMap { [$0.inC, $0.outC] } + attentions.map(\.channels) + [c0]
    }
    /// Elements of the largest per-image im2col buffer, `CI·K·K · OH·OW`.
    public var maxColumns: Int { convs.map { $0.inC * $0.kernel * $0.kernel * $0.outSide * $0.outSide }.max() ?? 0 }
}
