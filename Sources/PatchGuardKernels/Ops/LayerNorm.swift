import CVectorMath
import PatchGuardCore

/// Layer normalisation over the last axis: `y = (x − μ)·rstd·w + b`, `rstd = 1/√(σ² + ε)` (biased variance,
/// as `torch.nn.LayerNorm`; timm ViTs use ε = 1e-6).
///
/// Shape legend: `R` rows (B·N tokens), `C` channels.
///
/// The cache holds `mean` and `rstd` (R) — all that backward needs besides `x` and `weight`.
/// Backward *adds* into `dX`, `dWeight`, `dBias` (pass nil to skip one).
///
/// `Float` rows (forward, and backward's `dX`) run in CVectorMath (`pg_layernorm_*_row`: the same formulas, the
/// reductions in 8 partial sums with AVX2 + FMA where the CPU has them); `Double` runs the loops below (gradient
/// checks).
public enum LayerNorm {
    /// - Parameters:
    ///   - out: (R, C)
    ///   - mean: (R) cache
    ///   - rstd: (R) cache
    ///   - x: (R, C)
    ///   - weight: (C), bias: (C)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ mean: UnsafeMutablePointer<T>,
                                            _ rstd: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                            _ weight: UnsafePointer<T>, _ bias: UnsafePointer<T>,
                                            rows: Int, channels: Int, eps: T) {
        let c = channels
        parallelFor(rows, minChunk: 16) { r in
            let xr = x + r * c, yr = out + r * c
            if T.self == Float.self {
                pg_layernorm_forward_row(
                    UnsafeMutableRawPointer(yr).assumingMemoryBound(to: Float.self),
                    UnsafeMutableRawPointer(mean + r).assumingMemoryBound(to: Float.self),
                    UnsafeMutableRawPointer(rstd + r).assumingMemoryBound(to: Float.self),
                    UnsafeRawPointer(xr).assumingMemoryBound(to: Float.self),
                    UnsafeRawPointer(weight).assumingMemoryBound(to: Float.self),
                    UnsafeRawPointer(bias).assumingMemoryBound(to: Float.self), c, Float(eps))
                return
            }
            var s: T = 0
            for i in 0..<c { s += xr[i] }
            let m = s / T(c)
            var v: T = 0
            for i in 0..<c { let d = xr[i] - m; v += d * d }
            let rs = 1 / (v / T(c) + eps).squareRoot()
            for i in 0..<c { yr[i] = (xr[i] - m) * rs * weight[i] + bias[i] }
            mean[r] = m
            rstd[r] = rs
        }
    }

    /// `dX += rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dOut·w`, `x̂ = (x − μ)·rstd`;
    /// `dWeight += Σ_r dOut·x̂`, `dBias += Σ_r dOut`.
    /// - Parameters:
    ///   - dX: (R, C) or nil; dWeight, dBias: (C) or nil
    ///   - dOut: (R, C); x: (R, C); weight: (C); mean, rstd: (R)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>?, _ dWeight: UnsafeMutablePointer<T>?,
                                             _ dBias: UnsafeMutablePointer<T>?, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, _ weight: UnsafePointer<T>,
                                             _ mean: UnsafePointer<T>, _ rstd: UnsafePointer<T>,
                                             rows: Int, channels: Int) {
        let c = channels
        if let dX {
            parallelFor(rows, minChunk: 16) { r in
                let xr = x + r * c, gr = dOut + r * c, dxr = dX + r * c
                let m = mean[r], rs = rstd[r]
                if T.self == Float.self {
                    pg_layernorm_backward_row(
                        UnsafeMutableRawPointer(dxr).assumingMemoryBound(to: Float.self),
                        UnsafeRawPointer(gr).assumingMemoryBound(to: Float.self),
                        UnsafeRawPointer(xr).assumingMemoryBound(to: Float.self),
                        UnsafeRawPointer(weight).assumingMemoryBound(to: Float.self), Float(m), Float(rs), c)
                    return
                }
                var gMean: T = 0, gxMean: T = 0
                for i in 0..<c {
                    let g = gr[i] * weight[i]
                    gMean += g
                    gxMean += g * (xr[i] - m) * rs
                }
                gMean /= T(c); gxMean /= T(c)
                for i in 0..<c {
                    let g = gr[i] * weight[i]
                    let xh = (xr[i] - m) * rs
                    dxr[i] += rs * (g - gMean - xh * gxMean)
                }
            }
        }
        if dWeight != nil || dBias != nil {
            if T.self == Float.self {  // CVectorMath, the same sums bit for bit as the loop below
                ColumnBands.forEach(c) { lo, width in
                    pg_layernorm_param_grads(
                        dWeight.map { UnsafeMutableRawPointer($0 + lo).assumingMemoryBound(to: Float.self) },
                        dBias.map { UnsafeMutableRawPointer($0 + lo).assumingMemoryBound(to: Float.self) },
                        UnsafeRawPointer(dOut + lo).assumingMemoryBound(to: Float.self),
                        UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self),
                        UnsafeRawPointer(mean).assumingMemoryBound(to: Float.self),
                        UnsafeRawPointer(rstd).assumingMemoryBound(to: Float.self), rows, c, width)
                }
                return
            }
            let block = 64
            let blocks = (c + block - 1) / block
            parallelFor(blocks) { bi in
                let lo = bi * block, hi = min(c, lo + block), w = hi - lo
                var acc = [T](repeating: 0, count: 2 * w)
                acc.withUnsafeMutableBufferPointer { a in
                    for r in 0..<rows {
                        let m = mean[r], rs = rstd[r]
                        let xr = x + r * c + lo, gr = dOut + r * c + lo
                        for j in 0..<w {
                            a[j] += gr[j] * (xr[j] - m) * rs
                            a[w + j] += gr[j]
                        }
                    }
                    if let dWeight { for j in 0..<w { dWeight[lo + j] += a[j] } }
                    if let dBias { for j in 0..<w { dBias[lo + j] += a[w + j] } }
                }
            }
        }
    }
}
