import Foundation
import PatchGuardCore

/// Resampling of learned position embeddings to another patch grid, as timm's `resample_abs_pos_embed`:
/// prefix rows (class/register tokens) are kept, the grid rows are reshaped to (GH, GW, C) and resized with
/// `F.interpolate(mode='bicubic', align_corners=False, antialias=False)` — Keys' cubic convolution with A = −0.75,
/// source coordinate `(dst + ½)·in/out − ½`, border samples clamped.
public enum PosEmbedResample {
    /// - Parameters:
    ///   - values: (prefix + oldGrid.h·oldGrid.w, C), row-major over the grid.
    /// - Returns: (prefix + newGrid.h·newGrid.w, C).
    public static func resample(_ values: [Double], channels C: Int, prefix: Int, oldGrid: (h: Int, w: Int),
                                newGrid: (h: Int, w: Int)) -> [Double] {
        precondition(values.count == (prefix + oldGrid.h * oldGrid.w) * C, "pos_embed size does not match the grid")
        var out = Array(values[0..<(prefix * C)])
        out.reserveCapacity((prefix + newGrid.h * newGrid.w) * C)
        let ys = taps(inSize: oldGrid.h, outSize: newGrid.h), xs = taps(inSize: oldGrid.w, outSize: newGrid.w)
        let grid = prefix * C
        for oy in 0..<newGrid.h {
            for ox in 0..<newGrid.w {
                for c in 0..<C {
                    var s = 0.0
                    for (iy, wy) in ys[oy] {
                        for (ix, wx) in xs[ox] { s += wy * wx * values[grid + (iy * oldGrid.w + ix) * C + c] }
                    }
                    out.append(s)
                }
            }
        }
        return out
    }

    /// For each output index: four (input index, weight) taps along one axis.
    static func taps(inSize: Int, outSize: Int) -> [[(Int, Double)]] {
        let scale = Double(inSize) / Double(outSize)
        return (0..<outSize).map { o in
            let src = (Double(o) + 0.5) * scale - 0.5
            let i0 = Int(floor(src))
            let t = src - Double(i0)
            let w = cubicWeights(t)
            return (0..<4).map { k in (min(max(i0 - 1 + k, 0), inSize - 1), w[k]) }
        }
    }

    /// PyTorch's `upsample_bicubic2d` weights for offsets −1, 0, 1, 2 (A = −0.75).
    static func cubicWeights(_ t: Double) -> [Double] {
        let a = -0.75
        func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }          // |x| ≤ 1
        func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }     // 1 < |x| < 2
        return [far(t + 1), near(t), near(1 - t), far(2 - t)]
    }
}
