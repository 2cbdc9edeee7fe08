import PatchGuardCore

/// Streaming pixel-level AUROC (the paper's "AL"), ROC curve and F1-max over all pixels of all test images.
///
/// Same exact algorithm as ``BinaryAUROC`` (Mann–Whitney, ties ½), at pixel scale: each pixel's Float score is stored
/// as a 4-byte order-preserving key in one of two arrays, by label, so the label costs no memory at all
/// (4 bytes per pixel: 83 MVTec test images at 224² ≈ 4.2 M pixels ≈ 17 MB). ``compute(curveResolution:)`` sorts
/// both arrays in place with an O(n) radix sort (plus a temporary of the larger one) and sweeps them once.
///
/// When AUPRO is wanted too, use ``PixelMetrics``, which computes pixel AUROC, F1-max and AUPRO from one sort.
public struct PixelAUROC: Sendable {
    var positiveKeys: [UInt32] = []
    var negativeKeys: [UInt32] = []
    var isSorted = true

    public init() {}

    /// Number of pixels seen so far.
    public var count: Int { positiveKeys.count + negativeKeys.count }

    /// Adds pixels: `mask[i] != 0` marks pixel `i` anomalous (PNG masks are 0/255). Throws on a length mismatch or
    /// a NaN score.
    public mutating func update(scores: UnsafeBufferPointer<Float>, mask: UnsafeBufferPointer<UInt8>) throws {
        guard scores.count == mask.count else {
            throw PatchGuardError.invalidArgument("pixel AUROC update: \(scores.count) scores, \(mask.count) mask values")
        }
        for i in 0..<scores.count where scores[i].isNaN {
            throw PatchGuardError.numeric("pixel AUROC update: NaN score at index \(i)")
        }
        for i in 0..<scores.count {
            if mask[i] != 0 { positiveKeys.append(orderedKey(scores[i])) } else { negativeKeys.append(orderedKey(scores[i])) }
        }
        isSorted = false
    }

    public mutating func update(scores: [Float], mask: [UInt8]) throws {
        try scores.withUnsafeBufferPointer { s in try mask.withUnsafeBufferPointer { m in try update(scores: s, mask: m) } }
    }

    public mutating func update(scores: [Float], mask: [Bool]) throws {
        try update(scores: scores, mask: mask.map { $0 ? 1 : 0 })
    }

    /// Exact pixel AUROC, downsampled ROC curve and pixel F1-max. Sorts the stored keys in place (hence `mutating`);
    /// further updates are allowed. Throws when only one class was seen.
    public mutating func compute(curveResolution: Int = 500) throws -> BinaryCurveResult {
        try requireBothClasses(positives: positiveKeys.count, negatives: negativeKeys.count, what: "pixel AUROC")
        try requireCurveResolution(curveResolution)
        if !isSorted {
            var temp = [UInt32](repeating: 0, count: max(positiveKeys.count, negativeKeys.count))
            temp.withUnsafeMutableBufferPointer { t in
                positiveKeys.withUnsafeMutableBufferPointer { radixSort($0, temp: t, shift: 0) }
                negativeKeys.withUnsafeMutableBufferPointer { radixSort($0, temp: t, shift: 0) }
            }
            isSorted = true
        }
        var acc = CurveAccumulator(positives: positiveKeys.count, negatives: negativeKeys.count,
                                   resolution: curveResolution)
        positiveKeys.withUnsafeBufferPointer { p in
            negativeKeys.withUnsafeBufferPointer { n in
                sweepSorted(positives: p, negatives: n, into: &acc, threshold: { Double(floatFromKey($0)) })
            }
        }
        return acc.finish()
    }
}

