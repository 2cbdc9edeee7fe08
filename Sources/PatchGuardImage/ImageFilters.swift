import Foundation
import PatchGuardCore

// Image filters shared by scoring, Grad-CAM, foreground masks and pseudo-anomaly synthesis: PyTorch-compatible
// bilinear taps and upsampling (`align_corners=False`, also the taps of ``Image/resized(width:height:filter:)``), a
// bilinear point sampler, and separable Gaussian blur. Border handling and kernel normalisation are explicit
// parameters (``BorderMode``, ``GaussianKernelNormalization``) so each caller keeps its exact numbers.
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
                o[x] = bilinearBlend(r0[j0], r0[j1], r1[j0], r1[j1], x0: xw0[x], x1: xw1[x], y0: a, y1: b)
            }
        }
    }}}}}}}}
}

/// Where ``gaussianKernel1D(sigma:radius:normalization:)`` sums and divides (the two give kernels that differ in
/// the last bit, and so blurs that differ).
public enum GaussianKernelNormalization: Sendable, Equatable {
    /// Weights, sum and division in Double, rounded to Float at the end (torchvision / kornia; scoring, foreground).
    case double
    /// Each weight rounded to Float first, then summed and divided in Float (pseudo-anomaly synthesis).
    case float
}

/// The kernel radius `max(minimum, ⌈truncate·σ⌉)` (scipy's `truncate`, 3σ by default).
@inlinable
public func gaussianRadius(sigma: Double, truncate: Double = 3, minimum: Int = 0) -> Int {
    max(minimum, Int((truncate * sigma).rounded(.up)))
}

/// The normalised 1-D Gaussian `g[j] = exp(−(j−r)²/(2σ²)) / Σ_j exp(−(j−r)²/(2σ²))`, `j = 0…2r`
/// (torchvision / kornia `get_gaussian_kernel1d`), normalised as `normalization` says (``GaussianKernelNormalization``).
/// `sigma == 0` or `radius == 0` gives the identity kernel `[1]`.
public func gaussianKernel1D(sigma: Double, radius: Int,
                             normalization: GaussianKernelNormalization = .double) throws -> [Float] {
    guard sigma.isFinite, sigma >= 0, radius >= 0 else {
        throw PatchGuardError.invalidArgument("Gaussian kernel: sigma \(sigma), radius \(radius)")
    }
    if sigma == 0 || radius == 0 { return [1] }
    let g = (0...(2 * radius)).map { j -> Double in
        let d = Double(j - radius)
        return exp(-d * d / (2 * sigma * sigma))
    }
    switch normalization {
    case .double:
        let s = g.reduce(0, +)
        return g.map { Float($0 / s) }
    case .float:
        let f = g.map { Float($0) }
        let s = f.reduce(0, +)
        return f.map { $0 / s }
    }
}

/// How a filter or sampler reads outside a plane of `n` pixels. The two mirrors differ in whether the edge pixel
/// repeats, so a blur or sampler near the border gives different numbers; each caller names the one it was built
/// with.
public enum BorderMode: Sendable, Equatable {
    /// Mirror about the edge pixel, the edge not repeated: `d c b | a b c d | c b a` (PyTorch
    /// `padding_mode="reflect"`, numpy `reflect`, scipy `mirror`). ``reflectIndex(_:_:)``.
    case reflect
    /// Mirror about the edge, the edge repeated: `d c b a | a b c d | d c b a` (numpy `symmetric`, scipy
    /// `reflect`, OpenCV `BORDER_REFLECT`). ``symmetricIndex(_:_:)``.
    case symmetric
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

/// Symmetric index (mirror about the edge, the edge repeated: `d c b a | a b c d | d c b a`; scipy `reflect`),
/// folded repeatedly so any offset is valid.
@inlinable
public func symmetricIndex(_ i: Int, _ n: Int) -> Int {
    let period = 2 * n
    var m = i % period
    if m < 0 { m += period }
    return m < n ? m : period - 1 - m
}

/// `i` mapped into `0..<n` by `mode`.
@inlinable
public func borderIndex(_ i: Int, _ n: Int, _ mode: BorderMode) -> Int {
    switch mode {
    case .reflect: return reflectIndex(i, n)
    case .symmetric: return symmetricIndex(i, n)
    }
}

/// The bilinear blend of four neighbours `v00 v01 / v10 v11` (row, column) with horizontal weights `(x0, x1)` and
/// vertical weights `(y0, y1)`: `y0·(x0·v00 + x1·v01) + y1·(x0·v10 + x1·v11)`, in that association (PyTorch's CPU
/// kernel). Every bilinear reader in the project combines its taps through this.
@inlinable @inline(__always)
public func bilinearBlend(_ v00: Float, _ v01: Float, _ v10: Float, _ v11: Float,
                          x0: Float, x1: Float, y0: Float, y1: Float) -> Float {
    y0 * (x0 * v00 + x1 * v01) + y1 * (x0 * v10 + x1 * v11)
}

extension Image {
    /// Bilinear sample of channel `c` at continuous pixel coordinates `(x, y)` (pixel centres at integers):
    /// `i = ⌊x⌋`, `t = x − i`, neighbours `i` and `i + 1` (mapped into the image by `border`) weighted `1 − t` and
    /// `t`, per axis, blended by ``bilinearBlend(_:_:_:_:x0:x1:y0:y1:)``.
    @inlinable
    public func bilinearSample(channel c: Int, x: Float, y: Float, border: BorderMode) -> Float {
        let fx = x.rounded(.down), fy = y.rounded(.down)
        let tx = x - fx, ty = y - fy
        let x0 = Int(fx), y0 = Int(fy)
        let base = c * width * height
        let xa = borderIndex(x0, width, border), xb = borderIndex(x0 + 1, width, border)
        let ya = borderIndex(y0, height, border), yb = borderIndex(y0 + 1, height, border)
        return bilinearBlend(pixels[base + ya * width + xa], pixels[base + ya * width + xb],
                             pixels[base + yb * width + xa], pixels[base + yb * width + xb],
                             x0: 1 - tx, x1: tx, y0: 1 - ty, y1: ty)
    }
}

/// Separable Gaussian smoothing of one `height × width` plane in place, borders by `border` (default
/// ``BorderMode/reflect``: torchvision `gaussian_blur` and kornia `gaussian_blur2d` default `'reflect'`).
/// Horizontal pass, then vertical; each output is `Σ_j k[j]·in[·]` summed in order `j = 0…2r`.
/// `scratch` must hold `height × width` values.
public func gaussianBlur(_ plane: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                         height: Int, width: Int, kernel: [Float], border: BorderMode = .reflect) {
    let r = kernel.count / 2
    if r == 0 { return }
    kernel.withUnsafeBufferPointer { kp in
        let k = kp.baseAddress!
        // Horizontal: scratch[y][x] = Σ_j k[j]·plane[y][border(x + j − r)]. Interior columns skip the mapping.
        for y in 0..<height {
            let src = plane + y * width, dst = scratch + y * width
            for x in 0..<width {
                var s: Float = 0
                if x >= r, x + r < width {
                    let base = src + (x - r)
                    for j in 0...(2 * r) { s += k[j] * base[j] }
                } else {
                    for j in 0...(2 * r) { s += k[j] * src[borderIndex(x + j - r, width, border)] }
                }
                dst[x] = s
            }
        }
        // Vertical: plane[y][x] = Σ_j k[j]·scratch[border(y + j − r)][x], accumulated row by row (contiguous).
        for y in 0..<height {
            let dst = plane + y * width
            dst.update(repeating: 0, count: width)
            for j in 0...(2 * r) {
                let src = scratch + borderIndex(y + j - r, height, border) * width
                let w = k[j]
                for x in 0..<width { dst[x] += w * src[x] }
            }
        }
    }
}

/// Array convenience for ``gaussianBlur(_:scratch:height:width:kernel:border:)`` with a given kernel.
public func gaussianBlur(_ plane: [Float], height: Int, width: Int, kernel: [Float],
                         border: BorderMode = .reflect) throws -> [Float] {
    guard height > 0, width > 0, plane.count == height * width else {
        throw PatchGuardError.invalidArgument("Gaussian blur: \(plane.count) values for \(height)×\(width)")
    }
    var out = plane
    var scratch = [Float](repeating: 0, count: plane.count)
    out.withUnsafeMutableBufferPointer { o in
        scratch.withUnsafeMutableBufferPointer { s in
            gaussianBlur(o.baseAddress!, scratch: s.baseAddress!, height: height, width: width, kernel: kernel,
                         border: border)
        }
    }
    return out
}

/// Array convenience: ``gaussianKernel1D(sigma:radius:normalization:)`` then
/// ``gaussianBlur(_:scratch:height:width:kernel:border:)``.
public func gaussianBlur(_ plane: [Float], height: Int, width: Int, sigma: Double, radius: Int,
                         normalization: GaussianKernelNormalization = .double,
                         border: BorderMode = .reflect) throws -> [Float] {
    let kernel = try gaussianKernel1D(sigma: sigma, radius: radius, normalization: normalization)
    return try gaussianBlur(plane, height: height, width: width, kernel: kernel, border: border)
}
