import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

// From an image-sized Grad-CAM map to a binary foreground mask (DESIGN.md §2 "Foreground masks").
//
//   map (H, W) ──min–max──▶ [0, 1] ──threshold (Otsu | quantile)──▶ binary
//              ──drop components < min_component──▶ largest component? ──dilate r──▶ mask (1, H, W)
//
// Everything here is deterministic (no random choice, ties broken by index) and runs on Float maps; the result is
// never empty: an empty mask becomes the whole image and the caller gets a warning to log.

/// `(v − min) / (max − min)` over all values; `range = max − min`. A constant (or non-finite) map gives all
/// zeros and `range = 0`. Non-finite values count as the minimum. The minimum maps to exactly 0, the maximum to 1.
public func minMaxNormalized(_ values: [Float]) -> (values: [Float], range: Float) {
    var lo = Float.infinity, hi = -Float.infinity
    for v in values where v.isFinite { lo = min(lo, v); hi = max(hi, v) }
    let range = hi - lo
    guard range.isFinite, range > 0 else { return ([Float](repeating: 0, count: values.count), 0) }
    // Division (not multiplication by 1/range) keeps the endpoints exact: the maximum maps to exactly 1.
    return (values.map { $0.isFinite ? min(1, max(0, ($0 - lo) / range)) : 0 }, range)
}

/// The 8-bit level of a value in [0, 1]: `round(255·v)` clamped to 0…255 (what `ImageIO.writePNG` stores).
@inlinable
public func level8(_ v: Float) -> Int {
    Int(min(255, max(0, (v * 255).rounded())))
}

/// Otsu's threshold of a 256-bin histogram (OpenCV's `THRESH_OTSU` on 8-bit images).
///
/// For each `t` in 0…255 with both classes non-empty: `q₁ = Σ_{i≤t} pᵢ`, `q₂ = 1 − q₁`,
/// `μ₁ = Σ_{i≤t} i·pᵢ / q₁`, `μ₂ = Σ_{i>t} i·pᵢ / q₂`, between-class variance `σ²_B(t) = q₁·q₂·(μ₁ − μ₂)²`.
/// Returns the smallest `t` maximising `σ²_B` — foreground is `level > t` — or nil when every count sits in one
/// bin (no split exists).
public func otsuThreshold(histogram: [Int]) -> Int? {
    precondition(histogram.count == 256, "Otsu: histogram needs 256 bins, got \(histogram.count)")
    let total = histogram.reduce(0, +)
    guard total > 0 else { return nil }
    var sumTotal = 0.0
    for i in 0..<256 { sumTotal += Double(i) * Double(histogram[i]) }
    let n = Double(total)
    var n1 = 0, sum1 = 0.0
    var best: Int? = nil, bestSigma = -1.0
    for t in 0..<255 {
        n1 += histogram[t]
        sum1 += Double(t) * Double(histogram[t])
        guard n1 > 0, n1 < total else { continue }        // both classes non-empty
        let q1 = Double(n1) / n, q2 = 1 - q1
        let mu1 = sum1 / Double(n1), mu2 = (sumTotal - sum1) / Double(total - n1)
        let sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
        if sigma > bestSigma { bestSigma = sigma; best = t }
    }
    return best
}

/// Otsu's threshold of values in [0, 1], quantised with ``level8(_:)``: pixels with `level8(v) > t` are foreground.
public func otsuThreshold(levels values: [Float]) -> Int? {
    var histogram = [Int](repeating: 0, count: 256)
    for v in values { histogram[level8(v)] += 1 }
    return otsuThreshold(histogram: histogram)
}

/// The `q`-quantile of `values` with linear interpolation between order statistics (numpy's default):
/// position `q·(n − 1)` in the sorted values.
public func quantile(_ values: [Float], _ q: Double) throws -> Float {
    guard !values.isEmpty, q.isFinite, q >= 0, q <= 1 else {
        throw PatchGuardError.invalidArgument("quantile \(q) of \(values.count) values")
    }
    let s = values.sorted()
    let pos = q * Double(s.count - 1)
    let lo = Int(pos.rounded(.down)), hi = min(lo + 1, s.count - 1)
    let f = Float(pos - Double(lo))
    return s[lo] + f * (s[hi] - s[lo])
}

/// Removes 8-connected components with fewer than `minPixels` pixels.
public func removingSmallComponents(_ mask: BinaryMask, minPixels: Int) throws -> BinaryMask {
    guard minPixels > 1 else { return mask }
    let (labels, count) = try connectedComponents(mask: mask.bits, width: mask.width, height: mask.height)
    guard count > 0 else { return mask }
    var sizes = [Int](repeating: 0, count: count + 1)
    for l in labels { sizes[Int(l)] += 1 }
    return BinaryMask(width: mask.width, height: mask.height,
                      bits: labels.map { $0 != 0 && sizes[Int($0)] >= minPixels ? 1 : 0 })
}

/// Keeps the largest 8-connected component (ties: the one whose first pixel comes first in raster order).
/// An empty mask stays empty.
public func keepingLargestComponent(_ mask: BinaryMask) throws -> BinaryMask {
    let (labels, count) = try connectedComponents(mask: mask.bits, width: mask.width, height: mask.height)
    guard count > 1 else { return mask }
    var sizes = [Int](repeating: 0, count: count + 1)
    for l in labels { sizes[Int(l)] += 1 }
    var best = 1
    for l in 2...count where sizes[l] > sizes[best] { best = l }
    return BinaryMask(width: mask.width, height: mask.height, bits: labels.map { Int($0) == best ? 1 : 0 })
}

/// A foreground mask and how it was made.
public struct ForegroundMaskResult: Sendable, Equatable {
    /// 1 × H × W, values exactly 0 or 1, never all zero.
    public var mask: Image
    /// The min–max normalised map (H × W, row-major) the threshold was applied to.
    public var normalizedMap: [Float]
    /// The threshold on the normalised map: foreground is `value > threshold` (Otsu: `t/255`, with the value
    /// quantised to 8 bits first). `nil` when the map was constant.
    public var threshold: Float?
    /// Set when the mask fell back to the whole image (constant map, or nothing survived the post-processing):
    /// a line for the caller to log.
    public var warning: String?

    public var isFallback: Bool { warning != nil }
}

/// Binary foreground mask of an image-sized Grad-CAM map (`height × width`, row-major, any real range).
///
/// Steps: min–max normalisation over the image; threshold by `options.threshold` (``ThresholdRule/otsu``:
/// ``otsuThreshold(levels:)``; ``ThresholdRule/quantile(_:)``: `value > quantile(values, q)`); drop components
/// smaller than `options.minComponent` pixels; keep the largest component when `options.largestComponent`;
/// square dilation by `options.dilation` (``BinaryMask/dilated(radius:)``). An empty result (a constant map, or
/// everything removed) becomes the whole image, with ``ForegroundMaskResult/warning`` saying why.
public func foregroundMask(map: [Float], width: Int, height: Int,
                           options: ForegroundMaskOptions = ForegroundMaskOptions()) throws -> ForegroundMaskResult {
    guard width > 0, height > 0, map.count == width * height else {
        throw PatchGuardError.invalidArgument("foreground mask: \(map.count) values for \(height)×\(width)")
    }
    guard options.dilation >= 0, options.minComponent >= 0 else {
        throw PatchGuardError.invalidArgument(
            "foreground mask: dilation \(options.dilation) and min_component \(options.minComponent) must be ≥ 0")
    }
    let (normalized, range) = minMaxNormalized(map)
    func fallback(_ why: String, threshold: Float?) -> ForegroundMaskResult {
        ForegroundMaskResult(mask: Image(width: width, height: height, channels: 1, value: 1),
                             normalizedMap: normalized, threshold: threshold,
                             warning: "foreground mask: \(why); using the whole image")
    }
    guard range > 0 else { return fallback("the Grad-CAM map is constant", threshold: nil) }

    var bits: [UInt8]
    let threshold: Float
    switch options.threshold {
    case .otsu:
        guard let t = otsuThreshold(levels: normalized) else {
            return fallback("Otsu found no split of the Grad-CAM map", threshold: nil)
        }
        threshold = Float(t) / 255
        bits = normalized.map { level8($0) > t ? 1 : 0 }
    case let .quantile(q):
        guard q.isFinite, q >= 0, q < 1 else {
            throw PatchGuardError.invalidArgument("foreground mask: quantile \(q) is not in [0, 1)")
        }
        threshold = try quantile(normalized, q)
        bits = normalized.map { $0 > threshold ? 1 : 0 }
    }
    var mask = BinaryMask(width: width, height: height, bits: bits)
    if mask.isEmpty { return fallback("no pixel is above the threshold \(threshold)", threshold: threshold) }
    mask = try removingSmallComponents(mask, minPixels: options.minComponent)
    if mask.isEmpty {
        return fallback("every component is smaller than min_component = \(options.minComponent) pixels",
                        threshold: threshold)
    }
    if options.largestComponent { mask = try keepingLargestComponent(mask) }
    mask = mask.dilated(radius: options.dilation)
    return ForegroundMaskResult(mask: mask.image, normalizedMap: normalized, threshold: threshold, warning: nil)
}

/// Intersection over union of two masks of the same size (values > 0.5 are foreground); 1 when both are empty.
public func maskIoU(_ a: Image, _ b: Image) throws -> Double {
    guard a.width == b.width, a.height == b.height, a.channels == 1, b.channels == 1 else {
        throw PatchGuardError.invalidArgument(
            "IoU: masks \(a.channels)×\(a.height)×\(a.width) and \(b.channels)×\(b.height)×\(b.width)")
    }
    var inter = 0, union = 0
    for i in 0..<a.pixels.count {
        let x = a.pixels[i] > 0.5, y = b.pixels[i] > 0.5
        if x && y { inter += 1 }
        if x || y { union += 1 }
    }
    return union == 0 ? 1 : Double(inter) / Double(union)
}

/// The fraction of a mask's pixels that are foreground (> 0.5).
public func foregroundFraction(_ mask: Image) -> Double {
    Double(mask.pixels.reduce(0) { $0 + ($1 > 0.5 ? 1 : 0) }) / Double(max(1, mask.pixels.count))
}
