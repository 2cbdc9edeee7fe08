import PatchGuardCore

// Typed views into the U-Net's arenas (ViT+Tensors.swift's pattern): built once at init from diffusers' parameter
// names, never looked up on the hot path. Activations have a twin arena of the same layout holding their
// gradients, so every activation view struct is built twice (``UNet2D/acts``, ``UNet2D/dActs``).
//
// Shape legend: `B` = maxBatch, `Ci`/`Co` a block's in/out channels, `S` its side (`S2 = S·S` pixels), `G` groups,
// `C` attention channels, `NH` heads, `TE` time-embedding channels (4·C0).

/// A convolution's or a linear layer's weight and bias.
public struct UNetAffine<T: NNScalar> {
    public let weight: UnsafeMutablePointer<T>        // conv (Co, Ci, K, K) / linear (OC, IC)
    public let bias: UnsafeMutablePointer<T>          // (Co)
    init(_ a: Arena<T>, _ name: String) { weight = a.pointer(name + ".weight"); bias = a.pointer(name + ".bias") }
}

/// `ResnetBlock2D` parameters (diffusers names under the block's prefix).
public struct UNetResnetParameters<T: NNScalar> {
    public let norm1: UNetAffine<T>                   // (Ci), (Ci)
    public let conv1: UNetAffine<T>                   // (Co, Ci, 3, 3)
    public let timeEmbProj: UNetAffine<T>             // (Co, TE)
    public let norm2: UNetAffine<T>                   // (Co)
    public let conv2: UNetAffine<T>                   // (Co, Co, 3, 3)
    public let convShortcut: UNetAffine<T>?           // (Co, Ci, 1, 1) when Ci ≠ Co
    init(_ a: Arena<T>, _ s: UNetResnetSpec) {
        let p = s.name
        norm1 = UNetAffine(a, p + "norm1"); conv1 = UNetAffine(a, p + "conv1")
        timeEmbProj = UNetAffine(a, p + "time_emb_proj"); norm2 = UNetAffine(a, p + "norm2")
        conv2 = UNetAffine(a, p + "conv2"); convShortcut = s.hasShortcut ? UNetAffine(a, p + "conv_shortcut") : nil
    }
    static func layout(_ s: UNetResnetSpec, timeDim: Int) -> [(name: String, shape: [Int])] {
        let p = s.name, i = s.inC, o = s.outC
        var l: [(name: String, shape: [Int])] = [
            (p + "norm1.weight", [i]), (p + "norm1.bias", [i]), (p + "conv1.weight", [o, i, 3, 3]), (p + "conv1.bias", [o]),
            (p + "time_emb_proj.weight", [o, timeDim]), (p + "time_emb_proj.bias", [o]),
            (p + "norm2.weight", [o]), (p + "norm2.bias", [o]), (p + "conv2.weight", [o, o, 3, 3]), (p + "conv2.bias", [o]),
        ]
        if s.hasShortcut { l += [(p + "conv_shortcut.weight", [o, i, 1, 1]), (p + "conv_shortcut.bias", [o])] }
        return l
    }
}

/// diffusers `Attention` parameters (group norm, `to_q`, `to_k`, `to_v`, `to_out.0`).
public struct UNetAttentionParameters<T: NNScalar> {
    public let groupNorm: UNetAffine<T>               // (C)
    public let toQ: UNetAffine<T>                     // (C, C), (C)
    public let toK: UNetAffine<T>
    public let toV: UNetAffine<T>
    public let toOut: UNetAffine<T>
    init(_ a: Arena<T>, _ s: UNetAttentionSpec) {
        let p = s.name
        groupNorm = UNetAffine(a, p + "group_norm"); toQ = UNetAffine(a, p + "to_q"); toK = UNetAffine(a, p + "to_k")
        toV = UNetAffine(a, p + "to_v"); toOut = UNetAffine(a, p + "to_out.0")
    }
    static func layout(_ s: UNetAttentionSpec) -> [(name: String, shape: [Int])] {
        let p = s.name, c = s.channels
        return ["group_norm", "to_q", "to_k", "to_v", "to_out.0"].flatMap { n -> [(name: String, shape: [Int])] in
            n == "group_norm" ? [(p + n + ".weight", [c]), (p + n + ".bias", [c])]
                : [(p + n + ".weight", [c, c]), (p + n + ".bias", [c])]
        }
    }
}

public struct UNetDownBlockParameters<T: NNScalar> {
    public let resnets: [UNetResnetParameters<T>], attentions: [UNetAttentionParameters<T>]
    public let downsample: UNetAffine<T>?             // (Co, Co, 3, 3) stride 2
}

public struct UNetUpBlockParameters<T: NNScalar> {
    public let resnets: [UNetResnetParameters<T>], attentions: [UNetAttentionParameters<T>]
    public let upsample: UNetAffine<T>?               // (Co, Co, 3, 3) after nearest ×2
}

/// All parameters of a U-Net (diffusers names in the arena), or their gradients.
public struct UNetParameters<T: NNScalar> {
    public let convIn: UNetAffine<T>                  // (C0, in, 3, 3)
    public let timeLinear1: UNetAffine<T>             // (TE, C0)
    public let timeLinear2: UNetAffine<T>             // (TE, TE)
    public let down: [UNetDownBlockParameters<T>]
    public let midResnets: [UNetResnetParameters<T>]  // 2
    public let midAttention: UNetAttentionParameters<T>?
    public let up: [UNetUpBlockParameters<T>]
    public let convNormOut: UNetAffine<T>             // (C0)
    public let convOut: UNetAffine<T>                 // (out, C0, 3, 3)

    init(_ a: Arena<T>, plan: UNetPlan) {
        convIn = UNetAffine(a, "conv_in")
        timeLinear1 = UNetAffine(a, "time_embedding.linear_1"); timeLinear2 = UNetAffine(a, "time_embedding.linear_2")
        down = plan.down.map { d in
            UNetDownBlockParameters(resnets: d.resnets.map { UNetResnetParameters(a, $0) },
                                    attentions: d.attentions.map { UNetAttentionParameters(a, $0) },
                                    downsample: d.downsample.map { UNetAffine(a, $0.name) })
        }
        midResnets = plan.midResnets.map { UNetResnetParameters(a, $0) }
        midAttention = plan.midAttention.map { UNetAttentionParameters(a, $0) }
        up = plan.up.map { u in
            UNetUpBlockParameters(resnets: u.resnets.map { UNetResnetParameters(a, $0) },
                                  attentions: u.attentions.map { UNetAttentionParameters(a, $0) },
                                  upsample: u.upsample.map { UNetAffine(a, $0.name) })
        }
        convNormOut = UNetAffine(a, "conv_norm_out"); convOut = UNetAffine(a, "conv_out")
    }

    /// diffusers names and shapes.
    static func layout(_ plan: UNetPlan, _ c: UNet2DConfig) -> [(name: String, shape: [Int])] {
        let c0 = plan.c0, te = plan.timeDim
        func conv(_ s: UNetConvSpec) -> [(name: String, shape: [Int])] {
            [(s.name + ".weight", [s.outC, s.inC, s.kernel, s.kernel]), (s.name + ".bias", [s.outC])]
        }
        var l = conv(plan.convIn)
        l += [("time_embedding.linear_1.weight", [te, c0]), ("time_embedding.linear_1.bias", [te]),
              ("time_embedding.linear_2.weight", [te, te]), ("time_embedding.linear_2.bias", [te])]
        func block(_ rs: [UNetResnetSpec], _ at: [UNetAttentionSpec]) {
            for (j, r) in rs.enumerated() {
                l += UNetResnetParameters<T>.layout(r, timeDim: te)
                if j < at.count { l += UNetAttentionParameters<T>.layout(at[j]) }
            }
        }
        for d in plan.down {
            block(d.resnets, d.attentions)
            if let ds = d.downsample { l += conv(ds) }
        }
        l += UNetResnetParameters<T>.layout(plan.midResnets[0], timeDim: te)
        if let a = plan.midAttention { l += UNetAttentionParameters<T>.layout(a) }
        l += UNetResnetParameters<T>.layout(plan.midResnets[1], timeDim: te)
        for u in plan.up {
            block(u.resnets, u.attentions)
            if let us = u.upsample { l += conv(us) }
        }
        l += [("conv_norm_out.weight", [c0]), ("conv_norm_out.bias", [c0])] + conv(plan.convOut)
        return l
    }
}

/// One ResNet block's activations (or, on the gradient twin, their gradients).
public struct UNetResnetActivations<T: NNScalar> {
    public let norm1: UnsafeMutablePointer<T>         // (B, Ci, S2)
    public let norm1Mean: UnsafeMutablePointer<T>     // (B, G)
    public let norm1Rstd: UnsafeMutablePointer<T>     // (B, G)
    public let act1: UnsafeMutablePointer<T>          // (B, Ci, S2) SiLU(norm1)
    public let conv1: UnsafeMutablePointer<T>         // (B, Co, S2)
    public let temb: UnsafeMutablePointer<T>          // (B, Co) time_emb_proj(SiLU(emb))
    public let hidden: UnsafeMutablePointer<T>        // (B, Co, S2) conv1 + temb
    public let norm2: UnsafeMutablePointer<T>         // (B, Co, S2)
    public let norm2Mean: UnsafeMutablePointer<T>     // (B, G)
    public let norm2Rstd: UnsafeMutablePointer<T>     // (B, G)
    public let act2: UnsafeMutablePointer<T>          // (B, Co, S2)
    public let conv2: UnsafeMutablePointer<T>         // (B, Co, S2)
    public let shortcut: UnsafeMutablePointer<T>?     // (B, Co, S2) conv_shortcut(x) when Ci ≠ Co
    public let out: UnsafeMutablePointer<T>           // (B, Co, S2) (shortcut or x) + conv2
    init(_ a: Arena<T>, _ s: UNetResnetSpec) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { a.pointer(s.name + n) }
        norm1 = v("norm1"); norm1Mean = v("norm1.mean"); norm1Rstd = v("norm1.rstd"); act1 = v("act1")
        conv1 = v("conv1"); temb = v("temb"); hidden = v("hidden"); norm2 = v("norm2"); norm2Mean = v("norm2.mean")
        norm2Rstd = v("norm2.rstd"); act2 = v("act2"); conv2 = v("conv2")
        shortcut = s.hasShortcut ? v("shortcut") : nil; out = v("out")
    }
    static func layout(_ s: UNetResnetSpec, batch B: Int, groups G: Int) -> [(name: String, shape: [Int])] {
        let p = s.name, i = s.inC, o = s.outC, n = s.side * s.side
        var l: [(name: String, shape: [Int])] = [
            (p + "norm1", [B, i, n]), (p + "norm1.mean", [B, G]), (p + "norm1.rstd", [B, G]), (p + "act1", [B, i, n]),
            (p + "conv1", [B, o, n]), (p + "temb", [B, o]), (p + "hidden", [B, o, n]), (p + "norm2", [B, o, n]),
            (p + "norm2.mean", [B, G]), (p + "norm2.rstd", [B, G]), (p + "act2", [B, o, n]), (p + "conv2", [B, o, n]),
        ]
        if s.hasShortcut { l.append((p + "shortcut", [B, o, n])) }
        l.append((p + "out", [B, o, n]))
        return l
    }
}

/// One attention block's activations (tokens are (B, S2, C), maps (B, C, S2)).
public struct UNetAttentionActivations<T: NNScalar> {
    public let norm: UnsafeMutablePointer<T>          // (B, C, S2) group_norm(x)
    public let normMean: UnsafeMutablePointer<T>      // (B, G)
    public let normRstd: UnsafeMutablePointer<T>      // (B, G)
    public let tokens: UnsafeMutablePointer<T>        // (B, S2, C)
    public let q: UnsafeMutablePointer<T>             // (B, S2, C)
    public let k: UnsafeMutablePointer<T>             // (B, S2, C)
    public let v: UnsafeMutablePointer<T>             // (B, S2, C)
    public let qkv: UnsafeMutablePointer<T>           // (B, S2, 3C) q | k | v per token, the attention op's input
    public let probs: UnsafeMutablePointer<T>         // (B, NH, S2, S2) (on the gradient twin: dScores scratch)
    public let attn: UnsafeMutablePointer<T>          // (B, S2, C) heads concatenated
    public let proj: UnsafeMutablePointer<T>          // (B, S2, C) to_out.0
    public let projMap: UnsafeMutablePointer<T>       // (B, C, S2)
    public let out: UnsafeMutablePointer<T>           // (B, C, S2) projMap + x
    init(_ a: Arena<T>, _ s: UNetAttentionSpec) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { a.pointer(s.name + n) }
        norm = v("norm"); normMean = v("norm.mean"); normRstd = v("norm.rstd"); tokens = v("tokens"); q = v("q")
        k = v("k"); self.v = v("v"); qkv = v("qkv"); probs = v("probs"); attn = v("attn"); proj = v("proj")
        projMap = v("proj_map"); out = v("out")
    }
    static func layout(_ s: UNetAttentionSpec, batch B: Int, groups G: Int) -> [(name: String, shape: [Int])] {
        let p = s.name, c = s.channels, n = s.side * s.side
        return [(p + "norm", [B, c, n]), (p + "norm.mean", [B, G]), (p + "norm.rstd", [B, G]), (p + "tokens", [B, n, c]),
                (p + "q", [B, n, c]), (p + "k", [B, n, c]), (p + "v", [B, n, c]), (p + "qkv", [B, n, 3 * c]),
                (p + "probs", [B, s.heads, n, n]), (p + "attn", [B, n, c]), (p + "proj", [B, n, c]),
                (p + "proj_map", [B, c, n]), (p + "out", [B, c, n])]
    }
}

public struct UNetDownBlockActivations<T: NNScalar> {
    public let resnets: [UNetResnetActivations<T>], attentions: [UNetAttentionActivations<T>]
    public let downsample: UnsafeMutablePointer<T>?   // (B, Co, (S/2)²)
}

public struct UNetUpBlockActivations<T: NNScalar> {
    public let cats: [UnsafeMutablePointer<T>]        // per resnet (B, Ci = h channels + skip channels, S2)
    public let resnets: [UNetResnetActivations<T>], attentions: [UNetAttentionActivations<T>]
    public let upsampled: UnsafeMutablePointer<T>?    // (B, Co, (2S)²) nearest ×2
    public let upsample: UnsafeMutablePointer<T>?     // (B, Co, (2S)²) conv of it
}

/// Forward activations of the whole U-Net, or (on the twin arena) their gradients.
public struct UNetActivations<T: NNScalar> {
    public let input: UnsafeMutablePointer<T>         // (B, in, H²) copy of the images (conv_in's backward reads it)
    public let timeProj: UnsafeMutablePointer<T>      // (B, C0) sinusoidal embedding
    public let timeLinear1: UnsafeMutablePointer<T>   // (B, TE)
    public let timeAct: UnsafeMutablePointer<T>       // (B, TE)
    public let emb: UnsafeMutablePointer<T>           // (B, TE) time_embedding output
    public let embAct: UnsafeMutablePointer<T>        // (B, TE) SiLU(emb), read by every time_emb_proj
    public let convIn: UnsafeMutablePointer<T>        // (B, C0, H²)
    public let down: [UNetDownBlockActivations<T>]
    public let midResnets: [UNetResnetActivations<T>]
    public let midAttention: UNetAttentionActivations<T>?
    public let up: [UNetUpBlockActivations<T>]
    public let normOut: UnsafeMutablePointer<T>       // (B, C0, H²)
    public let normOutMean: UnsafeMutablePointer<T>   // (B, G)
    public let normOutRstd: UnsafeMutablePointer<T>   // (B, G)
    public let actOut: UnsafeMutablePointer<T>        // (B, C0, H²)
    public let output: UnsafeMutablePointer<T>        // (B, out, H²) the predicted noise

    init(_ a: Arena<T>, plan: UNetPlan) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { a.pointer(n) }
        input = v("input"); timeProj = v("time_proj"); timeLinear1 = v("time_embedding.linear_1"); timeAct = v("time_embedding.act")
        emb = v("time_embedding.linear_2"); embAct = v("emb_act"); convIn = v("conv_in")
        down = plan.down.map { d in
            UNetDownBlockActivations(resnets: d.resnets.map { UNetResnetActivations(a, $0) },
                                     attentions: d.attentions.map { UNetAttentionActivations(a, $0) },
                                     downsample: d.downsample.map { v($0.name) })
        }
        midResnets = plan.midResnets.map { UNetResnetActivations(a, $0) }
        midAttention = plan.midAttention.map { UNetAttentionActivations(a, $0) }
        up = plan.up.map { u in
            UNetUpBlockActivations(cats: u.resnets.map { v($0.name + "cat") },
                                   resnets: u.resnets.map { UNetResnetActivations(a, $0) },
                                   attentions: u.attentions.map { UNetAttentionActivations(a, $0) },
                                   upsampled: u.upsample.map { v($0.name + ".input") },
                                   upsample: u.upsample.map { v($0.name) })
        }
        normOut = v("conv_norm_out"); normOutMean = v("conv_norm_out.mean"); normOutRstd = v("conv_norm_out.rstd")
        actOut = v("conv_act"); output = v("conv_out")
    }

    static func layout(_ plan: UNetPlan, batch B: Int, groups G: Int, outChannels: Int) -> [(name: String, shape: [Int])] {
        let c0 = plan.c0, te = plan.timeDim, n = plan.side * plan.side
        var l: [(name: String, shape: [Int])] = [
            ("input", [B, plan.convIn.inC, n]),
            ("time_proj", [B, c0]), ("time_embedding.linear_1", [B, te]), ("time_embedding.act", [B, te]),
            ("time_embedding.linear_2", [B, te]), ("emb_act", [B, te]), ("conv_in", [B, c0, n]),
        ]
        func conv(_ s: UNetConvSpec) -> (name: String, shape: [Int]) { (s.name, [B, s.outC, s.outSide * s.outSide]) }
        for d in plan.down {
            for (j, r) in d.resnets.enumerated() {
                l += UNetResnetActivations<T>.layout(r, batch: B, groups: G)
                if j < d.attentions.count { l += UNetAttentionActivations<T>.layout(d.attentions[j], batch: B, groups: G) }
            }
            if let ds = d.downsample { l.append(conv(ds)) }
        }
        l += UNetResnetActivations<T>.layout(plan.midResnets[0], batch: B, groups: G)
        if let a = plan.midAttention { l += UNetAttentionActivations<T>.layout(a, batch: B, groups: G) }
        l += UNetResnetActivations<T>.layout(plan.midResnets[1], batch: B, groups: G)
        for u in plan.up {
            for (j, r) in u.resnets.enumerated() {
                l.append((r.name + "cat", [B, r.inC, r.side * r.side]))
                l += UNetResnetActivations<T>.layout(r, batch: B, groups: G)
                if j < u.attentions.count { l += UNetAttentionActivations<T>.layout(u.attentions[j], batch: B, groups: G) }
            }
            if let us = u.upsample {
                l.append((us.name + ".input", [B, us.inC, us.side * us.side]))
                l.append(conv(us))
            }
        }
        l += [("conv_norm_out", [B, c0, n]), ("conv_norm_out.mean", [B, G]), ("conv_norm_out.rstd", [B, G]),
              ("conv_act", [B, c0, n]), ("conv_out", [B, outChannels, n])]
        return l
    }
}
