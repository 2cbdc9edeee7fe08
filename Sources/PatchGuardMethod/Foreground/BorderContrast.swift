import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

// Foreground without a classifier: the object is what differs from the image border.
//
// Industrial inspection photos (MVTec AD, MVTec 3D-AD, MPDD…) show one object on a plain, roughly uniform
// background that touches the image border. When no ImageNet classifier is at hand for Grad-CAM, this estimates
// the foreground from that alone:
//
//   image (3, H, W) ──Gaussian blur σ──▶ colour distance to the border's median colour, in units of the border's
//   own spread (c) ─┐
//   luminance ──local standard deviation (window 2r+1)──▶ texture relative to the border's texture (t) ─┴─▶
//   map = max(c, t) ──log1p──▶ Otsu, at least 3 units ──▶ largest component ──▶ closing ──▶ holes filled
//   ──▶ dilation
//
// Both terms are robust z-scores against the border band (median and 1.4826·MAD of the band's values), so a
// noisy background and a dark object in shadow (low colour contrast, strong texture) are both handled. The
// result is deterministic and never empty (the whole image, with a warning, when nothing stands out).

/// Settings of the border-contrast foreground (`foreground.method = "border"`).
public struct BorderContrastOptions: Equatable, Sendable {
    /// Width of the border band, as a fraction of the shorter side (at least 1 pixel).
    public var borderFraction: Double
    /// Blur before the colour distance, in pixels, as a fraction of the shorter side.
    public var blurFraction: Double
    /// Radius of the local-texture window (and of the closing), as a fraction of the shorter side.
    public var windowFraction: Double
    /// Radius in pixels of the square dilation applied last (after Otsu, largest component, closing and hole
    /// filling); 0 = none.
    public var dilation: Int

    public init(borderFraction: Double = 0.05, blurFraction: Double = 0.01, windowFraction: Double = 0.02,
                dilation: Int = 0) {
        self.borderFraction = borderFraction; self.blurFraction = blurFraction
        self.windowFraction = windowFraction; self.dilation = dilation
    }
}

/// Median and robust spread (1.4826·MAD, floored at `floor`) of `values`.
func robustCentreAndSpread(_ values: [Float], floor: Float) -> (median: Float, spread: Float) {
    precondition(!values.isEmpty)
    let s = values.sorted()
    let median = s[s.count / 2]
    let dev = values.map { abs($0 - median) }.sorted()
    return (median, max(floor, 1.4826 * dev[dev.count / 2]))
}

/// The indices of the border band of width `band` of a `height × width` image.
func borderBandIndices(width: Int, height: Int, band: Int) -> [Int] {
    var out: [Int] = []
    for y in 0..<height {
        for x in 0..<width where y < band || y >= height - band || x < band || x >= width - band {
            out.append(y * width + x)
        }
    }
    return out
}

/// Local standard deviation over a `(2r+1)²` box (clamped at the borders), through summed-area tables.
func localStandardDeviation(_ plane: [Float], width: Int, height: Int, radius r: Int) -> [Float] {
    let W = width + 1
    var s1 = [Double](repeating: 0, count: W * (height + 1)), s2 = s1
    for y in 0..<height {
        var row1 = 0.0, row2 = 0.0
        for x in 0..<width {
            let v = Double(plane[y * width + x])
            row1 += v; row2 += v * v
            s1[(y + 1) * W + x + 1] = s1[y * W + x + 1] + row1
            s2[(y + 1) * W + x + 1] = s2[y * W + x + 1] + row2
        }
    }
    var out = [Float](repeating: 0, count: width * height)
    for y in 0..<height {
        let y0 = max(0, y - r), y1 = min(height, y + r + 1)
        for x in 0..<width {
            let x0 = max(0, x - r), x1 = min(width, x + r + 1)
            let n = Double((y1 - y0) * (x1 - x0))
            let a = s1[y1 * W + x1] - s1[y0 * W + x1] - s1[y1 * W + x0] + s1[y0 * W + x0]
            let b = s2[y1 * W + x1] - s2[y0 * W + x1] - s2[y1 * W + x0] + s2[y0 * W + x0]
            out[y * width + x] = Float(max(0, b / n - (a / n) * (a / n)).squareRoot())
        }
    }
    return out
}

/// The border-contrast map of an RGB (or gray) image: `max(c, t)` as described at the top of this file,
/// `height × width` row-major, ≥ 0 (0 = like the border).
public func borderContrastMap(image: Image, options: BorderContrastOptions = BorderContrastOptions()) throws -> [Float] {
    let rgb = image.toRGB()
    let W = rgb.width, H = rgb.height, plane = W * H
    guard W >= 4, H >= 4 else {
        throw PatchGuardError.invalidArgument("border-contrast foreground: image \(H)×\(W) is too small")
    }
    let side = Double(min(W, H))
    let band = max(1, Int((options.borderFraction * side).rounded()))
    let sigma = max(0.5, options.blurFraction * side)
    let window = max(1, Int((options.windowFraction * side).rounded()))
    let border = borderBandIndices(width: W, height: H, band: band)

    // Colour distance of the blurred image to the border's median colour, per channel in units of the border spread.
    var colour = [Float](repeating: 0, count: plane)
    for c in 0..<3 {
        let blurred = try gaussianBlur(Array(rgb.pixels[(c * plane)..<((c + 1) * plane)]), height: H, width: W,
                                       sigma: sigma, radius: gaussianRadius(sigma: sigma))
        let (m, s) = robustCentreAndSpread(border.map { blurred[$0] }, floor: 1.0 / 255)
        for i in 0..<plane { let z = (blurred[i] - m) / s; colour[i] += z * z }
    }
    for i in 0..<plane { colour[i] = colour[i].squareRoot() }
    let (cm, cs) = robustCentreAndSpread(border.map { colour[$0] }, floor: 1e-3)

    // Texture: local standard deviation of the luminance against the border's.
    var luma = [Float](repeating: 0, count: plane)
    for i in 0..<plane {
        luma[i] = 0.299 * rgb.pixels[i] + 0.587 * rgb.pixels[plane + i] + 0.114 * rgb.pixels[2 * plane + i]
    }
    let texture = localStandardDeviation(luma, width: W, height: H, radius: window)
    let (tm, ts) = robustCentreAndSpread(border.map { texture[$0] }, floor: 1.0 / 255)

    return (0..<plane).map { i in max(0, max((colour[i] - cm) / cs, (texture[i] - tm) / ts)) }
}

/// The border-contrast foreground mask of one image (1 × H × W in {0, 1}, never empty; see the top of this file).
///
/// The map is in robust z-units of the border, so the threshold is absolute as well as adaptive: Otsu's
/// threshold on `log1p(map)`, but never below `log1p(minimumContrast)`. An image where nothing stands out from
/// the border by that much (a plain image, a texture) falls back to the whole image with a warning.
public func borderContrastMask(image: Image, options: BorderContrastOptions = BorderContrastOptions(),
                               minimumContrast: Float = 3) throws -> ForegroundMaskResult {
    let map = try borderContrastMap(image: image, options: options).map { log1p($0) }
    let W = image.width, H = image.height
    let hi = map.max() ?? 0
    let floor = log1p(minimumContrast)
    let normalized = hi > 0 ? map.map { $0 / hi } : map
    func fallback(_ why: String) -> ForegroundMaskResult {
        ForegroundMaskResult(mask: Image(width: W, height: H, channels: 1, value: 1), normalizedMap: normalized,
                             threshold: nil, warning: "foreground mask: \(why); using the whole image")
    }
    guard hi > floor else {
        return fallback(String(format: "nothing differs from the image border by more than %.0f robust standard "
                               + "deviations", minimumContrast))
    }
    // Otsu on the map scaled to [0, 1] by its maximum (0 stays 0: the border's own level).
    let otsu = otsuThreshold(levels: normalized).map { Float($0) / 255 * hi } ?? floor
    let threshold = max(otsu, floor)
    var mask = try keepingLargestComponent(BinaryMask(width: W, height: H, bits: map.map { $0 > threshold ? 1 : 0 }))
    let close = max(1, Int((options.windowFraction * Double(min(W, H))).rounded()))
    mask = mask.dilated(radius: close).eroded(radius: close)
    mask = mask.fillingHoles().dilated(radius: options.dilation)
    return ForegroundMaskResult(mask: mask.image, normalizedMap: normalized, threshold: threshold / hi, warning: nil)
}
