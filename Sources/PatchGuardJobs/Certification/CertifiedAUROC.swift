import PatchGuardCore
import PatchGuardMetrics
import PatchGuardMethod

/// Image AUROC from smoothed scores (``SmoothedScore``), `labels` true = defective.
///
/// Certified AUROC at radius r: every normal image scored by the *upper* end of its certified interval at r and
/// every defective one by the *lower* end, then the usual AUROC (ties count ½). If every interval holds (each with
/// probability ≥ 1 − α), no perturbation with ‖δ‖₂ ≤ r per image can bring the smoothed AUROC below it. It never
/// rises with r (the ends move outwards, so a pair can only go from won to tied to lost), and at r = 0 it is the
/// AUROC of the confidence bounds themselves, at most the point-estimate ``smoothedAUROC(_:labels:)`` up to
/// estimation noise.
public enum CertifiedAUROC {
    public static func auroc(_ scores: [SmoothedScore], labels: [Bool], radius: Double) throws -> Double {
        precondition(scores.count == labels.count, "one label per score")
        let worst = zip(scores, labels).map { s, defective -> Double in
            let c = s.certified(radius: radius)
            return defective ? c.lower : c.upper
        }
        return try BinaryAUROC.auroc(scores: worst, labels: labels)
    }

    /// The AUROC of the point estimates of g(x) (the smoothed detector, clean).
    public static func smoothedAUROC(_ scores: [SmoothedScore], labels: [Bool]) throws -> Double {
        try BinaryAUROC.auroc(scores: scores.map(\.estimate), labels: labels)
    }
}
