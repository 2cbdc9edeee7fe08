import PatchGuardCore

/// 2-D convolution (PyTorch `nn.Conv2d`, groups 1, dilation 1) as im2col + GEMM, one image at a time.
///
/// Shape legend: `B` batch, `CI`/`OC` in/out channels, `H`, `W` input size, `K` kernel side, `S` stride,
/// `Pd` zero padding, `OH = (H + 2Pd − K)/S + 1`, `OW` likewise, `CKK = CI·K·K`.
///
/// `cols[ci·K·K + ky·K + kx, oy·OW + ox] = x[b, ci, oy·S − Pd + ky, ox·S − Pd + kx]` (0 outside the image) — rows in
/// the order of the weight (OC, CI, K, K) flattened to (OC, CKK), so `out_b (OC, OH·OW) = W · cols + bias`.
/// No cache: `cols` and `dCols` (CKK, OH·OW) are per-image scratch, overwritten; backward recomputes the columns
/// (a pass over `x`, cheap next to the GEMMs) instead of keeping B copies of a K²-times larger tensor.
/// Backward *adds* into `dX`, `dWeight`, `dBias` (nil skips one):
/// `dWeight += dOut_b · colsᵀ`, `dBias += Σ_pixels dOut_b`, `dX_b += col2im(Wᵀ · dOut_b)`.
/// A 1×1, stride-1, unpadded convolution skips im2col (`cols` is `x_b` itself).
public enum Conv2d {
    @inlinable
    public static func outputSize(_ n: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        (n + 2 * padding - kernel) / stride + 1
    }

    /// The output columns `lo..<hi` whose input column `ox·S − Pd + kx` lies in `0..<W` (a contiguous range; empty
    /// when `lo ≥ hi`), so the copy loops need no per-element bounds test.
    @inlinable @inline(__always)
    public static func validColumns(_ kx: Int, width W: Int, outWidth OW: Int, stride S: Int, padding Pd: Int)
        -> (lo: Int, hi: Int) {
        // ox·S ≥ Pd − kx  and  ox·S ≤ W − 1 + Pd − kx.
        let a = Pd - kx, b = W - 1 + Pd - kx
        let lo = a <= 0 ? 0 : (a + S - 1) / S
        let hi = b < 0 ? 0 : b / S + 1
        return (Swift.max(0, Swift.min(lo, OW)), Swift.max(0, Swift.min(hi, OW)))
    }

    /// `cols` (CKK, OH·OW) from one image `x` (CI, H, W).
    @inlinable
    public static func im2col<T: NNScalar>(_ cols: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, inChannels CI: Int,
                                           height H: Int, width W: Int, kernel K: Int, stride S: Int,
                                           padding Pd: Int) {
        let OH = outputSize(H, kernel: K, stride: S, padding: Pd), OW = outputSize(W, kernel: K, stride: S, padding: Pd)
        parallelFor(CI * K * K, minChunk: max(4, 16384 / max(1, OH * OW))) { row in
            let ci = row / (K * K), ky = (row / K) % K, kx = row % K
            let dst = cols + row * OH * OW, src = x + ci * H * W
            let (lo, hi) = validColumns(kx, width: W, outWidth: OW, stride: S, padding: Pd)
            for oy in 0..<OH {
                let iy = oy * S - Pd + ky
                let d = dst + oy * OW
                if iy < 0 || iy >= H || lo >= hi {
                    d.update(repeating: 0, count: OW)
                    continue
                }
                let s = src + iy * W
                if lo > 0 { d.update(repeating: 0, count: lo) }
                if S == 1 {
                    (d + lo).update(from: s + (lo - Pd + kx), count: hi - lo)
                } else {
                    for ox in lo..<hi { d[ox] = s[ox * S - Pd + kx] }
                }
                if hi < OW { (d + hi).update(repeating: 0, count: OW - hi) }
            }
        }
    }

    /// `dX (CI, H, W) += col2im(dCols)`: each input channel gathers its K·K rows (disjoint writes per channel).
    @inlinable
    public static func col2imAdd<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dCols: UnsafePointer<T>,
                                              inChannels CI: Int, height H: Int, width W: Int, kernel K: Int,
                                              stride S: Int, padding Pd: Int) {
        let OH = outputSize(H, kernel: K, stride: S, padding: Pd), OW = outputSize(W, kernel: K, stride: S, padding: Pd)
        parallelFor(CI, minChunk: max(1, 16384 / max(1, K * K * OH * OW))) { ci in
            let dst = dX + ci * H * W
            for ky in 0..<K {
                for kx in 0..<K {
                    let src = dCols + ((ci * K + ky) * K + kx) * OH * OW
                    let (lo, hi) = validColumns(kx, width: W, outWidth: OW, stride: S, padding: Pd)
                    if lo >= hi { continue }
                    for oy in 0..<OH {
                        let iy = oy * S - Pd + ky
                        if iy < 0 || iy >= H { continue }
                        let d = dst + iy * W, s = src + oy * OW
                        if S == 1 {
                            let dd = d + (kx - Pd)
                            for ox in lo..<hi { dd[ox] += s[ox] }
                        } else {
                            for ox in lo..<hi { d[ox * S - Pd + kx] += s[ox] }
                        }
                    }
                }
            }
        }
    }

    /// - Parameters:
    ///   - out: (B, OC, OH, OW)
    ///   - cols: (CKK, OH·OW) scratch
    ///   - x: (B, CI, H, W)
    ///   - weight: (OC, CI, K, K); bias: (OC) or nil
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ cols: UnsafeMutablePointer<T>,
                                            _ x: UnsafePointer<T>, _ weight: UnsafePointer<T>,
                                            _ bias: UnsafePointer<T>?, batch B: Int, inChannels CI: Int,
                                            height H: Int, width W: Int, outChannels OC: Int, kernel K: Int,
                                            stride S: Int, padding Pd: Int) {
        let OH = outputSize(H, kernel: K, stride: S, padding: Pd), OW = outputSize(W, kernel: K, stride: S, padding: Pd)
        let np = OH * OW, ckk = CI * K * K
        let direct = K == 1 && S == 1 && Pd == 0
        for b in 0..<B {
            let xb = x + b * CI * H * W, ob = out + b * OC * np
            var c = UnsafePointer(cols)
            if direct { c = xb } else {
                im2col(cols, xb, inChannels: CI, height: H, width: W, kernel: K, stride: S, padding: Pd)
            }
            if let bias {
                parallelFor(OC, minChunk: max(8, 16384 / max(1, np))) { o in (ob + o * np).update(repeating: bias[o], count: np) }
                matmul(ob, weight, c, m: OC, n: np, k: ckk, beta: 1)
            } else {
                matmul(ob, weight, c, m: OC, n: np, k: ckk)
            }
        }
    }

    /// - Parameters:
    ///   - dX: (B, CI, H, W) or nil; dWeight: (OC, CI, K, K) or nil; dBias: (OC) or nil
    ///   - cols, dCols: (CKK, OH·OW) scratch
    ///   - dOut: (B, OC, OH, OW); x: (B, CI, H, W); weight: (OC, CI, K, K)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>?, _ dWeight: UnsafeMutablePointer<T>?,
                                             _ dBias: UnsafeMutablePointer<T>?, _ cols: UnsafeMutablePointer<T>,
                                             _ dCols: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, _ weight: UnsafePointer<T>, batch B: Int,
                                             inChannels CI: Int, height H: Int, width W: Int, outChannels OC: Int,
                                             kernel K: Int, stride S: Int, padding Pd: Int) {
        let OH = outputSize(H, kernel: K, stride: S, padding: Pd), OW = outputSize(W, kernel: K, stride: S, padding: Pd)
        let np = OH * OW, ckk = CI * K * K
        let direct = K == 1 && S == 1 && Pd == 0
        for b in 0..<B {
            let xb = x + b * CI * H * W, gb = dOut + b * OC * np
            if let dWeight {
                var c = UnsafePointer(cols)
                if direct { c = xb } else {
                    im2col(cols, xb, inChannels: CI, height: H, width: W, kernel: K, stride: S, padding: Pd)
                }
                matmul(dWeight, gb, c, m: OC, n: ckk, k: np, transB: true, beta: 1)
            }
            if let dBias {
                parallelFor(OC, minChunk: max(8, 16384 / max(1, np))) { o in
                    let g = gb + o * np
                    if T.self == Float.self {
                        dBias[o] += T(FastFloat.sum(UnsafeRawPointer(g).assumingMemoryBound(to: Float.self), np))
                        return
                    }
                    var s: T = 0
                    for i in 0..<np { s += g[i] }
                    dBias[o] += s
                }
            }
            if let dX {
                let dxb = dX + b * CI * H * W
                if direct {
                    matmul(dxb, weight, gb, m: ckk, n: np, k: OC, transA: true, beta: 1)
                } else {
                    matmul(dCols, weight, gb, m: ckk, n: np, k: OC, transA: true)
                    col2imAdd(dxb, dCols, inChannels: CI, height: H, width: W, kernel: K, stride: S, padding: Pd)
                }
            }
        }
    }
}
