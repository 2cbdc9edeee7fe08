import PatchGuardCore

/// Streaming binary AUROC with its ROC curve and F1-max, for image-level scores (Double precision, any real range).
///
/// ```swift
/// var metric = ImageAUROC()
/// for batch in test { try metric.update(scores: batch.scores, labels: batch.isAnomalous) }
/// let r = try metric.compute()          // r.auroc, r.roc.fpr / r.roc.tpr, r.f1Max.f1
/// ```
///
/// Exact: `AUC = (1/(P·N)) Σ_{i∈pos} Σ_{j∈neg} [sᵢ > sⱼ] + ½[sᵢ = sⱼ]` (Mann–Whitney U with average ranks), computed
/// in O(n log n) by one sort and a sweep over the distinct scores (see `BinaryCurve.swift`). The result depends
/// only on the order of the scores, so it is invariant under any strictly increasing transform. Label `true` (or
/// `1`) is the positive, anomalous class; a higher score means more anomalous.
///
/// Memory: one Double per sample. Pixel-scale data should use ``PixelAUROC`` (4 bytes per pixel).
public struct BinaryAUROC: Sendable {
    var positives: [Double] = []
    var negatives: [Double] = []

    public init() {}

    /// Number of samples seen so far.
    public var count: Int { positives.count + negatives.count }

    /// Adds a batch. Throws on a length mismatch or a NaN score.
    public mutating func update(scores: [Double], labels: [Bool]) throws {
        guard scores.count == labels.count else {
            throw PatchGuardError.invalidArgument("AUROC update: \(scores.count) scores, \(labels.count) labels")
        }
        for (s, l) in zip(scores, labels) {
            guard !s.isNaN else { throw PatchGuardError.numeric("AUROC update: NaN score") }
            if l { positives.append(s) } else { negatives.append(s) }
        }
    }

    /// Adds a batch of Float scores.
    public mutating func update(scores: [Float], labels: [Bool]) throws {
        try update(scores: scores.map(Double.init), labels: labels)
    }

    /// Adds a batch with integer labels, which must be 0 (normal) or 1 (anomalous).
    public mutating func update(scores: [Double], labels: [Int]) throws {
        var flags = [Bool]()
        flags.reserveCapacity(labels.count)
        for l in labels {
            guard l == 0 || l == 1 else {
                throw PatchGuardError.invalidArgument("AUROC update: label \(l) is neither 0 nor 1")
            }
            flags.append(l == 1)
        }
        try update(scores: scores, labels: flags)
    }

    /// The exact AUROC, the ROC curve (downsampled so that kept points are at least `1/curveResolution` apart in
    /// FPR or TPR; the AUROC uses the full curve) and F1-max.
    ///
    /// Throws ``PatchGuardError/invalidArgument(_:)`` when only one class was seen (the AUROC is undefined).
    public func compute(curveResolution: Int = 500) throws -> BinaryCurveResult {
        try requireBothClasses(positives: positives.count, negatives: negatives.count, what: "AUROC")
        try requireCurveResolution(curveResolution)
        let p = positives.sorted(), n = negatives.sorted()
        var acc = CurveAccumulator(positives: p.count, negatives: n.count, resolution: curveResolution)
        p.withUnsafeBufferPointer { pp in
            n.withUnsafeBufferPointer { nn in
                sweepSorted(positives: pp, negatives: nn, into: &acc, threshold: { $0 })
            }
        }
        return acc.finish()
    }

    /// One-shot convenience: the exact AUROC of `scores` against `labels`.
    public static func auroc(scores: [Double], labels: [Bool]) throws -> Double {
        var m = BinaryAUROC()
        try m.update(scores: scores, labels: labels)
        return try m.compute().auroc
    }
}

/// Image-level anomaly detection AUROC (the paper's "AD"): one score per image, label = image is anomalous.
public typealias ImageAUROC = BinaryAUROC
