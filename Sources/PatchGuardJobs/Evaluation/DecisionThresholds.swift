import Foundation
import PatchGuardCore
import PatchGuardMethod

// `metrics.json` → "thresholds": the image-score decision thresholds next to the AUROCs.
//
//   "thresholds": {
//     "stored_threshold": 1.23 | null,        the checkpoint's calibrated τ (ScoreCalibration), null without one
//     "stored_threshold_fpr": 0.01 | null,    its FPR target on the validation normals (train.threshold_fpr)
//     "validation_images": 4 | null,          how many validation normals it was fitted on
//     "rows": [{"run": "clean" | attack label,
//               "f1_max_threshold": 0.87 | null,   this test pass's F1-max threshold (score ≥ it: anomalous)
//               "fpr_at_stored": 0.1 | null,       share of normal test images with score > τ
//               "tpr_at_stored": 0.8 | null}]      share of defective test images with score > τ
//   }
//
// A rate is null when the test set lacks that class or there is no stored threshold; the F1-max threshold is null
// when the test set lacks a class.

/// One pass's thresholds (clean or one attack).
public struct ThresholdRow: Codable, Equatable, Sendable {
    public var run: String
    public var f1MaxThreshold: Double?
    public var fprAtStored: Double?
    public var tprAtStored: Double?

    public init(run: String, f1MaxThreshold: Double?, fprAtStored: Double?, tprAtStored: Double?) {
        self.run = run; self.f1MaxThreshold = f1MaxThreshold; self.fprAtStored = fprAtStored
        self.tprAtStored = tprAtStored
    }

    enum CodingKeys: String, CodingKey {
        case run, f1MaxThreshold = "f1_max_threshold", fprAtStored = "fpr_at_stored", tprAtStored = "tpr_at_stored"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(run, forKey: .run)
        try c.encode(f1MaxThreshold, forKey: .f1MaxThreshold)
        try c.encode(fprAtStored, forKey: .fprAtStored)
        try c.encode(tprAtStored, forKey: .tprAtStored)
    }
}

/// The stored threshold (when the checkpoint has one) against the test set, and the test set's own F1-max
/// threshold for comparison (see the file header).
public struct DecisionThresholds: Codable, Equatable, Sendable {
    public var storedThreshold: Double?
    public var storedThresholdFPR: Double?
    public var validationImages: Int?
    /// Clean first, then one row per attack in order.
    public var rows: [ThresholdRow]

    enum CodingKeys: String, CodingKey {
        case storedThreshold = "stored_threshold", storedThresholdFPR = "stored_threshold_fpr"
        case validationImages = "validation_images", rows
    }

    public init(storedThreshold: Double?, storedThresholdFPR: Double?, validationImages: Int?, rows: [ThresholdRow]) {
        self.storedThreshold = storedThreshold; self.storedThresholdFPR = storedThresholdFPR
        self.validationImages = validationImages; self.rows = rows
    }

    /// From an evaluation's per-image scores and the checkpoint's calibration (nil: none stored).
    public init(result: EvaluationResult, calibration: ScoreCalibration?) {
        let tau = calibration?.threshold
        func rates(_ scores: [Float]) -> (fpr: Double?, tpr: Double?) {
            guard let tau else { return (nil, nil) }
            var fp = 0, normals = 0, tp = 0, defective = 0
            for (image, s) in zip(result.images, scores) {
                if image.label == 1 { defective += 1; if Double(s) > tau { tp += 1 } }
                else { normals += 1; if Double(s) > tau { fp += 1 } }
            }
            return (normals > 0 ? Double(fp) / Double(normals) : nil,
                    defective > 0 ? Double(tp) / Double(defective) : nil)
        }
        func row(_ pass: PassCurves, _ scores: [Float]) -> ThresholdRow {
            let r = rates(scores)
            let f1 = pass.image?.f1Max.threshold
            return ThresholdRow(run: pass.name, f1MaxThreshold: f1.flatMap { $0.isFinite ? $0 : nil },
                                fprAtStored: r.fpr, tprAtStored: r.tpr)
        }
        var rows = [row(result.clean, result.images.map(\.cleanScore))]
        for (a, pass) in result.attacks.enumerated() {
            rows.append(row(pass, result.images.map { a < $0.attacked.count ? $0.attacked[a].score : .nan }))
        }
        self.init(storedThreshold: tau, storedThresholdFPR: calibration?.thresholdFPR,
                  validationImages: calibration?.validationImages, rows: rows)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(storedThreshold, forKey: .storedThreshold)
        try c.encode(storedThresholdFPR, forKey: .storedThresholdFPR)
        try c.encode(validationImages, forKey: .validationImages)
        try c.encode(rows, forKey: .rows)
    }

    /// Lines for logs and `metrics.md`: the stored threshold and, per pass, FPR/TPR at it and the F1-max threshold.
    public func lines() -> [String] {
        func f(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "n/a" }
        func p(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "n/a" }
        var out = [String]()
        if let t = storedThreshold {
            out.append("stored threshold \(f(t)) (FPR target \(storedThresholdFPR.map(ScoreCalibration.percent) ?? "n/a") on "
                       + "\(validationImages ?? 0) validation normals; anomalous = score > threshold)")
        } else {
            out.append("no stored threshold in the checkpoint (trained before calibration, with train.validation_fraction = 0, or a diffusion model)")
        }
        for r in rows {
            var s = "\(r.run): test F1-max threshold \(f(r.f1MaxThreshold))"
            if storedThreshold != nil { s += ", at the stored threshold FPR \(p(r.fprAtStored)), TPR \(p(r.tprAtStored))" }
            out.append(s)
        }
        return out
    }
}
