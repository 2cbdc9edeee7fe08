import PatchGuardCore

/// Patch embedding: a P×P convolution with stride P (timm `patch_embed.proj`), as im2col + one GEMM.
///
/// Shape legend: `B` batch, `CI` image channels, `H`, `W` image size (multiples of `P`), `P` patch size,
/// `GH = H/P`, `GW = W/P`, `Np = GH·GW` patches (row-major over the grid), `K = CI·P·P`, `C` embedding channels.
///
/// `cols[b, p, ci·P·P + ky·P + kx] = x[b, ci, gy·P + ky, gx·P + kx]` for patch `p = gy·GW + gx` — the same order as
/// a PyTorch conv weight (C, CI, P, P) flattened to (C, K), so `out = cols·Wᵀ + bias`. The cache is `cols`
/// (B, Np, K). Backward *adds* into `dX`, `dWeight`, `dBias`; `dCols` (B, Np, K) is scratch.
public enum PatchEmbed {
    /// - Parameters:
    ///   - out: (B, Np, C)
    ///   - cols: (B, Np, K) cache
    ///   - x: (B, CI, H, W)
    ///   - weight: (C, CI, P, P); bias: (C)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ cols: UnsafeMutablePointer<T>,
                                            _ x: UnsafePointer<T>, _ weight: UnsafePointer<T>,
                                            _ bias: UnsafePointer<T>?, batch B: Int, inChannels CI: Int,
                                            height H: Int, width W: Int, patch P: Int, channels C: Int) {
        let gh = H / P, gw = W / P, np = gh * gw, k = CI * P * P
        parallelFor(B * np, minChunk: 16) { row in
            let b = row / np, p = row % np, gy = p / gw, gx = p % gw
            let dst = cols + row * k
            for ci in 0..<CI {
                for ky in 0..<P {
                    let src = x + ((b * CI + ci) * H + gy * P + ky) * W + gx * P
                    (dst + (ci * P + ky) * P).update(from: src, count: P)
                }
            }
        }
        Linear.forward(out, cols, weight, bias, rows: B * np, inFeatures: k, outFeatures: C)
    }

    /// - Parameters:
    ///   - dX: (B, CI, H, W) or nil; dWeight: (C, CI, P, P) or nil; dBias: (C) or nil
    ///   - dCols: (B, Np, K) scratch (used only when `dX` is wanted)
    ///   - dOut: (B, Np, C); cols: (B, Np, K) from forward; weight: (C, CI, P, P)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>?, _ dWeight: UnsafeMutablePointer<T>?,
                                             _ dBias: UnsafeMutablePointer<T>?, _ dCols: UnsafeMutablePointer<T>,
                                             _ dOut: UnsafePointer<T>, _ cols: UnsafePointer<T>,
                                             _ weight: UnsafePointer<T>, batch B: Int, inChannels CI: Int,
                                             height H: Int, width W: Int, patch P: Int, channels C: Int) {
        let gh = H / P, gw = W / P, np = gh * gw, k = CI * P * P
        Linear.backward(nil, dWeight, dBias, dOut, cols, weight, rows: B * np, inFeatures: k, outFeatures: C)
        guard let dX else { return }
        matmul(dCols, dOut, weight, m: B * np, n: k, k: C)
        // col2im: patches do not overlap (stride P), so each image pixel receives exactly one entry.
        parallelFor(B * np, minChunk: 16) { row in
            let b = row / np, p = row % np, gy = p / gw, gx = p % gw
            let src = dCols + row * k
            for ci in 0..<CI {
                for ky in 0..<P {
                    let d = dX + ((b * CI + ci) * H + gy * P + ky) * W + gx * P
                    let s = src + (ci * P + ky) * P
                    for kx in 0..<P { d[kx] += s[kx] }
                }
            }
        }
    }
}
