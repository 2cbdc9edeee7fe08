import PatchGuardCore

// Shared machinery of the threshold-sweep metrics (AUROC, ROC curve, F1-max, AUPRO).
//
// Every metric here is computed the same way: sort the scores once (O(n log n), or O(n) radix for pixels), then walk
// the *unique* scores from the highest down. At threshold t a sample is predicted anomalous when `score ≥ t`, so each
// group of equal scores enters the positive prediction at once; counts are integers, so the curves are exact.
//
// AUROC as the trapezoidal area under that exact ROC curve equals the Mann–Whitney statistic with average ranks for
// ties: `AUC = P(s⁺ > s⁻) + ½·P(s⁺ = s⁻)`. A group adding `ΔFP` negatives and `ΔTP` positives on top of `TP` adds the
// trapezoid `ΔFP·(2·TP + ΔTP) / (2·P·N)`, which is accumulated in integers and divided once at the end.

/// A receiver operating characteristic curve, from `(0, 0)` (threshold `+∞`) to `(1, 1)` (lowest score), in
/// order of decreasing threshold.
public struct ROCCurve: Sendable, Equatable {
    /// False-positive rate `FP / N` at each point.
    public var fpr: [Double]
    /// True-positive rate `TP / P` at each point.
    public var tpr: [Double]
    /// The threshold of each point (`score ≥ threshold` is predicted positive); the first is `+∞`.
    public var thresholds: [Double]
}

/// The best F1 score over all thresholds.
public struct F1Max: Sendable, Equatable {
    /// `max_t F1(t)`, `F1 = 2·TP / (2·TP + FP + FN) = 2·P·R / (P + R)`.
    public var f1: Double
    /// The highest threshold reaching it (`score ≥ threshold` predicted positive).
    public var threshold: Double
    public var precision: Double
    public var recall: Double
}

/// What a binary threshold sweep yields: exact AUROC, a plotting-size ROC curve and F1-max.
public struct BinaryCurveResult: Sendable, Equatable {
    /// Exact area under the ROC curve in [0, 1]; ties count ½.
    public var auroc: Double
    /// The ROC curve, downsampled for plotting (see ``BinaryAUROC/compute(curveResolution:)``).
    public var roc: ROCCurve
    public var f1Max: F1Max
    /// Number of positive (anomalous) and negative (normal) samples.
    public var positives: Int
    public var negatives: Int
    /// Number of distinct scores, i.e. of points on the full (not downsampled) ROC curve minus one.
    public var distinctScores: Int
}

/// Consumes groups of equal scores from the highest down and accumulates AUROC, F1-max and a downsampled ROC.
///
/// Downsampling keeps `(0, 0)`, `(1, 1)` and every point that moved at least `1/resolution` in FPR or TPR from the
/// last kept point (so at most about `2·resolution + 2` points, and no corner is displaced by more than
/// `1/resolution`). The AUROC is computed on the full curve, never on the downsampled one.
struct CurveAccumulator {
    let positives: Int, negatives: Int
    let step: Double
    var tp = 0, fp = 0
    /// `2·P·N·AUC`, exact in integers.
    var area2: Int64 = 0
    var groups = 0
    var fpr: [Double] = [0], tpr: [Double] = [0], thresholds: [Double] = [.infinity]
    var pendingFPR = 0.0, pendingTPR = 0.0, pendingThreshold = 0.0, hasPending = false
    var best = F1Max(f1: 0, threshold: .infinity, precision: 0, recall: 0)

    init(positives: Int, negatives: Int, resolution: Int) {
        self.positives = positives; self.negatives = negatives
        step = 1 / Double(max(1, resolution))
    }

    /// Adds the group of samples whose score equals `threshold`: `dTP` positives and `dFP` negatives.
    mutating func add(threshold: Double, dTP: Int, dFP: Int) {
        area2 += Int64(dFP) * Int64(2 * tp + dTP)
        tp += dTP; fp += dFP; groups += 1
        if tp > 0 {
            let f1 = 2 * Double(tp) / Double(tp + fp + positives)
            if f1 > best.f1 {
                best = F1Max(f1: f1, threshold: threshold, precision: Double(tp) / Double(tp + fp),
                             recall: Double(tp) / Double(positives))
            }
        }
        let x = Double(fp) / Double(negatives), y = Double(tp) / Double(positives)
        if let lx = fpr.last, let ly = tpr.last, max(x - lx, y - ly) >= step {
            fpr.append(x); tpr.append(y); thresholds.append(threshold); hasPending = false
        } else {
            pendingFPR = x; pendingTPR = y; pendingThreshold = threshold; hasPending = true
        }
    }

    func finish() -> BinaryCurveResult {
        var roc = ROCCurve(fpr: fpr, tpr: tpr, thresholds: thresholds)
        if hasPending {
            roc.fpr.append(pendingFPR); roc.tpr.append(pendingTPR); roc.thresholds.append(pendingThreshold)
        }
        let auc = Double(area2) / (2 * Double(positives) * Double(negatives))
        return BinaryCurveResult(auroc: auc, roc: roc, f1Max: best, positives: positives, negatives: negatives,
                                 distinctScores: groups)
    }
}

/// Walks two ascending arrays (positive and negative scores) from the top, one group of equal keys at a time.
@inline(__always)
func sweepSorted<K: Comparable>(positives: UnsafeBufferPointer<K>, negatives: UnsafeBufferPointer<K>,
                                into acc: inout CurveAccumulator, threshold: (K) -> Double) {
    var i = positives.count - 1, j = negatives.count - 1
    while i >= 0 || j >= 0 {
        let v: K
        if i < 0 { v = negatives[j] } else if j < 0 { v = positives[i] } else { v = max(positives[i], negatives[j]) }
        var dTP = 0, dFP = 0
        while i >= 0, positives[i] == v { dTP += 1; i -= 1 }
        while j >= 0, negatives[j] == v { dFP += 1; j -= 1 }
        acc.add(threshold: threshold(v), dTP: dTP, dFP: dFP)
    }
}

func requireBothClasses(positives: Int, negatives: Int, what: String) throws {
    guard positives > 0, negatives > 0 else {
        throw PatchGuardError.invalidArgument(
            "\(what) needs both classes: got \(positives) anomalous and \(negatives) normal samples")
    }
}

func requireCurveResolution(_ r: Int) throws {
    guard r >= 1 else { throw PatchGuardError.invalidArgument("curve resolution must be ≥ 1, got \(r)") }
}

// MARK: - Order-preserving keys and radix sort (pixel-scale data)

/// Maps a Float to a UInt32 whose unsigned order is the Float order (`-0` is folded onto `+0`; NaN is rejected by
/// callers). `Float.nan` never reaches here.
@inline(__always)
public func orderedKey(_ x: Float) -> UInt32 {
    let b = (x + 0).bitPattern  // -0 + 0 = +0 in round-to-nearest
    return b & 0x8000_0000 != 0 ? ~b : b | 0x8000_0000
}

/// Inverse of ``orderedKey(_:)``.
@inline(__always)
public func floatFromKey(_ k: UInt32) -> Float {
    Float(bitPattern: k & 0x8000_0000 != 0 ? k & 0x7FFF_FFFF : ~k)
}

/// Sorts `a` ascending by the 32 key bits starting at bit `shift` (LSD radix, two 16-bit passes; stable, so equal
/// keys keep their order). `temp` must hold `a.count` elements. Small inputs use the standard library sort of the
/// whole value, which orders by those bits too as long as no bits lie above `shift + 32`.
public func radixSort<T: FixedWidthInteger & UnsignedInteger>(_ a: UnsafeMutableBufferPointer<T>,
                                                      temp: UnsafeMutableBufferPointer<T>, shift: Int) {
    let n = a.count
    precondition(temp.count >= n && shift + 32 == T.bitWidth, "radixSort: bad temp or shift")
    if n < 1 << 12 {
        var view = a  // the buffer is a reference to the storage: sorting the copy sorts `a`
        view.sort()
        return
    }
    var src = a.baseAddress!, dst = temp.baseAddress!
    var counts = [Int](repeating: 0, count: 1 << 16)
    var inTemp = false
    for pass in 0..<2 {
        let s = shift + 16 * pass
        counts.withUnsafeMutableBufferPointer { c in
            c.update(repeating: 0)
            for i in 0..<n { c[Int(truncatingIfNeeded: (src[i] >> s) & 0xFFFF)] += 1 }
            // All keys share this digit: the pass would be a copy.
            if c[Int(truncatingIfNeeded: (src[0] >> s) & 0xFFFF)] == n { return }
            var total = 0
            for d in 0..<(1 << 16) { let k = c[d]; c[d] = total; total += k }
            for i in 0..<n {
                let d = Int(truncatingIfNeeded: (src[i] >> s) & 0xFFFF)
                dst[c[d]] = src[i]; c[d] += 1
            }
            swap(&src, &dst); inTemp.toggle()
        }
    }
    if inTemp { a.baseAddress!.update(from: temp.baseAddress!, count: n) }
}
