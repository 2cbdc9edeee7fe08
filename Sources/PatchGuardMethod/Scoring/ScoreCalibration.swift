import Foundation
import PatchGuardCore

/// The decision threshold and score normalisation that are part of a trained model, fitted on held-back normal
/// training images (`train.validation_fraction`, never trained on) and stored in the checkpoint's metadata
/// (key `calibration`, JSON).
///
/// With the validation normals' image scores sorted, `v₁ ≤ … ≤ vₙ` (the evaluation's image score: the top-k mean
/// of the patch logits, k = `eval.top_k`), and `m = ⌊fpr·n⌋`:
///
///     threshold τ = v₍ₙ₋ₘ₎                       the smallest value that at most m validation normals exceed
///     decision     anomalous ⇔ score > τ          (strictly: a score equal to τ is normal)
///     normalised   u(s) = 1 / (1 + exp(−(s − τ)/σ)) ∈ (0, 1), increasing, u(τ) = ½
///                  σ = the validation scores' standard deviation (population), or 1 when it is 0 or n = 1
///
/// so `u > ½` exactly when the decision is "anomalous". The FPR on the validation normals is
/// `achievedFPR = #{vᵢ > τ}/n ≤ fpr`; with n images only multiples of 1/n are reachable, so a target below 1/n
/// gives τ = vₙ (FPR 0 on the validation normals; expect about 1/(n+1) on new normals).
public struct ScoreCalibration: Codable, Equatable, Sendable {
    /// The metadata key in the checkpoint.
    public static let metadataKey = "calibration"
    public static let format = "patchguard-calibration-v1"

    /// τ (image-score units: patch logits).
    public var threshold: Double
    /// The target false-positive rate (`train.threshold_fpr`).
    public var thresholdFPR: Double
    /// `#{vᵢ > τ}/n` on the validation normals.
    public var achievedFPR: Double
    /// n.
    public var validationImages: Int
    /// k of the top-k mean the scores were computed with (`eval.top_k` at training time).
    public var topK: Int
    /// Statistics of the validation scores.
    public var mean: Double
    public var std: Double
    public var min: Double
    public var max: Double
    /// σ of the normalisation (``std``, or 1 when it is 0).
    public var scale: Double

    enum CodingKeys: String, CodingKey {
        case threshold, thresholdFPR = "threshold_fpr", achievedFPR = "achieved_fpr"
        case validationImages = "validation_images", topK = "top_k", mean, std, min, max, scale
    }

    /// Fits τ, the statistics and σ on `scores` (the validation normals' image scores). Throws on no scores, a
    /// non-finite score or an FPR outside [0, 1).
    public init(validationScores scores: [Double], fpr: Double, topK: Int) throws {
        guard !scores.isEmpty else {
            throw PatchGuardError.invalidArgument("calibration: no validation scores")
        }
        guard fpr.isFinite, fpr >= 0, fpr < 1 else {
            throw PatchGuardError.invalidArgument("calibration: the target FPR must be in [0, 1), got \(fpr)")
        }
        if let bad = scores.first(where: { !$0.isFinite }) {
            throw PatchGuardError.numeric("calibration: a validation image has a non-finite score (\(bad))")
        }
        let sorted = scores.sorted(), n = sorted.count
        let m = Swift.min(n - 1, Int((fpr * Double(n)).rounded(.down)))
        threshold = sorted[n - 1 - m]
        let t = threshold
        achievedFPR = Double(sorted.filter { $0 > t }.count) / Double(n)
        thresholdFPR = fpr
        validationImages = n
        self.topK = topK
        mean = sorted.reduce(0, +) / Double(n)
        let mu = mean
        std = (sorted.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(n)).squareRoot()
        min = sorted[0]; max = sorted[n - 1]
        scale = std > 0 ? std : 1
    }

    /// `u(s)` with this calibration's σ around `threshold` (by default τ; pass the threshold in use when it is
    /// overridden, so that ½ stays the decision boundary).
    public func normalized(_ score: Double, threshold: Double? = nil) -> Double {
        Self.normalized(score, threshold: threshold ?? self.threshold, scale: scale)
    }

    /// `1 / (1 + exp(−(s − τ)/σ))`; σ ≤ 0 or non-finite counts as 1.
    public static func normalized(_ score: Double, threshold: Double, scale: Double) -> Double {
        let s = scale.isFinite && scale > 0 ? scale : 1
        return 1 / (1 + exp(-(score - threshold) / s))
    }

    /// The metadata value (compact, key-sorted JSON).
    public func metadataJSON() throws -> String {
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(self), as: UTF8.self)
    }

    /// The calibration stored in `file`'s metadata, or nil when it has none (a checkpoint from before calibration,
    /// an intermediate epoch's, or one trained with `train.validation_fraction = 0`). A value that does not
    /// decode, or has a non-finite threshold or scale, throws naming the file.
    public static func stored(in file: SafeTensorsFile) throws -> ScoreCalibration? {
        guard let text = file.metadata[metadataKey] else { return nil }
        let c: ScoreCalibration
        do { c = try JSONDecoder().decode(ScoreCalibration.self, from: Data(text.utf8)) } catch {
            throw PatchGuardError.io(path: file.path, reason: "invalid checkpoint: metadata '\(metadataKey)' is not a calibration (\(error))")
        }
        guard c.threshold.isFinite, c.scale.isFinite, c.scale > 0, c.validationImages >= 1 else {
            throw PatchGuardError.io(path: file.path, reason: "invalid checkpoint: metadata '\(metadataKey)' has a non-finite threshold or scale")
        }
        return c
    }

    /// One line for logs: `threshold 1.234 (FPR target 1 %, 0 % on 4 validation normals; mean 0.12, std 0.3)`.
    public var summary: String {
        String(format: "threshold %.4g (FPR target %@, %@ on %d validation normals; scores mean %.4g, std %.3g, max %.4g)",
               threshold, Self.percent(thresholdFPR), Self.percent(achievedFPR), validationImages, mean, std, max)
    }

    /// `0.01` → `"1 %"`, `0.125` → `"12.5 %"`.
    public static func percent(_ v: Double) -> String {
        let p = v * 100
        return (abs(p - p.rounded()) < 1e-9 ? String(Int(p.rounded())) : String(format: "%.3g", p)) + " %"
    }
}
