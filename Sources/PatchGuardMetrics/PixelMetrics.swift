import PatchGuardCore

/// Per-region overlap (PRO) curve and its normalised area up to an FPR limit.
public struct AUPROResult: Sendable, Equatable {
    /// `(1/L)·∫₀^L PRO(FPR) dFPR` with `L = fprLimit`: in [0, 1], 1 for a perfect localisation.
    public var aupro: Double
    public var fprLimit: Double
    /// The PRO curve on [0, `fprLimit`], from `(0, 0)` to the interpolated point at `fprLimit`, downsampled for
    /// plotting like ``ROCCurve`` (the area uses the full curve).
    public var fpr: [Double]
    public var pro: [Double]
    /// Number of ground-truth regions (connected components over all masks) and of normal pixels.
    public var regions: Int
    public var normalPixels: Int
}

/// Pixel AUROC, pixel F1-max and AUPRO of a test set.
public struct PixelMetricsResult: Sendable, Equatable {
    public var pixel: BinaryCurveResult
    public var aupro: AUPROResult
}

/// Streaming pixel-level metrics from one sort: pixel AUROC / ROC / F1-max (as ``PixelAUROC``) and AUPRO.
///
/// **AUPRO** (MVTec AD, Bergmann et al. 2021; anomalib `AUPRO`): every mask is split into connected regions
/// (8-connectivity, see ``Connectivity``); regions of different images are different regions. At threshold `t`
/// (pixel predicted anomalous when `score ≥ t`):
///
///     PRO(t) = (1/R) Σ_r |{p ∈ r : s_p ≥ t}| / |r|          (mean overlap over all R regions of all images)
///     FPR(t) = |{p normal : s_p ≥ t}| / |{p normal}|        (over the normal pixels of all images)
///
/// The curve is exact: one point per distinct score, from `(0, 0)`, linear between points (the trapezoid rule, as
/// MVTec's `trapezoid` and anomalib's `auc`). Its area over FPR ∈ [0, L] (L = 0.3 by default), with the PRO value
/// at L linearly interpolated between the two points around it, is divided by L. PRO is clipped to 1 against
/// rounding, as MVTec's code does.
///
/// Memory: 8 bytes per pixel (a 32-bit order-preserving score key and a 32-bit region id, 0 = normal) plus, during
/// ``compute(fprLimit:curveResolution:)``, an O(n) radix sort's temporary of the same size.
public struct PixelMetrics: Sendable {
    /// `(orderedKey(score) << 32) | regionID` per pixel; regionID 0 = normal pixel.
    var entries: [UInt64] = []
    /// Pixel count of each region; index 0 is unused.
    var regionSizes: [Int] = [0]
    var isSorted = true
    public let connectivity: Connectivity

    public init(connectivity: Connectivity = .eight) { self.connectivity = connectivity }

    /// Number of pixels seen so far.
    public var count: Int { entries.count }
    /// Number of ground-truth regions seen so far.
    public var regionCount: Int { regionSizes.count - 1 }

    /// Adds one image: `scores` and `mask` are `height × width`, row-major; `mask[i] != 0` marks an anomalous pixel.
    public mutating func update(scores: [Float], mask: [UInt8], width: Int, height: Int) throws {
        guard scores.count == width * height else {
            throw PatchGuardError.invalidArgument("pixel metrics: \(scores.count) scores for \(height)×\(width)")
        }
        if let i = scores.firstIndex(where: { $0.isNaN }) {
            throw PatchGuardError.numeric("pixel metrics: NaN score at index \(i)")
        }
        let (labels, n) = try connectedComponents(mask: mask, width: width, height: height, connectivity: connectivity)
        let base = regionSizes.count - 1
        guard base + n < Int(UInt32.max) else { throw PatchGuardError.invalidArgument("pixel metrics: too many regions") }
        regionSizes.append(contentsOf: repeatElement(0, count: n))
        for i in 0..<scores.count {
            let l = Int(labels[i])
            let id = l == 0 ? 0 : base + l
            if l != 0 { regionSizes[id] += 1 }
            entries.append(UInt64(orderedKey(scores[i])) << 32 | UInt64(id))
        }
        isSorted = false
    }

    public mutating func update(scores: [Float], mask: [Bool], width: Int, height: Int) throws {
        try update(scores: scores, mask: mask.map { $0 ? 1 : 0 }, width: width, height: height)
    }

    /// Pixel AUROC / ROC / F1-max and AUPRO up to `fprLimit`. Sorts the stored pixels in place (hence `mutating`).
    ///
    /// Throws ``PatchGuardError/invalidArgument(_:)`` when there is no anomalous or no normal pixel, or when
    /// `fprLimit` is not in (0, 1].
    public mutating func compute(fprLimit: Double = 0.3, curveResolution: Int = 500) throws -> PixelMetricsResult {
        guard fprLimit > 0, fprLimit <= 1 else {
            throw PatchGuardError.invalidArgument("AUPRO: FPR limit must be in (0, 1], got \(fprLimit)")
        }
        try requireCurveResolution(curveResolution)
        let regions = regionSizes.count - 1
        let positives = regionSizes.reduce(0, +), negatives = entries.count - positives
        try requireBothClasses(positives: positives, negatives: negatives, what: "pixel AUROC / AUPRO")
        if !isSorted {
            var temp = [UInt64](repeating: 0, count: entries.count)
            temp.withUnsafeMutableBufferPointer { t in
                entries.withUnsafeMutableBufferPointer { radixSort($0, temp: t, shift: 32) }
            }
            isSorted = true
        }
        // 1/|r| per region, so a group's PRO increment is a sum of table look-ups.
        let inverseSize = regionSizes.map { $0 > 0 ? 1 / Double($0) : 0 }
        var acc = CurveAccumulator(positives: positives, negatives: negatives, resolution: curveResolution)
        var pro = PROIntegrator(limit: fprLimit, resolution: curveResolution)
        entries.withUnsafeBufferPointer { e in
            inverseSize.withUnsafeBufferPointer { inv in
                var i = e.count - 1
                var fp = 0
                var proSum = 0.0
                while i >= 0 {
                    let key = UInt32(truncatingIfNeeded: e[i] >> 32)
                    var dTP = 0, dFP = 0
                    while i >= 0, UInt32(truncatingIfNeeded: e[i] >> 32) == key {
                        let id = Int(truncatingIfNeeded: e[i] & 0xFFFF_FFFF)
                        if id == 0 { dFP += 1 } else { dTP += 1; proSum += inv[id] }
                        i -= 1
                    }
                    fp += dFP
                    acc.add(threshold: Double(floatFromKey(key)), dTP: dTP, dFP: dFP)
                    pro.add(fpr: Double(fp) / Double(negatives), pro: min(1, proSum / Double(regions)))
                }
            }
        }
        return PixelMetricsResult(pixel: acc.finish(),
                                  aupro: pro.finish(regions: regions, normalPixels: negatives))
    }
}

/// Trapezoidal area under a monotone (FPR, PRO) polyline from (0, 0), cut at `limit` with linear interpolation.
struct PROIntegrator {
    /// FPR limit and the downsampling resolution (kept points move ≥ limit/resolution in FPR or ≥ 1/resolution in PRO).
    let limit: Double, resolution: Double
    var lastFPR = 0.0, lastPRO = 0.0
    var area = 0.0
    var done = false
    var fpr: [Double] = [0], pro: [Double] = [0]

    init(limit: Double, resolution: Int) {
        self.limit = limit
        self.resolution = Double(max(1, resolution))
    }

    mutating func add(fpr x: Double, pro y: Double) {
        guard !done else { return }
        var x = x, y = y
        if x > limit {
            // Interpolate on the segment crossing the limit (x > limit ≥ lastFPR, so the width is positive).
            y = lastPRO + (y - lastPRO) * (limit - lastFPR) / (x - lastFPR)
            x = limit
            done = true
        }
        area += (x - lastFPR) * (lastPRO + y) / 2
        lastFPR = x; lastPRO = y
        if let lx = fpr.last, let ly = pro.last, done || max((x - lx) / limit, y - ly) * resolution >= 1 {
            fpr.append(x); pro.append(y)
        }
    }

    func finish(regions: Int, normalPixels: Int) -> AUPROResult {
        var f = fpr, p = pro
        if f.last != lastFPR || p.last != lastPRO { f.append(lastFPR); p.append(lastPRO) }
        return AUPROResult(aupro: min(1, max(0, area / limit)), fprLimit: limit, fpr: f, pro: p,
                           regions: regions, normalPixels: normalPixels)
    }
}
