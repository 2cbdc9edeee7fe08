import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

// What `patchguard evaluate` writes as `metrics.json` (and renders as `metrics.md`):
//
//   {
//     "category": "bottle", "detector": "…" | null, "detector_kind": "patchguard" | "diffusion",
//     "images": 83, "normal_images": 20, "anomalous_images": 63,
//     "image_size": 224, "patch_size": 14, "batch_size": 8,
//     "scoring": {"top_k": 3, "sigma": 6, "radius": 7}, "aupro_fpr_limit": 0.3,
//     "seconds": 12.3, "clean_seconds": 1.2,
//     "clean": {"image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max"},
//     "attacks": [{"name": "pgd" | "apgd", "steps", "epsilon", "alpha", "random_start",
//                  "target": "pixel (patch labels)" | "image (image labels)" | "image (top-k score)"
//                            | "pixel (unflipped patches)", "norm": "linf" | "l2", "restarts", "eot_samples",
//                  "seconds", "image_steps_per_second",
//                  "image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max"}],
//     "worst_case": [{"norm", "epsilon", "attacks": ["APGD-100 image_topk ε=8/255", …],
//                     "image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max"}],
//     "thresholds": {"stored_threshold", "stored_threshold_fpr", "validation_images",
//                    "rows": [{"run", "f1_max_threshold", "fpr_at_stored", "tpr_at_stored"}]} | null,
//     "notes": ["…"]
//   }
//
// `thresholds` (DecisionThresholds.swift): the checkpoint's stored decision threshold against this test set, and
// each pass's F1-max threshold; null when the report was not made by the evaluation job.
//
// A worst-case row per budget (norm, ε): per image, the highest image score any attack at that budget reached on
// a normal image and the lowest on a defective one (the clean score counts: δ = 0 is in the ball); per pixel map,
// the map of the strongest attack on that image (the highest mean score over normal pixels minus mean over
// anomalous pixels).
//
// A metric that is undefined on this test set (only one class of images, or no anomalous pixel) is `null` in JSON
// and "n/a" in the table; `notes` says why. Keys are always present, so tools never need to test for them.

/// The five numbers reported for one pass over the test set (clean or attacked). `nil` = undefined (one class).
public struct MetricSet: Codable, Equatable, Sendable {
    /// Image-level AUROC of the top-k image scores (the paper's AD).
    public var imageAUROC: Double?
    /// Pixel-level AUROC of the smoothed maps (the paper's AL).
    public var pixelAUROC: Double?
    /// Normalised area under the per-region-overlap curve up to the report's FPR limit.
    public var pixelAUPRO: Double?
    /// Best F1 over all image-score thresholds.
    public var imageF1Max: Double?
    /// Best F1 over all pixel-score thresholds.
    public var pixelF1Max: Double?

    public init(imageAUROC: Double? = nil, pixelAUROC: Double? = nil, pixelAUPRO: Double? = nil,
                imageF1Max: Double? = nil, pixelF1Max: Double? = nil) {
        self.imageAUROC = imageAUROC; self.pixelAUROC = pixelAUROC; self.pixelAUPRO = pixelAUPRO
        self.imageF1Max = imageF1Max; self.pixelF1Max = pixelF1Max
    }

    /// The metrics of computed image and pixel curves (either may be missing).
    public init(image: BinaryCurveResult?, pixel: PixelMetricsResult?) {
        self.init(imageAUROC: image?.auroc, pixelAUROC: pixel?.pixel.auroc, pixelAUPRO: pixel?.aupro.aupro,
                  imageF1Max: image?.f1Max.f1, pixelF1Max: pixel?.pixel.f1Max.f1)
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case imageAUROC = "image_auroc", pixelAUROC = "pixel_auroc", pixelAUPRO = "pixel_aupro"
        case imageF1Max = "image_f1_max", pixelF1Max = "pixel_f1_max"
    }

    /// Writes every key, `null` for an undefined metric (synthesised `Codable` would drop the key).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try encode(into: &c)
    }

    func encode<K: CodingKey>(into c: inout KeyedEncodingContainer<K>) throws {
        for key in CodingKeys.allCases {
            // Every MetricSet key has a twin in the caller's key type (see AttackReport.CodingKeys).
            guard let k = K(stringValue: key.stringValue) else { continue }
            let value: Double?
            switch key {
            case .imageAUROC: value = imageAUROC
            case .pixelAUROC: value = pixelAUROC
            case .pixelAUPRO: value = pixelAUPRO
            case .imageF1Max: value = imageF1Max
            case .pixelF1Max: value = pixelF1Max
            }
            if let value { try c.encode(value, forKey: k) } else { try c.encodeNil(forKey: k) }
        }
    }
}

/// One attacked pass: the attack (the same ``AttackSpec`` the evaluator ran) and the metrics under it. The report
/// only formats the attack: `alpha` is ``AttackSpec/alpha`` (the step size used) and `target` is
/// ``PGDTarget/reportName``.
public struct AttackReport: Codable, Equatable, Sendable {
    public var attack: AttackSpec
    /// Wall time of the pass (attack + scoring + metric updates).
    public var seconds: Double
    public var metrics: MetricSet
    /// Gradient steps per second over all images of the pass (images · ``AttackSpec/stepsPerImage`` / seconds);
    /// nil when unknown.
    public var imageStepsPerSecond: Double?

    /// `target` of ``PGDTarget/patches``: PGD on the detector's patch logits with the ground-truth patch labels
    /// (normal patches pushed up, anomalous ones down; the official PatchGuard attack). It attacks the pixel map,
    /// not the image score: on a defective image it raises every normal patch, which raises the top-k image score.
    public static let patchLabelTarget = PGDTarget.patches.reportName
    /// `target` of ``PGDTarget/image``: PGD on the image score (all patch logits of a normal image up, of a
    /// defective image down).
    public static let imageTarget = PGDTarget.image.reportName

    /// Keeps `attack` as it ran: its step size is set to the resolved ``AttackSpec/alpha``, so a report
    /// decoded from `metrics.json` equals the one written.
    public init(attack: AttackSpec, seconds: Double, metrics: MetricSet, imageStepsPerSecond: Double? = nil) {
        var ran = attack
        ran.stepSize = attack.alpha
        self.attack = ran; self.seconds = seconds; self.metrics = metrics
        self.imageStepsPerSecond = imageStepsPerSecond
    }

    /// Attack family (`"pgd"`, `"apgd"`).
    public var name: String { attack.name.rawValue }
    public var steps: Int { attack.steps }
    /// L∞ budget in [0,1] pixel units.
    public var epsilon: Double { attack.epsilon }
    /// Step size actually used.
    public var alpha: Double { attack.alpha }
    public var randomStart: Bool { attack.randomStart }
    /// What the attack optimises, as `metrics.json` spells it (``patchLabelTarget``, ``imageTarget``).
    public var target: String { attack.target.reportName }

    enum CodingKeys: String, CodingKey {
        case name, steps, epsilon, alpha, randomStart = "random_start", target, seconds
        case norm, restarts, eotSamples = "eot_samples", imageStepsPerSecond = "image_steps_per_second"
        case imageAUROC = "image_auroc", pixelAUROC = "pixel_auroc", pixelAUPRO = "pixel_aupro"
        case imageF1Max = "image_f1_max", pixelF1Max = "pixel_f1_max"
    }

    /// Flat: the metrics sit beside the settings (`{"name": "pgd", …, "image_auroc": …}`).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(steps, forKey: .steps)
        try c.encode(epsilon, forKey: .epsilon)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(randomStart, forKey: .randomStart)
        try c.encode(target, forKey: .target)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(attack.norm, forKey: .norm)
        try c.encode(attack.restarts, forKey: .restarts)
        try c.encode(attack.eotSamples, forKey: .eotSamples)
        if let imageStepsPerSecond { try c.encode(imageStepsPerSecond, forKey: .imageStepsPerSecond) }
        else { try c.encodeNil(forKey: .imageStepsPerSecond) }
        try metrics.encode(into: &c)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let targetName = try c.decodeIfPresent(String.self, forKey: .target) ?? Self.patchLabelTarget
        guard let target = PGDTarget.allCases.first(where: { $0.reportName == targetName }) else {
            throw DecodingError.dataCorruptedError(forKey: .target, in: c, debugDescription:
                "unknown target \"\(targetName)\" (allowed: \(PGDTarget.allCases.map(\.reportName).joined(separator: ", ")))")
        }
        let attack = AttackSpec(name: try c.decode(AttackName.self, forKey: .name),
                            epsilon: try c.decode(Double.self, forKey: .epsilon),
                            steps: try c.decode(Int.self, forKey: .steps),
                            alpha: try c.decode(Double.self, forKey: .alpha),
                            randomStart: try c.decodeIfPresent(Bool.self, forKey: .randomStart) ?? false,
                            target: target,
                            norm: try c.decodeIfPresent(AttackNorm.self, forKey: .norm) ?? .linf,
                            restarts: try c.decodeIfPresent(Int.self, forKey: .restarts) ?? 1,
                            eotSamples: try c.decodeIfPresent(Int.self, forKey: .eotSamples) ?? 1)
        self.init(attack: attack, seconds: try c.decodeIfPresent(Double.self, forKey: .seconds) ?? 0,
                  imageStepsPerSecond: try c.decodeIfPresent(Double.self, forKey: .imageStepsPerSecond), metrics: MetricSet(imageAUROC: try c.decodeIfPresent(Double.self, forKey: .imageAUROC),
                            pixelAUROC: try c.decodeIfPresent(Double.self, forKey: .pixelAUROC),
                            pixelAUPRO: try c.decodeIfPresent(Double.self, forKey: .pixelAUPRO),
                            imageF1Max: try c.decodeIfPresent(Double.self, forKey: .imageF1Max),
                            pixelF1Max: try c.decodeIfPresent(Double.self, forKey: .pixelF1Max)))
    }

    /// `"PGD-10"`, `"PGD-10 image"`, `"APGD-100 image_topk L2 ×2"`, `"PGD-1000 (random start)"`.
    public var displayName: String { attack.displayName }
}

extension AttackReport {
    init(attack: AttackSpec, seconds: Double, imageStepsPerSecond: Double?, metrics: MetricSet) {
        self.init(attack: attack, seconds: seconds, metrics: metrics, imageStepsPerSecond: imageStepsPerSecond)
    }
}

extension AttackSpec {
    /// The row name: `"PGD-10"`, `"PGD-10 image"`, `"APGD-100 image_topk L2 ×2"` (norm shown for L2, restarts
    /// when more than one, `EOTn` for n samples, `(random start)`).
    public var displayName: String {
        "\(name.rawValue.uppercased())-\(steps)" + (target.shortName.isEmpty ? "" : " " + target.shortName)
            + (norm == .l2 ? " L2" : "") + (restarts > 1 ? " ×\(restarts)" : "")
            + (eotSamples > 1 ? " EOT\(eotSamples)" : "") + (randomStart ? " (random start)" : "")
    }

    /// ε as tables show it: `"8/255"` in L∞, `"0.2"` in L2.
    public var epsilonText: String { EvaluationReport.formatBudget(epsilon, norm: norm) }
}

/// The worst case over every attack at one budget (see the file header): what the model survives against all of
/// them.
public struct WorstCaseReport: Codable, Equatable, Sendable {
    public var norm: AttackNorm
    public var epsilon: Double
    /// The labels of the attacks it is the worst case of (``AttackSpec/label``).
    public var attacks: [String]
    public var metrics: MetricSet

    public init(norm: AttackNorm, epsilon: Double, attacks: [String], metrics: MetricSet) {
        self.norm = norm; self.epsilon = epsilon; self.attacks = attacks; self.metrics = metrics
    }

    /// `"worst case L∞ 8/255"`.
    public var displayName: String { "worst case \(norm.display) \(EvaluationReport.formatBudget(epsilon, norm: norm))" }

    enum CodingKeys: String, CodingKey {
        case norm, epsilon, attacks
        case imageAUROC = "image_auroc", pixelAUROC = "pixel_auroc", pixelAUPRO = "pixel_aupro"
        case imageF1Max = "image_f1_max", pixelF1Max = "pixel_f1_max"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(norm, forKey: .norm)
        try c.encode(epsilon, forKey: .epsilon)
        try c.encode(attacks, forKey: .attacks)
        try metrics.encode(into: &c)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(norm: try c.decode(AttackNorm.self, forKey: .norm), epsilon: try c.decode(Double.self, forKey: .epsilon),
                  attacks: try c.decode([String].self, forKey: .attacks),
                  metrics: MetricSet(imageAUROC: try c.decodeIfPresent(Double.self, forKey: .imageAUROC),
                                     pixelAUROC: try c.decodeIfPresent(Double.self, forKey: .pixelAUROC),
                                     pixelAUPRO: try c.decodeIfPresent(Double.self, forKey: .pixelAUPRO),
                                     imageF1Max: try c.decodeIfPresent(Double.self, forKey: .imageF1Max),
                                     pixelF1Max: try c.decodeIfPresent(Double.self, forKey: .pixelF1Max)))
    }
}

/// Image AUROC of the normal test images against the images of one defect type: which kinds of defect a model
/// finds and which it misses (clean, and for each worst-case budget).
public struct DefectTypeReport: Codable, Equatable, Sendable {
    /// The defect folder name (`"crack"`).
    public var type: String
    /// Test images of that type.
    public var images: Int
    public var cleanImageAUROC: Double?
    /// One per ``EvaluationReport/worstCase`` row, in order.
    public var worstCaseImageAUROC: [Double?]

    public init(type: String, images: Int, cleanImageAUROC: Double?, worstCaseImageAUROC: [Double?]) {
        self.type = type; self.images = images; self.cleanImageAUROC = cleanImageAUROC
        self.worstCaseImageAUROC = worstCaseImageAUROC
    }

    enum CodingKeys: String, CodingKey {
        case type, images, cleanImageAUROC = "clean_image_auroc", worstCaseImageAUROC = "worst_case_image_auroc"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(images, forKey: .images)
        try c.encode(cleanImageAUROC, forKey: .cleanImageAUROC)
        try c.encode(worstCaseImageAUROC, forKey: .worstCaseImageAUROC)
    }
}

/// Everything `metrics.json` holds. Build it with ``Evaluator``; encode with ``jsonData()``.
public struct EvaluationReport: Codable, Equatable, Sendable {
    public var category: String
    /// Free text naming the detector / checkpoint (set by the caller; `null` when unknown).
    public var detector: String?
    public var images: Int
    public var normalImages: Int
    public var anomalousImages: Int
    public var imageSize: Int
    public var patchSize: Int
    public var batchSize: Int
    public var scoring: ScoringConfig
    public var auproFPRLimit: Double
    /// Total wall time of the evaluation (all passes).
    public var seconds: Double
    public var cleanSeconds: Double
    public var clean: MetricSet
    public var attacks: [AttackReport]
    /// One row per budget (norm, ε) of ``attacks``, in order of first appearance.
    public var worstCase: [WorstCaseReport]
    /// Human-readable remarks (e.g. why a metric is n/a).
    public var notes: [String]
    /// Image AUROC per defect type (normals against that type), sorted by type; empty without normal images.
    public var perDefectType: [DefectTypeReport] = []
    /// `"patchguard"` (patch logits → top-k score, smoothed map) or `"diffusion"` (its own pixel maps; `patch_size`
    /// and `scoring` do not apply).
    public var detectorKind = "patchguard"
    /// The stored threshold's FPR/TPR on this test set and the F1-max thresholds (set by ``EvaluationJob``).
    public var thresholds: DecisionThresholds?

    public init(category: String, detector: String? = nil, images: Int, normalImages: Int, anomalousImages: Int,
                imageSize: Int, patchSize: Int, batchSize: Int, scoring: ScoringConfig, auproFPRLimit: Double,
                seconds: Double, cleanSeconds: Double, clean: MetricSet, attacks: [AttackReport], notes: [String],
                worstCase: [WorstCaseReport] = []) {
        self.worstCase = worstCase
        self.category = category; self.detector = detector; self.images = images
        self.normalImages = normalImages; self.anomalousImages = anomalousImages
        self.imageSize = imageSize; self.patchSize = patchSize; self.batchSize = batchSize
        self.scoring = scoring; self.auproFPRLimit = auproFPRLimit; self.seconds = seconds
        self.cleanSeconds = cleanSeconds; self.clean = clean; self.attacks = attacks; self.notes = notes
    }

    enum CodingKeys: String, CodingKey {
        case category, detector, images, normalImages = "normal_images", anomalousImages = "anomalous_images"
        case imageSize = "image_size", patchSize = "patch_size", batchSize = "batch_size", scoring
        case auproFPRLimit = "aupro_fpr_limit", seconds, cleanSeconds = "clean_seconds", clean, attacks, notes
        case worstCase = "worst_case", thresholds, perDefectType = "per_defect_type", detectorKind = "detector_kind"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(category: try c.decode(String.self, forKey: .category),
                  detector: try c.decodeIfPresent(String.self, forKey: .detector),
                  images: try c.decode(Int.self, forKey: .images),
                  normalImages: try c.decode(Int.self, forKey: .normalImages),
                  anomalousImages: try c.decode(Int.self, forKey: .anomalousImages),
                  imageSize: try c.decode(Int.self, forKey: .imageSize), patchSize: try c.decode(Int.self, forKey: .patchSize),
                  batchSize: try c.decode(Int.self, forKey: .batchSize), scoring: try c.decode(ScoringConfig.self, forKey: .scoring),
                  auproFPRLimit: try c.decode(Double.self, forKey: .auproFPRLimit),
                  seconds: try c.decode(Double.self, forKey: .seconds), cleanSeconds: try c.decode(Double.self, forKey: .cleanSeconds),
                  clean: try c.decode(MetricSet.self, forKey: .clean), attacks: try c.decode([AttackReport].self, forKey: .attacks),
                  notes: try c.decode([String].self, forKey: .notes),
                  worstCase: try c.decodeIfPresent([WorstCaseReport].self, forKey: .worstCase) ?? [])
        thresholds = try c.decodeIfPresent(DecisionThresholds.self, forKey: .thresholds)
        perDefectType = try c.decodeIfPresent([DefectTypeReport].self, forKey: .perDefectType) ?? []
        detectorKind = try c.decodeIfPresent(String.self, forKey: .detectorKind) ?? "patchguard"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(category, forKey: .category)
        if let detector { try c.encode(detector, forKey: .detector) } else { try c.encodeNil(forKey: .detector) }
        try c.encode(images, forKey: .images)
        try c.encode(normalImages, forKey: .normalImages)
        try c.encode(anomalousImages, forKey: .anomalousImages)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(scoring, forKey: .scoring)
        try c.encode(auproFPRLimit, forKey: .auproFPRLimit)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(cleanSeconds, forKey: .cleanSeconds)
        try c.encode(clean, forKey: .clean)
        try c.encode(attacks, forKey: .attacks)
        try c.encode(worstCase, forKey: .worstCase)
        try c.encode(thresholds, forKey: .thresholds)
        try c.encode(perDefectType, forKey: .perDefectType)
        try c.encode(detectorKind, forKey: .detectorKind)
        try c.encode(notes, forKey: .notes)
    }

    /// Pretty-printed, key-sorted JSON (stable bytes for diffs), with a final newline.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(0x0A)
        return data
    }

    // MARK: - Tables

    /// The results table, Markdown with padded columns so it also reads well on a terminal:
    ///
    ///     | run    | ε     | steps | α     | image AUROC | pixel AUROC | pixel AUPRO | image F1-max | pixel F1-max |
    ///     |--------|-------|-------|-------|-------------|-------------|-------------|--------------|--------------|
    ///     | clean  | –     | –     | –     | 0.9812      | 0.9701      | 0.9012      | 0.9600       | 0.6011       |
    ///     | PGD-10 | 8/255 | 10    | 2/255 | 0.4410      | …
    public func table() -> String {
        let header = ["run", "ε", "steps", "α", "norm", "restarts", "target", "image AUROC", "pixel AUROC",
                      "pixel AUPRO", "image F1-max", "pixel F1-max"]
        func values(_ m: MetricSet) -> [String] {
            [m.imageAUROC, m.pixelAUROC, m.pixelAUPRO, m.imageF1Max, m.pixelF1Max].map(Self.formatMetric)
        }
        var rows = [["clean", "–", "–", "–", "–", "–", "–"] + values(clean)]
        for a in attacks {
            rows.append([a.displayName, a.attack.epsilonText, "\(a.steps)",
                         Self.formatBudget(a.alpha, norm: a.attack.norm), a.attack.norm.display, "\(a.attack.restarts)",
                         a.target] + values(a.metrics))
        }
        for w in worstCase {
            rows.append([w.displayName, Self.formatBudget(w.epsilon, norm: w.norm), "–", "–", w.norm.display, "–",
                         "worst of \(w.attacks.count) + clean"] + values(w.metrics))
        }
        return MarkdownTable.render(header: header, rows: rows)
    }

    /// One row per defect type: its image count, clean image AUROC and the worst case of each budget.
    public func perDefectTypeTable() -> String {
        let header = ["defect type", "images", "clean image AUROC"] + worstCase.map { "\($0.displayName) image AUROC" }
        let rows = perDefectType.map { d in
            [d.type, "\(d.images)", Self.formatMetric(d.cleanImageAUROC)]
                + worstCase.indices.map { j in Self.formatMetric(j < d.worstCaseImageAUROC.count ? d.worstCaseImageAUROC[j] : nil) }
        }
        return MarkdownTable.render(header: header, rows: rows)
    }

    /// `metrics.md`: a heading, the settings, the table and the notes.
    public func markdown() -> String {
        var s = "# Evaluation: \(category)\n\n"
        if let detector { s += "Detector: \(detector)\n\n" }
        s += "\(images) test images (\(normalImages) normal, \(anomalousImages) anomalous) at \(imageSize)×\(imageSize), "
        if detectorKind == "diffusion" {
            s += "diffusion detector. Pixel map: the multiscale reconstruction error of one-shot denoising minus the "
            s += "training normals' mean map; image score: its maximum over pixels. "
        } else {
            s += "patch \(patchSize). Image score: mean of the top-\(scoring.topK) patch logits; pixel map: bilinear "
            s += "upsampling, Gaussian σ = \(Self.trim(scoring.sigma)), radius \(scoring.radius). "
        }
        s += "AUPRO up to FPR \(Self.trim(auproFPRLimit)).\n\n"
        if !attacks.isEmpty {
            s += "Attacks: PGD (L∞: sign steps; L2: normalised-gradient steps; projection onto the ε-ball, clamp to "
            s += "[0, 1]; last iterate) and APGD (AutoAttack's schedule, best iterate); with restarts, per image the "
            s += "restart with the highest objective. `image_topk`: the exact top-k image score; `patches_sea`: the "
            s += "pixel map, only the patches not yet flipped. "
            if attacks.contains(where: { $0.attack.target == .patches }) {
                s += "`PGD-N`: ground-truth patch labels, normal patches pushed up and anomalous ones down; attacked "
                s += "quantity: \(AttackReport.patchLabelTarget). "
            }
            if attacks.contains(where: { $0.attack.target == .image }) {
                s += "`PGD-N image`: every patch of a normal image pushed up, of a defective image down; attacked "
                s += "quantity: \(AttackReport.imageTarget)."
            }
            s += "\n\n"
        }
        if !worstCase.isEmpty {
            s += "Worst-case rows, one per budget: per image the highest score any attack at that budget (or the "
            s += "clean image) reached on a normal image and the lowest on a defective one; per pixel map the map of "
            s += "the strongest attack on that image (highest mean over normal pixels minus mean over anomalous "
            s += "pixels).\n\n"
        }
        s += table()
        s += "\nTotal time \(String(format: "%.1f", seconds)) s (clean pass \(String(format: "%.1f", cleanSeconds)) s"
        for a in attacks {
            s += ", \(a.displayName) ε=\(a.attack.epsilonText) \(String(format: "%.1f", a.seconds)) s"
            if let r = a.imageStepsPerSecond { s += String(format: " (%.2f image·steps/s)", r) }
        }
        s += ").\n"
        if !perDefectType.isEmpty {
            s += "\nImage AUROC per defect type (the normal test images against the images of that type):\n\n"
            s += perDefectTypeTable()
        }
        if let thresholds {
            s += "\nDecision thresholds (image score):\n\n" + thresholds.lines().map { "- \($0)\n" }.joined()
        }
        if !notes.isEmpty {
            s += "\nNotes:\n\n" + notes.map { "- \($0)\n" }.joined()
        }
        return s
    }

    /// `0.98123` → `"0.9812"`, `nil` → `"n/a"`.
    public static func formatMetric(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "n/a" }
        return String(format: "%.4f", v)
    }

    /// A budget in [0,1] units as a multiple of 1/255: `8/255` → `"8/255"`, `0.02/255` → `"0.02/255"`.
    public static func fractionOf255(_ v: Double) -> String {
        let k = v * 255
        if v == 0 { return "0" }
        if abs(k - k.rounded()) < 1e-4 * max(1, abs(k)) { return "\(Int(k.rounded()))/255" }
        return String(format: "%.3g/255", k)
    }

    /// L∞: ``fractionOf255(_:)``; L2: `"0.2"` (3 significant digits).
    public static func formatBudget(_ v: Double, norm: AttackNorm) -> String {
        norm == .linf ? fractionOf255(v) : String(format: "%.3g", v)
    }

    static func trim(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e9 ? "\(Int(v))" : "\(v)"
    }
}
