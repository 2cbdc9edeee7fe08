import PatchGuardCore

// Typed views into the ViT's arenas (llm.c's `ParameterTensors` / `ActivationTensors`), built once at init: the
// forward and backward use these fields, never a string look-up. The arenas keep timm's names and layout (the
// checkpoint and `Arena.entries` are unchanged); these structs only point into them.
//
// Shape legend: `B` = maxBatch (a smaller batch uses a prefix of every buffer), `N = 1 + R + Np` tokens, `Np`
// patches, `R` registers, `C` channels, `NH` heads, `HD` MLP hidden, `K = 3·P·P`, `H` image side.

/// One transformer block's parameters (or, built on the gradient arena, their gradients).
public struct ViTBlockParameters<T: NNScalar> {
    public let norm1Weight: UnsafeMutablePointer<T>   // (C)
    public let norm1Bias: UnsafeMutablePointer<T>     // (C)
    public let qkvWeight: UnsafeMutablePointer<T>     // (3C, C)
    public let qkvBias: UnsafeMutablePointer<T>?      // (3C) when qkvBias
    public let projWeight: UnsafeMutablePointer<T>    // (C, C)
    public let projBias: UnsafeMutablePointer<T>      // (C)
    public let ls1Gamma: UnsafeMutablePointer<T>?     // (C) with LayerScale
    public let norm2Weight: UnsafeMutablePointer<T>   // (C)
    public let norm2Bias: UnsafeMutablePointer<T>     // (C)
    public let fc1Weight: UnsafeMutablePointer<T>     // (HD, C)
    public let fc1Bias: UnsafeMutablePointer<T>       // (HD)
    public let fc2Weight: UnsafeMutablePointer<T>     // (C, HD)
    public let fc2Bias: UnsafeMutablePointer<T>       // (C)
    public let ls2Gamma: UnsafeMutablePointer<T>?     // (C) with LayerScale
}

/// All parameters of a ViT (timm names in the arena), or their gradients.
public struct ViTParameters<T: NNScalar> {
    public let cls: UnsafeMutablePointer<T>           // (1, 1, C) cls_token
    public let reg: UnsafeMutablePointer<T>?          // (1, R, C) reg_token when R > 0
    public let pos: UnsafeMutablePointer<T>           // (1, posEmbedRows, C) pos_embed
    public let patchWeight: UnsafeMutablePointer<T>   // (C, 3, P, P) patch_embed.proj.weight
    public let patchBias: UnsafeMutablePointer<T>     // (C)
    public internal(set) var blocks: [ViTBlockParameters<T>]  // depth
    public let normWeight: UnsafeMutablePointer<T>    // (C) final norm
    public let normBias: UnsafeMutablePointer<T>      // (C)
    public let headWeight: UnsafeMutablePointer<T>?   // (classes, C) when numClasses > 0
    public let headBias: UnsafeMutablePointer<T>?     // (classes)

    public init(_ arena: Arena<T>, config c: ViTConfig) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { arena.pointer(n) }
        func o(_ n: String) -> UnsafeMutablePointer<T>? { arena.contains(n) ? arena.pointer(n) : nil }
        cls = v("cls_token"); reg = o("reg_token"); pos = v("pos_embed")
        patchWeight = v("patch_embed.proj.weight"); patchBias = v("patch_embed.proj.bias")
        blocks = (0..<c.depth).map { i in
            let b = "blocks.\(i)."
            return ViTBlockParameters(
                norm1Weight: v(b + "norm1.weight"), norm1Bias: v(b + "norm1.bias"), qkvWeight: v(b + "attn.qkv.weight"),
                qkvBias: o(b + "attn.qkv.bias"), projWeight: v(b + "attn.proj.weight"), projBias: v(b + "attn.proj.bias"),
                ls1Gamma: o(b + "ls1.gamma"), norm2Weight: v(b + "norm2.weight"), norm2Bias: v(b + "norm2.bias"),
                fc1Weight: v(b + "mlp.fc1.weight"), fc1Bias: v(b + "mlp.fc1.bias"), fc2Weight: v(b + "mlp.fc2.weight"),
                fc2Bias: v(b + "mlp.fc2.bias"), ls2Gamma: o(b + "ls2.gamma"))
        }
        normWeight = v("norm.weight"); normBias = v("norm.bias")
        headWeight = o("head.weight"); headBias = o("head.bias")
    }

    /// The same view with `count` blocks that are all block 0 (an image-parallel backward's private gradients:
    /// one block's worth, reused by every block in turn).
    func repeatingBlock(count: Int) -> ViTParameters {
        var v = self
        v.blocks = Array(repeating: blocks[0], count: count)
        return v
    }
}

/// One block's forward activations and caches. The LayerNorm outputs and the GELU output are not among them: they
/// are recomputed from what is (``ViTActivations/ln``, ``ViTActivations/gelu``).
public struct ViTBlockActivations<T: NNScalar> {
    public internal(set) var ln1Mean: UnsafeMutablePointer<T>       // (B, N)
    public internal(set) var ln1Rstd: UnsafeMutablePointer<T>       // (B, N)
    public internal(set) var qkv: UnsafeMutablePointer<T>           // (B, N, 3C)
    public internal(set) var probs: UnsafeMutablePointer<T>         // (B, NH, N, N) attention probabilities
    public internal(set) var attnOut: UnsafeMutablePointer<T>       // (B, N, C) heads concatenated
    public internal(set) var proj: UnsafeMutablePointer<T>          // (B, N, C)
    public internal(set) var x2: UnsafeMutablePointer<T>            // (B, N, C) stream after the attention branch
    public internal(set) var ln2Mean: UnsafeMutablePointer<T>       // (B, N)
    public internal(set) var ln2Rstd: UnsafeMutablePointer<T>       // (B, N)
    public internal(set) var fc1: UnsafeMutablePointer<T>           // (B, N, HD) GELU input
    public internal(set) var fc2: UnsafeMutablePointer<T>           // (B, N, C)
    public internal(set) var out: UnsafeMutablePointer<T>           // (B, N, C) block output
    public internal(set) var features: UnsafeMutablePointer<T>      // (B, Np, C) final-normed patch tokens (feature layers only)
    public internal(set) var featuresMean: UnsafeMutablePointer<T>  // (B, Np)
    public internal(set) var featuresRstd: UnsafeMutablePointer<T>  // (B, Np)
}

extension ViTBlockActivations {
    /// The same buffers from image `b` on (one share of an image-parallel pass).
    func images(from b: Int, config c: ViTConfig) -> ViTBlockActivations {
        let C = c.dim, N = c.numTokens, Np = c.numPatches, NH = c.heads, HD = c.mlpHidden
        var v = self
        v.ln1Mean += b * N; v.ln1Rstd += b * N; v.qkv += b * N * 3 * C
        v.probs += b * NH * N * N; v.attnOut += b * N * C; v.proj += b * N * C; v.x2 += b * N * C
        v.ln2Mean += b * N; v.ln2Rstd += b * N; v.fc1 += b * N * HD
        v.fc2 += b * N * C; v.out += b * N * C
        v.features += b * Np * C; v.featuresMean += b * Np; v.featuresRstd += b * Np
        return v
    }
}

/// Forward activations of the whole ViT.
public struct ViTActivations<T: NNScalar> {
    public internal(set) var inputNormed: UnsafeMutablePointer<T>   // (B, 3, H, H)
    public internal(set) var patchCols: UnsafeMutablePointer<T>     // (B, Np, K) im2col cache
    public internal(set) var patchOut: UnsafeMutablePointer<T>      // (B, Np, C)
    public internal(set) var tokens: UnsafeMutablePointer<T>        // (B, N, C) block 0 input
    /// One buffer for every block's norm1 and norm2 output (the input of qkv and of fc1) and one for every block's
    /// GELU output (the input of fc2). Only the matrix products' weight gradients read them again, so the backward
    /// recomputes them there, from the block's stored LayerNorm input or fc1 output, by the same kernel on the
    /// same inputs (bit for bit the forward's values), instead of keeping 2·C + HD values per token in every block
    /// (ViT-S/14 at batch 8: 212 MB of a training step's peak).
    public internal(set) var ln: UnsafeMutablePointer<T>            // (B, N, C)
    public internal(set) var gelu: UnsafeMutablePointer<T>          // (B, N, HD)
    public internal(set) var blocks: [ViTBlockActivations<T>]       // depth
    public internal(set) var headClsNorm: UnsafeMutablePointer<T>?  // (B, C) final-normed class token, with a head
    public internal(set) var headMean: UnsafeMutablePointer<T>?     // (B)
    public internal(set) var headRstd: UnsafeMutablePointer<T>?     // (B)
    public internal(set) var headLogits: UnsafeMutablePointer<T>?   // (B, classes)

    init(_ arena: Arena<T>, config c: ViTConfig) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { arena.pointer(n) }
        func o(_ n: String) -> UnsafeMutablePointer<T>? { arena.contains(n) ? arena.pointer(n) : nil }
        inputNormed = v("input.normed"); patchCols = v("patch.cols"); patchOut = v("patch.out"); tokens = v("tokens")
        ln = v("ln"); gelu = v("gelu")
        blocks = (0..<c.depth).map { i in
            let b = "blocks.\(i).", f = "features.\(i)"
            return ViTBlockActivations(
                ln1Mean: v(b + "ln1.mean"), ln1Rstd: v(b + "ln1.rstd"), qkv: v(b + "qkv"),
                probs: v(b + "attn.probs"), attnOut: v(b + "attn.out"), proj: v(b + "proj"), x2: v(b + "x2"),
                ln2Mean: v(b + "ln2.mean"), ln2Rstd: v(b + "ln2.rstd"), fc1: v(b + "fc1"),
                fc2: v(b + "fc2"), out: v(b + "out"), features: v(f), featuresMean: v(f + ".mean"),
                featuresRstd: v(f + ".rstd"))
        }
        headClsNorm = o("head.clsnorm"); headMean = o("head.mean"); headRstd = o("head.rstd")
        headLogits = o("head.logits")
    }

    /// The same buffers from image `b` on (one share of an image-parallel pass).
    func images(from b: Int, config c: ViTConfig) -> ViTActivations {
        guard b > 0 else { return self }
        let C = c.dim, N = c.numTokens, Np = c.numPatches, H = c.imageSize, K = 3 * c.patchSize * c.patchSize
        var v = self
        v.inputNormed += b * 3 * H * H; v.patchCols += b * Np * K; v.patchOut += b * Np * C; v.tokens += b * N * C
        v.ln += b * N * C; v.gelu += b * N * c.mlpHidden
        v.blocks = blocks.map { $0.images(from: b, config: c) }
        v.headClsNorm = headClsNorm.map { $0 + b * C }; v.headMean = headMean.map { $0 + b }
        v.headRstd = headRstd.map { $0 + b }; v.headLogits = headLogits.map { $0 + b * c.numClasses }
        return v
    }
}

/// Backward scratch, reused by every block. Backward *adds* into these, so they are zeroed in exactly two places,
/// through the kernels, for the batch's prefix only:
/// - ``zeroStep(batch:kernels:)`` (dResidual, dClsNorm, dPatches, dNormed) once at the start of every backward;
/// - ``zeroBlock(batch:kernels:)`` (dBranch2 … dLN1) once per block, before the block's branches run.
/// `dScores` and `dCols` are overwritten by their kernels and never zeroed.
public struct ViTScratch<T: NNScalar> {
    public internal(set) var dResidual: UnsafeMutablePointer<T>     // (B, N, C) gradient of the residual stream, in place
    public internal(set) var dClsNorm: UnsafeMutablePointer<T>      // (B, C)
    public internal(set) var dPatches: UnsafeMutablePointer<T>      // (B, Np, C)
    public internal(set) var dNormed: UnsafeMutablePointer<T>       // (B, 3, H, H)
    public internal(set) var dBranch2: UnsafeMutablePointer<T>      // (B, N, C) dFC2 with LayerScale (empty without)
    public internal(set) var dGELU: UnsafeMutablePointer<T>         // (B, N, HD)
    public internal(set) var dFC1: UnsafeMutablePointer<T>          // (B, N, HD)
    public internal(set) var dLN2: UnsafeMutablePointer<T>          // (B, N, C)
    public internal(set) var dBranch1: UnsafeMutablePointer<T>      // (B, N, C) dProj with LayerScale (empty without)
    public internal(set) var dAttnOut: UnsafeMutablePointer<T>      // (B, N, C)
    public internal(set) var dQKV: UnsafeMutablePointer<T>          // (B, N, 3C)
    public internal(set) var dLN1: UnsafeMutablePointer<T>          // (B, N, C) gradient on the norm1 output
    public internal(set) var dScores: UnsafeMutablePointer<T>       // (B, NH, N, N) overwritten
    public internal(set) var dCols: UnsafeMutablePointer<T>         // (B, Np, K) overwritten
    /// (buffer, elements per image) zeroed by ``zeroStep(batch:kernels:)`` / ``zeroBlock(batch:kernels:)``.
    var stepBuffers: [(UnsafeMutablePointer<T>, Int)], blockBuffers: [(UnsafeMutablePointer<T>, Int)]

    /// Zeroes the per-step gradient buffers for `batch` images (start of a backward).
    public func zeroStep(batch: Int, kernels: any Kernels<T>) {
        for (p, n) in stepBuffers { kernels.zero(p, count: batch * n) }
    }

    /// Zeroes the per-block gradient buffers for `batch` images (start of each block's backward).
    public func zeroBlock(batch: Int, kernels: any Kernels<T>) {
        for (p, n) in blockBuffers { kernels.zero(p, count: batch * n) }
    }

    /// The same buffers from image `b` on (one share of an image-parallel pass).
    func images(from b: Int, config c: ViTConfig) -> ViTScratch {
        guard b > 0 else { return self }
        let C = c.dim, N = c.numTokens, Np = c.numPatches, NH = c.heads, HD = c.mlpHidden, H = c.imageSize
        let K = 3 * c.patchSize * c.patchSize, ls = c.hasLayerScale ? N * C : 0
        var v = self
        v.dResidual += b * N * C; v.dClsNorm += b * C; v.dPatches += b * Np * C; v.dNormed += b * 3 * H * H
        v.dBranch2 += b * ls; v.dGELU += b * N * HD; v.dFC1 += b * N * HD; v.dLN2 += b * N * C
        v.dBranch1 += b * ls; v.dAttnOut += b * N * C; v.dQKV += b * N * 3 * C; v.dLN1 += b * N * C
        v.dScores += b * NH * N * N; v.dCols += b * Np * K
        v.stepBuffers = stepBuffers.map { ($0.0 + b * $0.1, $0.1) }
        v.blockBuffers = blockBuffers.map { ($0.0 + b * $0.1, $0.1) }
        return v
    }

    static func layout(_ c: ViTConfig, maxBatch B: Int) -> [(name: String, shape: [Int])] {
        let C = c.dim, N = c.numTokens, Np = c.numPatches, NH = c.heads, HD = c.mlpHidden, H = c.imageSize
        let K = 3 * c.patchSize * c.patchSize, lsRows = c.hasLayerScale ? B : 0
        return [("dResidual", [B, N, C]), ("dClsNorm", [B, C]), ("dPatches", [B, Np, C]), ("dNormed", [B, 3, H, H]),
                ("dBranch2", [lsRows, N, C]), ("dGELU", [B, N, HD]), ("dFC1", [B, N, HD]), ("dLN2", [B, N, C]),
                ("dBranch1", [lsRows, N, C]), ("dAttnOut", [B, N, C]), ("dQKV", [B, N, 3 * C]), ("dLN1", [B, N, C]),
                ("dScores", [B, NH, N, N]), ("dCols", [B, Np, K])]
    }

    init(_ arena: Arena<T>, config c: ViTConfig) {
        func v(_ n: String) -> UnsafeMutablePointer<T> { arena.pointer(n) }
        dResidual = v("dResidual"); dClsNorm = v("dClsNorm"); dPatches = v("dPatches"); dNormed = v("dNormed")
        dBranch2 = v("dBranch2"); dGELU = v("dGELU"); dFC1 = v("dFC1"); dLN2 = v("dLN2"); dBranch1 = v("dBranch1")
        dAttnOut = v("dAttnOut"); dQKV = v("dQKV"); dLN1 = v("dLN1"); dScores = v("dScores"); dCols = v("dCols")
        let C = c.dim, N = c.numTokens, HD = c.mlpHidden, ls = c.hasLayerScale ? N * C : 0
        stepBuffers = [(dResidual, N * C), (dClsNorm, C), (dPatches, c.numPatches * C), (dNormed, 3 * c.imageSize * c.imageSize)]
        blockBuffers = [(dBranch2, ls), (dGELU, N * HD), (dFC1, N * HD), (dLN2, N * C), (dBranch1, ls),
                        (dAttnOut, N * C), (dQKV, N * 3 * C), (dLN1, N * C)]
    }
}
