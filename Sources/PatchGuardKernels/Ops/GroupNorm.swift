import PatchGuardCore

/// Group normalisation (PyTorch `nn.GroupNorm(G, C, eps, affine=True)`): the `C/G` channels of group `g` of each
/// image are normalised together over their `CG·HW` values, `y = (x − μ_bg)·rstd_bg·w_c + b_c`,
/// `rstd = 1/√(σ² + ε)` (biased variance; diffusers uses ε = 1e-5).
///
/// Shape legend: `B` batch, `C` channels, `G` groups (`C % G == 0`), `CG = C/G`, `HW` pixels per channel.
/// Layout (B, C, HW): a group is one contiguous run of `CG·HW` values.
///
/// Cache: `mean`, `rstd` (B, G). Backward *adds* into `dX`, `dWeight`, `dBias` (nil skips one):
/// with `g = dOut·w_c`, `x̂ = (x − μ)·rstd`: `dX += rstd·(g − mean_group(g) − x̂·mean_group(g·x̂))`,
/// `dWeight_c += Σ_{b,p} dOut·x̂`, `dBias_c += Σ_{b,p} dOut`.
public enum GroupNorm {
    /// - Parameters: out, x: (B, C, HW); mean, rstd: (B, G) cache; weight, bias: (C)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ mean: UnsafeMutablePointer<T>,
                                            _ rstd: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                            _ weight: UnsafePointer<T>, _ bias: UnsafePointer<T>, batch B: Int,
                                            channels C: Int, groups G: Int, pixels HW: Int, eps: T) {
        let cg = C / G, n = cg * HW
        parallelFor(B * G, minChunk: max(1, 16384 / max(1, n))) { bg in
            let xs = x + bg * n, ys = out + bg * n
            var s: T = 0
            for i in 0..<n { s += xs[i] }
            let m = s / T(n)
            var v: T = 0
            for i in 0..<n { let d = xs[i] - m; v += d * d }
            let rs = 1 / (v / T(n) + eps).squareRoot()
            let c0 = (bg % G) * cg
            for j in 0..<cg {
                let a = rs * weight[c0 + j], sh = bias[c0 + j] - m * a
                let xr = xs + j * HW, yr = ys + j * HW
                for p in 0..<HW { yr[p] = xr[p] * a + sh }
            }
            mean[bg] = m
            rstd[bg] = rs
        }
    }

    /// - Parameters: dX: (B, C, HW) or nil; dWeight, dBias: (C) or nil; dOut, x: (B, C, HW); weight: (C);
    ///   mean, rstd: (B, G) from forward
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>?, _ dWeight: UnsafeMutablePointer<T>?,
                                             _ dBias: UnsafeMutablePointer<T>?, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, _ weight: UnsafePointer<T>,
                                             _ mean: UnsafePointer<T>, _ rstd: UnsafePointer<T>, batch B: Int,
                                             channels C: Int, groups G: Int, pixels HW: Int) {
        let cg = C / G, n = cg * HW
        if let dX {
            parallelFor(B * G, minChunk: max(1, 16384 / max(1, n))) { bg in
                let xs = x + bg * n, gs = dOut + bg * n, ds = dX + bg * n
                let m = mean[bg], rs = rstd[bg], c0 = (bg % G) * cg
                var gMean: T = 0, gxMean: T = 0
                for j in 0..<cg {
                    let w = weight[c0 + j]
                    let xr = xs + j * HW, gr = gs + j * HW
                    var a: T = 0, ax: T = 0
                    for p in 0..<HW { a += gr[p]; ax += gr[p] * (xr[p] - m) }
                    gMean += a * w; gxMean += ax * w * rs
                }
                gMean /= T(n); gxMean /= T(n)
                for j in 0..<cg {
                    let w = weight[c0 + j]
                    let xr = xs + j * HW, gr = gs + j * HW, dr = ds + j * HW
                    for p in 0..<HW {
                        let xh = (xr[p] - m) * rs
                        dr[p] += rs * (gr[p] * w - gMean - xh * gxMean)
                    }
                }
            }
        }
        if dWeight != nil || dBias != nil {
            parallelFor(C, minChunk: max(1, 16384 / max(1, B * HW))) { c in
                let g = c / cg
                var sw: T = 0, sb: T = 0
                for b in 0..<B {
                    let xr = x + (b * C + c) * HW, gr = dOut + (b * C + c) * HW
                    let m = mean[b * G + g], rs = rstd[b * G + g]
                    var a: T = 0, ax: T = 0
                    for p in 0..<HW { a += gr[p]; ax += gr[p] * (xr[p] - m) }
                    sw += ax * rs; sb += a
                }
                if let dWeight { dWeight[c] += sw }
                if let dBias { dBias[c] += sb }
            }
        }
    }
}
