import PatchGuardCore

/// Token sequence assembly, timm `VisionTransformer._pos_embed`: prefix tokens (class token, then `R` register
/// tokens) are concatenated before the patch tokens, and the learned position embedding is added:
/// - `noEmbedClass == false` (plain ViT, DINOv2 without registers): `pos` has `1 + R + Np` rows and is added to
///   every token (concatenate, then add);
/// - `noEmbedClass == true` (timm's `*_reg*_dinov2`, DeiT-3): `pos` has `Np` rows, added to patch tokens only
///   (add, then concatenate).
///
/// Shape legend: `B` batch, `Np` patches, `R` registers, `N = 1 + R + Np` tokens, `C` channels.
/// No cache. Backward *adds* into every gradient.
public enum TokenEmbed {
    /// - Parameters:
    ///   - out: (B, N, C)
    ///   - patches: (B, Np, C)
    ///   - cls: (C); reg: (R, C) or nil; pos: (1 + R + Np, C) or (Np, C)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ patches: UnsafePointer<T>,
                                            _ cls: UnsafePointer<T>, _ reg: UnsafePointer<T>?,
                                            _ pos: UnsafePointer<T>, batch B: Int, patches np: Int,
                                            registers R: Int, channels C: Int, noEmbedClass: Bool) {
        let n = 1 + R + np
        parallelFor(B * n, minChunk: 32) { row in
            let b = row / n, t = row % n
            let o = out + row * C
            let src: UnsafePointer<T>
            if t == 0 { src = cls } else if t <= R, let reg { src = reg + (t - 1) * C } else {
                src = patches + (b * np + t - 1 - R) * C
            }
            if noEmbedClass && t <= R {
                o.update(from: src, count: C)
            } else {
                let pr = pos + (noEmbedClass ? t - 1 - R : t) * C
                for i in 0..<C { o[i] = src[i] + pr[i] }
            }
        }
    }

    /// - Parameters:
    ///   - dPatches: (B, Np, C) or nil; dCls: (C) or nil; dReg: (R, C) or nil; dPos: like `pos`, or nil
    ///   - dOut: (B, N, C)
    @inlinable
    public static func backward<T: NNScalar>(_ dPatches: UnsafeMutablePointer<T>?, _ dCls: UnsafeMutablePointer<T>?,
                                             _ dReg: UnsafeMutablePointer<T>?, _ dPos: UnsafeMutablePointer<T>?,
                                             _ dOut: UnsafePointer<T>, batch B: Int, patches np: Int,
                                             registers R: Int, channels C: Int, noEmbedClass: Bool) {
        let n = 1 + R + np
        if let dPatches {
            parallelFor(B * np, minChunk: 32) { row in
                let b = row / np, p = row % np
                let d = dPatches + row * C, g = dOut + (b * n + 1 + R + p) * C
                for i in 0..<C { d[i] += g[i] }
            }
        }
        // Parameter gradients: sum over the batch, parallel over token positions (disjoint rows).
        guard dCls != nil || dReg != nil || dPos != nil else { return }
        parallelFor(n, minChunk: 8) { t in
            for b in 0..<B {
                let g = dOut + (b * n + t) * C
                if t == 0, let dCls { for i in 0..<C { dCls[i] += g[i] } }
                if t >= 1 && t <= R, let dReg { let d = dReg + (t - 1) * C; for i in 0..<C { d[i] += g[i] } }
                if let dPos, !(noEmbedClass && t <= R) {
                    let d = dPos + (noEmbedClass ? t - 1 - R : t) * C
                    for i in 0..<C { d[i] += g[i] }
                }
            }
        }
    }
}
