import CVectorMath
import PatchGuardCore

/// Residual add with optional LayerScale on the branch: `out = a + γ ⊙ x` (γ per channel; `γ = nil` means 1,
/// a plain residual add). timm's `x = x + ls(branch(x))` is one call.
///
/// Shape legend: `R` rows (B·N), `C` channels. No cache (backward needs `x` and `γ`).
/// Backward *adds*: `dA += dOut`, `dX += γ ⊙ dOut`, `dGamma += Σ_r dOut ⊙ x`. When the residual stream's gradient
/// buffer is updated in place (`dA` is the same buffer as `dOut`, as in the ViT backward), pass `dA: nil`.
public enum Residual {
    /// - Parameters: out: (R, C); a: (R, C) the stream; x: (R, C) the branch; gamma: (C) or nil.
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ a: UnsafePointer<T>,
                                            _ x: UnsafePointer<T>, _ gamma: UnsafePointer<T>?,
                                            rows: Int, channels C: Int) {
        parallelFor(rows, minChunk: 32) { r in
            let o = out + r * C, ar = a + r * C, xr = x + r * C
            if let gamma {
                for i in 0..<C { o[i] = ar[i] + gamma[i] * xr[i] }
            } else {
                for i in 0..<C { o[i] = ar[i] + xr[i] }
            }
        }
    }

    /// - Parameters: dA, dX: (R, C) or nil; dGamma: (C) or nil; dOut: (R, C); x: (R, C); gamma: (C) or nil.
    @inlinable
    public static func backward<T: NNScalar>(_ dA: UnsafeMutablePointer<T>?, _ dX: UnsafeMutablePointer<T>?,
                                             _ dGamma: UnsafeMutablePointer<T>?, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, _ gamma: UnsafePointer<T>?,
                                             rows: Int, channels C: Int) {
        if dA != nil || dX != nil {
            parallelFor(rows, minChunk: 32) { r in
                let g = dOut + r * C
                if let dA { let d = dA + r * C; for i in 0..<C { d[i] += g[i] } }
                if let dX {
                    let d = dX + r * C
                    if let gamma { for i in 0..<C { d[i] += gamma[i] * g[i] } } else { for i in 0..<C { d[i] += g[i] } }
                }
            }
        }
        if let dGamma {
            if T.self == Float.self {  // CVectorMath, the same sums bit for bit as the loop below
                ColumnBands.forEach(C) { lo, width in
                    pg_column_dot_add(UnsafeMutableRawPointer(dGamma + lo).assumingMemoryBound(to: Float.self),
                                      UnsafeRawPointer(dOut + lo).assumingMemoryBound(to: Float.self),
                                      UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self), rows, C, width)
                }
                return
            }
            let block = 64
            parallelFor((C + block - 1) / block) { bi in
                let lo = bi * block, hi = min(C, lo + block)
                var acc = [T](repeating: 0, count: hi - lo)
                for r in 0..<rows {
                    let g = dOut + r * C + lo, xr = x + r * C + lo
                    for j in 0..<(hi - lo) { acc[j] += g[j] * xr[j] }
                }
                for j in 0..<(hi - lo) { dGamma[lo + j] += acc[j] }
            }
        }
    }
}
