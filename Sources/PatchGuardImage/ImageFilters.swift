import Foundation
import PatchGuardCore

// Image filters shared by scoring, Grad-CAM and foreground masks: PyTorch-compatible bilinear upsampling
// (`align_corners=False`) and separable Gaussian blur with `reflect` borders.
//
// Shapes: planes are row-major `H × W` Float arrays; `GH × GW` grids are upsampled to `H × W`.

/// Interpolation taps for one axis of PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`.
///
/// For output index `d` of `outSize` from `inSize` (scale `s = inSize / outSize`, no `scale_factor` given):
/// `src = max(0, (d + ½)·s − ½)`, `i0 = ⌊src⌋`, `i1 = min(i0 + 1, inSize − 1)`, `λ1 = src − i0`, `λ0 = 1 − λ1`.
/// (PyTorch's `area_pixel_compute_source_index` clamps negative sources to 0; the upper side is clamped by `i1`.)
public struct LinearTaps: Sendable, Equatable {
    public var i0: [Int32]
    public var i1: [Int32]
    public var w0: [Float]
    public var w1: [Float]

    public init(inSize: Int, outSize: Int) {
        let scale = Double(inSize) / Double(outSize)
        i0 = []; i1 = []; w0 = []; w1 = []
        for d in 0..<outSize {
            let src = max(0, (Double(d) + 0.5) * scale - 0.5)
            let lo = min(Int(src), inSize - 1)
            let hi = lo < inSize - 1 ? lo + 1 : lo
            let l1 = src - Double(lo)
            i0.append(Int32(lo)); i1.append(Int32(hi))
            w0.append(Float(1 - l1)); w1.append(Float(l1))
        }
    }
}

/// Bilinear resize of one `inHeight × inWidth` plane to `outHeight × outWidth`, with PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` semantics (see ``LinearTaps``):
/// `out[y][x] = Σ_{a,b} wy_a(y)·wx_b(x)·in[iy_a(y)][ix_b(x)]`.
public func bilinearUpsample(_ input: [Float], inHeight: Int, inWidth: Int,
                             outHeight: Int, outWidth: Int) throws -> [Float] {
    guard inHeight > 0, inWidth > 0, outHeight > 0, outWidth > 0, input.count == inHeight * inWidth else {
        throw PatchGuardError.invalidArgument(
            "bilinear: \(input.count) values for \(inHeight)×\(inWidth) → \(outHeight)×\(outWidth)")
    }
    let ty = LinearTaps(inSize: inHeight, outSize: outHeight), tx = LinearTaps(inSize: inWidth, outSize: outWidth)
    var out = [Float](repeating: 0, count: outHeight * outWidth)
    input.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            bilinearResample(dst.baseAddress!, src.baseAddress!, inWidth: inWidth, outHeight: outHeight, outWidth: outWidth,
                      ty: ty, tx: tx)
        }
    }
    return out
}

/// `out` (outHeight, outWidth) ← bilinear(`src` (·, inWidth)) with precomputed taps.
public func bilinearResample(_ out: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, inWidth: Int,
               outHeight: Int, outWidth: Int, ty: LinearTaps, tx: LinearTaps) {
    ty.i0.withUnsafeBufferPointer { yi0 in ty.i1.withUnsafeBufferPointer { yi1 in
    ty.w0.withUnsafeBufferPointer { yw0 in ty.w1.withUnsafeBufferPointer { yw1 in
    tx.i0.withUnsafeBufferPointer { xi0 in tx.i1.withUnsafeBufferPointer { xi1 in
    tx.w0.withUnsafeBufferPointer { xw0 in tx.w1.withUnsafeBufferPointer { xw1 in
        for y in 0..<outHeight {
            let r0 = src + Int(yi0[y]) * inWidth, r1 = src + Int(yi1[y]) * inWidth
            let a = yw0[y], b = yw1[y]
            let o = out + y * outWidth
            for x in 0..<outWidth {
                let j0 = Int(xi0[x]), j1 = Int(xi1[x])
                // Same association as PyTorch's CPU kernel: h0λ·(w0λ·v00 + w1λ·v01) + h1λ·(w0λ·v10 + w1λ·v11).
                o[x] = a * (xw0[x] * r0[j0] + xw1[x] * r0[j1]) + b * (xw0[x] * r1[j0] + xw1[x] * r1[j1])
            }
        }
    }}}}}}}}
}

/// The normalised 1-D Gaussian `g[j] = exp(−(j−r)²/(2σ²)) / Σ_j exp(−(j−r)²/(2σ²))`, `j = 0…2r`
/// (torchvision / kornia `get_gaussian_kernel1d`). `sigma == 0` gives the identity kernel `[1]`.
public func gaussianKernel1D(sigma: Double, radius: Int) throws -> [Float] {
    guard sigma.isFinite, sigma >= 0, radius >= 0 else {
        throw PatchGuardError.invalidArgument("Gaussian kernel: sigma \(sigma), radius \(radius)")
    }
    if sigma == 0 || radius == 0 { return [1] }
    var g = (0...(2 * radius)).map { j -> Double in
        let d = Double(j - radius)
        return exp(-d * d / (2 * sigma * sigma))
    }
    let s = g.reduce(0, +)
    for j in g.indices { g[j] /= s }
    return g.map { Float($0) }
}

/// PyTorch `padding_mode="reflect"` index (mirror about the edge pixel, the edge not repeated: `d c b | a b c d | c b a`;
/// numpy `reflect`, scipy `mirror`), folded repeatedly so any offset is valid, even when `n ≤ radius` (where PyTorch
/// itself refuses to pad). `n == 1` maps everything to 0.
@inlinable
public func reflectIndex(_ i: Int, _ n: Int) -> Int {
    if n == 1 { return 0 }
    let period = 2 * (n - 1)
    var m = i % period
    if m < 0 { m += period }
    return m < n ? m : period - m
}

/// Separable Gaussian smoothing of one `height × width` plane in place, borders by ``reflectIndex(_:_:)``
/// (torchvision `gaussian_blur` and kornia `gaussian_blur2d` default `'reflect'`). Horizontal pass, then vertical.
/// `scratch` must hold `height × width` values.
public func gaussianBlur(_ plane: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                         height: Int, width: Int, kernel: [Float]) {
    let r = kernel.count / 2
    if r == 0 { return }
    kernel.withUnsafeBufferPointer { kp in
        let k = kp.baseAddress!
        // Horizontal: scratch[y][x] = Σ_j k[j]·plane[y][reflect(x + j − r)]. Interior columns skip the reflection.
        for y in 0..<height {
            let src = plane + y * width, dst = scratch + y * width
            for x in 0..<width {
                var s: Float = 0
                if x >= r, x + r < width {
                    let base = src + (x - r)
                    for j in 0...(2 * r) { s += k[j] * base[j] }
                } else {
                    for j in 0...(2 * r) { s += k[j] * src[reflectIndex(x + j - r, width)] }
                }
                dst[x] = s
            }
        }
        // Vertical: plane[y][x] = Σ_j k[j]·scratch[reflect(y + j − r)][x], accumulated row by row (contiguous).
        for y in 0..<height {
            let dst = plane + y * width
            dst.update(repeating: 0, count: width)
            for j in 0...(2 * r) {
                let src = scratch + reflectIndex(y + j - r, height) * width
                let w = k[j]
                for x in 0..<width { dst[x] += w * src[x] }
            }
        }
    }
}

/// Array convenience for ``gaussianBlur(_:scratch:height:width:kernel:)``.
public func gaussianBlur(_ plane: [Float], height: Int, width: Int, sigma: Double, radius: Int) throws -> [Float] {
    guard height > 0, width > 0, plane.count == height * width else {
        throw PatchGuardError.invalidArgument("Gaussian blur: \(plane.count) values for \(height)×\(width)")
    }
    let kernel = try gaussianKernel1D(sigma: sigma, radius: radius)
    var out = plane
    var scratch = [Float](repeating: 0, count: plane.count)
    out.withUnsafeMutableBufferPointer { o in
        scratch.withUnsafeMutableBufferPointer { s in
            gaussianBlur(o.baseAddress!, scratch: s.baseAddress!, height: height, width: width, kernel: kernel)
        }
    }
    return out
}
