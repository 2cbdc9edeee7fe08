import PatchGuardCore

/// Nearest-neighbour ×2 upsampling (`F.interpolate(scale_factor=2, mode="nearest")`, diffusers `Upsample2D`):
/// `out[r, y, x] = x[r, ⌊y/2⌋, ⌊x/2⌋]`.
///
/// Shape legend: `R` planes (B·C), `H`, `W` input size. Backward *adds* the sum of each 2×2 block into `dX`.
public enum UpsampleNearest2x {
    /// - Parameters: out: (R, 2H, 2W); x: (R, H, W)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, planes R: Int,
                                            height H: Int, width W: Int) {
        parallelFor(R, minChunk: max(4, 16384 / max(1, 4 * H * W))) { r in
            let s = x + r * H * W, d = out + r * 4 * H * W
            for y in 0..<H {
                let row0 = d + (2 * y) * 2 * W, row1 = row0 + 2 * W, sr = s + y * W
                for xx in 0..<W { let v = sr[xx]; row0[2 * xx] = v; row0[2 * xx + 1] = v }
                row1.update(from: row0, count: 2 * W)
            }
        }
    }

    /// - Parameters: dX: (R, H, W) added into; dOut: (R, 2H, 2W)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>, planes R: Int,
                                             height H: Int, width W: Int) {
        parallelFor(R, minChunk: max(4, 16384 / max(1, 4 * H * W))) { r in
            let d = dX + r * H * W, g = dOut + r * 4 * H * W
            for y in 0..<H {
                let row0 = g + (2 * y) * 2 * W, row1 = row0 + 2 * W, dr = d + y * W
                for xx in 0..<W { dr[xx] += row0[2 * xx] + row0[2 * xx + 1] + row1[2 * xx] + row1[2 * xx + 1] }
            }
        }
    }
}

/// Batched matrix transpose, `out[b, j, i] = x[b, i, j]`: channels-first feature maps (B, C, HW) to tokens
/// (B, HW, C) for attention and back. Backward *adds* the transposed gradient: `dX[b, i, j] += dOut[b, j, i]`.
public enum Transpose {
    /// - Parameters: out: (B, cols, rows) overwritten; x: (B, rows, cols)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, batch B: Int,
                                            rows: Int, cols: Int) {
        parallelFor(B * cols, minChunk: max(16, 16384 / max(1, rows))) { bj in
            let b = bj / cols, j = bj % cols
            let d = out + bj * rows, s = x + b * rows * cols + j
            for i in 0..<rows { d[i] = s[i * cols] }
        }
    }

    /// - Parameters: dX: (B, rows, cols) added into; dOut: (B, cols, rows)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>, batch B: Int,
                                             rows: Int, cols: Int) {
        parallelFor(B * rows, minChunk: max(16, 16384 / max(1, cols))) { bi in
            let b = bi / rows, i = bi % rows
            let d = dX + bi * cols, s = dOut + b * rows * cols + i
            for j in 0..<cols { d[j] += s[j * rows] }
        }
    }
}

/// A per-image, per-channel value added to every pixel (the time embedding entering a ResNet block,
/// `h + temb[:, :, None, None]`): `out[b, c, p] = x[b, c, p] + t[b, c]`.
/// Backward *adds*: `dX += dOut`, `dT[b, c] += Σ_p dOut[b, c, p]`.
public enum ChannelAdd {
    /// - Parameters: out, x: (B, C, HW) (`out` may alias `x`); t: (B, C)
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                            _ t: UnsafePointer<T>, batch B: Int, channels C: Int, pixels HW: Int) {
        parallelFor(B * C, minChunk: max(8, 16384 / max(1, HW))) { bc in
            let o = out + bc * HW, s = x + bc * HW, v = t[bc]
            for p in 0..<HW { o[p] = s[p] + v }
        }
    }

    /// - Parameters: dX: (B, C, HW) or nil; dT: (B, C) or nil; dOut: (B, C, HW)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>?, _ dT: UnsafeMutablePointer<T>?,
                                             _ dOut: UnsafePointer<T>, batch B: Int, channels C: Int, pixels HW: Int) {
        parallelFor(B * C, minChunk: max(8, 16384 / max(1, HW))) { bc in
            let g = dOut + bc * HW
            if let dX { let d = dX + bc * HW; for p in 0..<HW { d[p] += g[p] } }
            if let dT {
                var s: T = 0
                for p in 0..<HW { s += g[p] }
                dT[bc] += s
            }
        }
    }
}

/// Sinusoidal timestep embedding, diffusers `get_timestep_embedding(t, D, flip_sin_to_cos, downscale_freq_shift,
/// scale=1, max_period=10000)`: with `half = D/2`, `f_i = exp(−ln(max_period)·i/(half − shift))`,
/// `e = [sin(t·f), cos(t·f)]`, swapped to `[cos, sin]` when `flipSinToCos` (UNet2DModel's default), a zero column
/// appended when D is odd. Computed in Double (diffusers computes it in float32; the fixture tool evaluates the same
/// formula in float64). Timesteps are integers to the model: there is no gradient.
public enum TimestepEmbedding {
    /// - Parameters: out: (B, D); timesteps: B values
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, timesteps: [Double], dim D: Int,
                                            flipSinToCos: Bool, downscaleFreqShift: Double,
                                            maxPeriod: Double = 10000) {
        let half = D / 2
        for (b, t) in timesteps.enumerated() {
            let row = out + b * D
            for i in 0..<half {
                let f = Double.exp(-Double.log(maxPeriod) * Double(i) / (Double(half) - downscaleFreqShift))
                let a = t * f
                let s = Double.sin(a), c = Double.cos(a)
                row[i] = T(flipSinToCos ? c : s)
                row[half + i] = T(flipSinToCos ? s : c)
            }
            if D % 2 == 1 { row[D - 1] = 0 }
        }
    }
}

