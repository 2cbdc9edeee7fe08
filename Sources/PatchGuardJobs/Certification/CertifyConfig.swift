import PatchGuardCore
import PatchGuardMethod

/// The job config's `certify` section (`patchguard certify`; README, "Certify"):
///
///     "certify": {"sigmas": [0.12, 0.25], "n0": 64, "samples": 500, "alpha": 0.001,
///                 "radii": [0.05, 0.1, 0.2, 0.5], "batch_size": 32, "max_images": 0,
///                 "squash": "sigmoid", "squash_center": 0, "squash_scale": 1, "squash_fit": "fixed",
///                 "squash_fit_images": 32, "map_cells": true}
///
/// Each image is smoothed at every σ: `n0` pilot draws choose the interval, `samples` draws estimate g(x) with
/// confidence 1 − `alpha` (``RandomizedSmoothing``), and the certified AUROC is reported at every radius of
/// `radii` (L2, in [0,1] pixel units over the whole 3×S×S image; r = 0 is always added). `squash` maps the image
/// score to [0, 1]: `h = F((s − squash_center)/squash_scale)`, F the logistic (`"sigmoid"`) or Φ (`"probit"`).
/// `squash_fit` = `"train_normals"` replaces the fixed c and t, per σ, by the mean and standard deviation of the
/// image scores of `squash_fit_images` training normals (evenly spaced, never test images) each with one draw of
/// the same N(0, σ²I) noise (``Certifier/fitSquash(detector:normals:sigmas:kind:seed:)``): for a detector whose
/// scores are not logits (the diffusion detector's reconstruction errors), so that h spreads over [0, 1] where the
/// noisy scores lie. `map_cells` also certifies every cell of the detector's native anomaly map (the same squash), for the certified
/// pixel AUROC at map resolution.
public struct CertifyConfig: Codable, Equatable, Sendable {
    public var sigmas: [Double] = [0.12, 0.25]
    public var n0 = 64
    public var samples = 500
    public var alpha = 0.001
    public var radii: [Double] = [0.05, 0.1, 0.2, 0.5]
    /// Noisy copies per detector call.
    public var batchSize = 32
    /// Certify at most this many test images, evenly spaced (0 = all).
    public var maxImages = 0
    public var squash: ScoreSquash = .sigmoid
    public var squashCenter = 0.0
    public var squashScale = 1.0
    /// Also certify every cell of the detector's native map (PatchGuard: the patch logits), each at α/M
    /// (Bonferroni over the M cells of an image): the certified pixel AUROC at map resolution.
    public var mapCells = true
    /// Where the squash's center and scale come from.
    public var squashFit: SquashFit = .fixed
    /// Training normals used by `squash_fit = "train_normals"`.
    public var squashFitImages = 32

    public init() {}

    enum CodingKeys: String, CodingKey {
        case sigmas, n0, samples, alpha, radii, batchSize = "batch_size", maxImages = "max_images"
        case squash, squashCenter = "squash_center", squashScale = "squash_scale", mapCells = "map_cells"
        case squashFit = "squash_fit", squashFitImages = "squash_fit_images"
    }

    public var squashFunction: Squash { Squash(kind: squash, center: squashCenter, scale: squashScale) }

    /// The smoothing settings at one σ.
    public func settings(sigma: Double) -> SmoothingSettings {
        SmoothingSettings(sigma: sigma, n0: n0, samples: samples, alpha: alpha, batchSize: batchSize,
                          squash: squashFunction)
    }

    /// The section's checks (from ``JobConfig/validate(source:)``), each naming its key.
    public func problem() -> String? {
        if sigmas.isEmpty { return "certify.sigmas must name at least one σ" }
        for (i, s) in sigmas.enumerated() where !(s.isFinite && s > 0) {
            return "certify.sigmas.\(i) must be a finite number > 0, got \(s)"
        }
        for (i, r) in radii.enumerated() where !(r.isFinite && r >= 0) {
            return "certify.radii.\(i) must be a finite number ≥ 0, got \(r)"
        }
        if squashFitImages < 2 { return "certify.squash_fit_images must be ≥ 2, got \(squashFitImages)" }
        if maxImages < 0 { return "certify.max_images must be ≥ 0 (0 = all), got \(maxImages)" }
        if batchSize > 4096 { return "certify.batch_size must be ≤ 4096, got \(batchSize)" }
        return SmoothingSettings.problem(sharedKey: "certify", n0: n0, samples: samples, alpha: alpha, batchSize: batchSize,
                                         squash: squashFunction)
    }
}

/// `certify.squash_fit`: the squash's c and t as configured (`fixed`) or fitted per σ on noisy training normals.
public enum SquashFit: String, ConfigEnum {
    case fixed
    case trainNormals = "train_normals"
}
