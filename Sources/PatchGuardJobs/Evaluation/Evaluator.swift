import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

extension AttackSpec {
    /// The pass's name in logs, ROC legends and heat maps: `"PGD-10 ε=8/255"`, `"PGD-10 image ε=8/255"`,
    /// `"APGD-100 image_topk L2 ε=0.2"` (``displayName`` and the budget).
    public var label: String { "\(displayName) ε=\(epsilonText)" }
}

/// How ``Evaluator`` scores and attacks.
public struct EvaluationSettings: Sendable {
    /// ViT patch side `P`; the patch grid is `(S/P) × (S/P)` for the detector's image size `S`.
    public var patchSize: Int
    public var scoring: ScoringConfig
    /// Images per detector call (clean forward and PGD).
    public var batchSize: Int
    /// The attacks in order (a ``AttackName/suite`` is run as its ``AttackSpec/expanded()`` attacks).
    public var attacks: [AttackSpec]
    /// Seeds the random starts of the attacks (one stream per attack and batch).
    public var seed: UInt64
    /// AUPRO's FPR limit.
    public var fprLimit: Double
    /// Keep every image's maps (clean and attacked) and attacked images for ``HeatmapWriter``. Costs
    /// `4·S²` bytes per map and `12·S²` per attacked image (≈ 0.8 MB per image and attack at 224).
    public var keepMaps: Bool
    /// Draw a progress bar on standard error (units: image·steps; a forward counts one step).
    public var showProgress: Bool

    public init(patchSize: Int, scoring: ScoringConfig = ScoringConfig(), batchSize: Int = 8,
                attacks: [AttackSpec] = [], seed: UInt64 = 0, fprLimit: Double = 0.3,
                keepMaps: Bool = true, showProgress: Bool = true) {
        self.patchSize = patchSize; self.scoring = scoring; self.batchSize = batchSize; self.attacks = attacks
        self.seed = seed; self.fprLimit = fprLimit; self.keepMaps = keepMaps; self.showProgress = showProgress
    }

    /// From the job config's `eval` section (top_k, sigma, radius, attacks).
    public init(eval: EvalConfig, patchSize: Int, batchSize: Int = 8, seed: UInt64 = 0,
                keepMaps: Bool = true, showProgress: Bool = true) throws {
        self.init(patchSize: patchSize,
                  scoring: ScoringConfig(topK: eval.topK, sigma: eval.sigma, radius: eval.radius),
                  batchSize: batchSize, attacks: eval.attacks.flatMap { $0.expanded() }, seed: seed,
                  keepMaps: keepMaps, showProgress: showProgress)
    }
}

/// Clean and attacked anomaly-detection metrics of any ``PatchDetector`` on a loaded test set.
///
/// For each pass (clean, then each attack in order), over batches of `batchSize` images:
///
///     x  = clean images (B, 3, S, S)                          clean pass
///     x  = PGD(detector, x, labels)                           attacked pass (patch labels (B, Np) from the
///                                                               masks; all 0 for good images)
///     logits = detector.patchLogits(x)                        (B, Np), Np = (S/P)²
///     image scores, pixel maps = AnomalyScorer(logits)        (B), (B, S, S)
///     ImageAUROC.update(scores, labels); PixelMetrics.update(map, mask)   streaming
///
/// then `compute()` once per pass. What PGD raises depends on the attack's ``PGDTarget``
/// (``pgdObjectiveGradient(labels:batch:patches:target:)``): `.patches` (the paper's attack) uses the ground-truth
/// patch labels, raising the mean logit of normal patches and lowering that of anomalous ones, so it attacks the
/// pixel map; it does not attack the image score (on a defective image it raises every normal patch, which raises
/// the top-k image score). `.image` attacks the image score: every patch of a normal image up, of a defective
/// image down.
///
/// Metrics that need both classes are reported as `nil` ("n/a") when the test set lacks one (only good images,
/// or no anomalous pixel), with a note; the passes still run, so scores and maps are available for heat maps.
///
/// Overhead next to the detector: packing (a copy of the batch), scoring (bilinear + separable Gaussian, parallel
/// over images) and metric updates (one connected-component labelling and 8 bytes per pixel); all O(B·S²).
///
/// A detector whose own outputs are pixel maps (the diffusion detector, ``init(mapDetector:settings:)``) is scored
/// by its ``AnomalyDetector/outputs(_:batch:)`` directly: its image scores and `S × S` maps replace the patch logits
/// and ``AnomalyScorer``, and the attacks' labels are the pixel masks instead of patch labels. Everything else
/// (passes, worst case, metrics, kept maps for heat maps, the report) is the same for both kinds.
public final class Evaluator {
    /// How a batch becomes image scores and pixel maps.
    enum Backend {
        /// Patch logits → ``AnomalyScorer`` (top-k image score, upsampled + smoothed map).
        case patchLogits(PatchDetector, AnomalyScorer)
        /// The detector's own outputs, maps at pixel resolution.
        case pixelMaps(AnomalyDetector)
    }
    let backend: Backend
    /// The PatchGuard detector (nil for a map detector).
    public var detector: PatchDetector? {
        if case .patchLogits(let d, _) = backend { return d }
        return nil
    }
    /// The detector's image side `S`.
    public let imageSize: Int
    /// What the attacks see: ``detector`` as an ``AnomalyDetector`` whose image score is the evaluation's top-k
    /// (a map detector: itself).
    public let attackedDetector: AnomalyDetector
    /// Where the attacks are crafted, when not on ``attackedDetector`` itself: a transfer attack (another model's
    /// gradients, the images then scored by ``detector``). A transfer attack stronger than the white-box one means
    /// the white-box gradients are wrong (gradient masking).
    public var attackSource: AnomalyDetector?
    public let settings: EvaluationSettings
    /// ``EvaluationSettings/attacks`` with suites expanded.
    public let attacks: [AttackSpec]

    /// Throws when the detector's image size is not a multiple of the patch size, its patch count is not
    /// `(S/P)²`, the batch size is not positive, an attack is invalid (``AttackSpec/validate(key:)``) or the
    /// scoring settings are invalid.
    public init(detector: PatchDetector, settings: EvaluationSettings) throws {
        let s = detector.imageSize, p = settings.patchSize
        guard p > 0, s > 0, s % p == 0 else {
            throw PatchGuardError.invalidArgument("evaluation: image size \(s) is not a multiple of patch size \(p)")
        }
        let g = s / p
        guard detector.numPatches == g * g else {
            throw PatchGuardError.invalidArgument(
                "evaluation: detector has \(detector.numPatches) patches, a \(g)×\(g) grid (S=\(s), P=\(p)) has \(g * g)")
        }
        attacks = try Self.checkedAttacks(settings)
        self.settings = settings
        imageSize = s
        let scorer = try AnomalyScorer(config: settings.scoring, gridHeight: g, gridWidth: g, imageHeight: s, imageWidth: s)
        backend = .patchLogits(detector, scorer)
        attackedDetector = try PatchLogitDetector(detector, topK: settings.scoring.topK)
    }

    /// The settings' checks shared by both initialisers (batch size, every attack, the AUPRO FPR limit); returns
    /// the attacks with suites expanded.
    static func checkedAttacks(_ settings: EvaluationSettings) throws -> [AttackSpec] {
        guard settings.batchSize >= 1 else {
            throw PatchGuardError.invalidArgument("evaluation: batch size must be ≥ 1, got \(settings.batchSize)")
        }
        for (i, a) in settings.attacks.enumerated() { try a.validate(key: "evaluation: attack \(i)") }
        let attacks = settings.attacks.flatMap { $0.expanded() }
        guard settings.fprLimit > 0, settings.fprLimit <= 1 else {
            throw PatchGuardError.invalidArgument("evaluation: AUPRO FPR limit must be in (0, 1], got \(settings.fprLimit)")
        }
        return attacks
    }

    /// A detector whose maps are at pixel resolution (`mapHeight = mapWidth = imageSize`): scores and maps are its
    /// own outputs; ``EvaluationSettings/patchSize`` and ``EvaluationSettings/scoring`` are not used.
    public init(mapDetector: AnomalyDetector, settings: EvaluationSettings) throws {
        let s = mapDetector.imageSize
        guard s > 0, mapDetector.mapHeight == s, mapDetector.mapWidth == s else {
            throw PatchGuardError.invalidArgument("evaluation: the detector's map is \(mapDetector.mapHeight)×"
                                                  + "\(mapDetector.mapWidth), the evaluation needs \(s)×\(s) (its image size)")
        }
        attacks = try Self.checkedAttacks(settings)
        self.settings = settings
        imageSize = s
        backend = .pixelMaps(mapDetector)
        attackedDetector = mapDetector
    }

    /// Image scores and `S × S` maps of `b` images at `x`; throws on a non-finite output.
    private func score(_ x: [Float], batch b: Int, paths: (Int) -> String, info: String) throws
        -> (scores: [Float], maps: [ScoreMap]) {
        let s = imageSize, plane = s * s
        switch backend {
        case .patchLogits(let detector, let scorer):
            let np = detector.numPatches
            let logits = x.withUnsafeBufferPointer { detector.patchLogits($0.baseAddress!, batch: b) }
            guard logits.count == b * np else {
                throw PatchGuardError.numeric("detector returned \(logits.count) logits for \(b)×\(np) patches")
            }
            if let bad = logits.firstIndex(where: { !$0.isFinite }) {
                throw PatchGuardError.numeric("detector returned a non-finite logit (\(logits[bad])) for "
                                              + paths(bad / np) + " (\(info))")
            }
            let (scores, maps) = try scorer.score(batchLogits: logits, count: b)
            return (scores, maps)
        case .pixelMaps(let detector):
            let out = x.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: b) }
            guard out.scores.count == b, out.maps.count == b * plane else {
                throw PatchGuardError.numeric("detector returned \(out.scores.count) scores and \(out.maps.count) "
                                              + "map values for \(b) images of \(s)×\(s)")
            }
            if let bad = out.maps.firstIndex(where: { !$0.isFinite }) {
                throw PatchGuardError.numeric("detector returned a non-finite map value (\(out.maps[bad])) for "
                                              + paths(bad / plane) + " (\(info))")
            }
            if let bad = out.scores.firstIndex(where: { !$0.isFinite }) {
                throw PatchGuardError.numeric("detector returned a non-finite score (\(out.scores[bad])) for "
                                              + paths(bad) + " (\(info))")
            }
            let maps = try (0..<b).map {
                try ScoreMap(width: s, height: s, values: Array(out.maps[($0 * plane)..<(($0 + 1) * plane)]))
            }
            return (out.scores, maps)
        }
    }

    /// Evaluates `samples` (every image `3 × S × S`, mask `1 × S × S`, as ``SampleLoader`` makes them).
    ///
    /// - Parameters:
    ///   - category: name written into the report.
    ///   - log: receives one line per finished pass (e.g. `RunDirectory.log`).
    /// - Throws: ``PatchGuardError/invalidArgument(_:)`` on an empty test set or a misshapen sample,
    ///   ``PatchGuardError/numeric(_:)`` when the detector returns NaN or a wrong number of logits.
    public func evaluate(_ samples: [LoadedSample], category: String,
                         log: ((String) -> Void)? = nil) throws -> EvaluationResult {
        let start = Date()
        let n = samples.count, s = imageSize, plane = s * s
        let np: Int
        switch backend {
        case .patchLogits(let d, _): np = d.numPatches
        case .pixelMaps: np = plane
        }
        guard n > 0 else { throw PatchGuardError.invalidArgument("evaluation: the test set is empty") }

        // Per-sample inputs, computed once: binary masks (pixel metrics) and patch labels (attacks).
        var masks = [[UInt8]]()
        var labels = [[Float]]()
        masks.reserveCapacity(n); labels.reserveCapacity(n)
        var anomalousPixels = 0
        for sample in samples {
            guard sample.image.channels == 3, sample.image.width == s, sample.image.height == s,
                  sample.mask.channels == 1, sample.mask.width == s, sample.mask.height == s else {
                throw PatchGuardError.invalidArgument(
                    "\(sample.imagePath): image \(sample.image.channels)×\(sample.image.height)×\(sample.image.width)"
                    + ", mask \(sample.mask.channels)×\(sample.mask.height)×\(sample.mask.width); the detector "
                    + "needs 3×\(s)×\(s) and 1×\(s)×\(s)")
            }
            guard sample.label == 0 || sample.label == 1 else {
                throw PatchGuardError.invalidArgument("\(sample.imagePath): label \(sample.label) is neither 0 nor 1")
            }
            let m = sample.mask.pixels.map { $0 > 0.5 ? UInt8(1) : 0 }
            let good = sample.label == 0
            masks.append(good ? [UInt8](repeating: 0, count: plane) : m)
            if !good { anomalousPixels += m.reduce(0) { $0 + Int($1) } }
            if case .pixelMaps = backend {
                labels.append(good ? [Float](repeating: 0, count: np) : m.map { Float($0) })
            } else {
                labels.append(good ? [Float](repeating: 0, count: np)
                                   : try patchLabels(mask: sample.mask, patchSize: settings.patchSize))
            }
        }
        let anomalousImages = samples.filter { $0.label == 1 }.count
        let normalImages = n - anomalousImages
        let imageDefined = anomalousImages > 0 && normalImages > 0
        let pixelDefined = anomalousPixels > 0 && anomalousPixels < n * plane
        var notes = [String]()
        if !imageDefined {
            notes.append("The test set has only \(anomalousImages > 0 ? "anomalous" : "normal") images (\(n)): "
                         + "image AUROC and image F1-max need both classes and are n/a.")
        }
        if !pixelDefined {
            notes.append(anomalousPixels == 0
                         ? "No ground-truth mask has an anomalous pixel: pixel AUROC, AUPRO and pixel F1-max are n/a."
                         : "Every pixel is anomalous: pixel AUROC, AUPRO and pixel F1-max are n/a.")
        }
        for note in notes { log?("note: " + note) }

        let attacks = self.attacks
        let total = n * (1 + attacks.reduce(0) { $0 + $1.stepsPerImage + 1 })
        let bar = settings.showProgress ? ProgressBar("evaluate \(category)", total: total, unit: "img·step") : nil

        var images = samples.enumerated().map { i, sample in
            EvaluatedImage(index: i, imagePath: sample.imagePath, defectType: sample.defectType,
                           label: sample.label, cleanScore: .nan, cleanMap: nil, attacked: [])
        }

        // Worst case per budget (norm, ε), in order of first appearance: per image the most harmful score and map
        // so far (starting from the clean ones: δ = 0 is in every ball). An attack at a smaller ε of the same norm
        // counts at every larger budget too (its ball lies inside theirs): a weak attack at the larger ε cannot
        // report more robustness than the smaller budget's attack already refuted.
        struct Worst {
            var norm: AttackNorm, epsilon: Double, labels: [String] = []
            var scores: [Float] = [], maps: [[Float]] = [], damage: [Double] = []
        }
        var budgets = [Worst]()
        for a in attacks where !budgets.contains(where: { $0.norm == a.norm && $0.epsilon == a.epsilon }) {
            budgets.append(Worst(norm: a.norm, epsilon: a.epsilon))
        }
        let budgetsOf: [[Int]] = attacks.map { a in
            budgets.indices.filter { budgets[$0].norm == a.norm && a.epsilon <= budgets[$0].epsilon }
        }
        for (a, js) in zip(attacks, budgetsOf) { for j in js { budgets[j].labels.append(a.label) } }
        // The pixel-map damage of a map: mean over normal pixels minus mean over anomalous pixels.
        func damage(_ map: [Float], _ mask: [UInt8]) -> Double {
            var sn = 0.0, sa = 0.0, na = 0
            for (v, m) in zip(map, mask) { if m == 1 { sa += Double(v); na += 1 } else { sn += Double(v) } }
            let nn = map.count - na
            return (nn > 0 ? sn / Double(nn) : 0) - (na > 0 ? sa / Double(na) : 0)
        }
        func harm(_ score: Float, _ label: Int) -> Float { label == 1 ? -score : score }

        // One pass over the test set; `attack` nil = clean.
        func pass(_ attackIndex: Int?) throws -> PassCurves {
            let passStart = Date()
            var imageMetric = ImageAUROC()
            var pixelMetric = PixelMetrics()
            let attack = attackIndex.map { attacks[$0] }
            let info = attack?.label ?? "clean"
            var buffer = [Float](repeating: 0, count: min(n, settings.batchSize) * 3 * plane)
            for (batchIndex, lo) in stride(from: 0, to: n, by: settings.batchSize).enumerated() {
                let indices = Array(lo..<min(n, lo + settings.batchSize))
                let b = indices.count
                try buffer.withUnsafeMutableBufferPointer {
                    try Batch.pack(samples, indices: indices, imageSize: s, images: $0, masks: nil)
                }
                var x = b * 3 * plane == buffer.count ? buffer : Array(buffer[0..<(b * 3 * plane)])
                if let attack {
                    let batchLabels = indices.flatMap { labels[$0] }
                    var rng = SeededRNG(seed: settings.seed,
                                        stream: UInt64((attackIndex ?? 0) + 1) << 32 | UInt64(batchIndex))
                    x = attack.run(on: attackSource ?? attackedDetector, images: x, labels: batchLabels, batch: b, using: &rng,
                                   onStep: { _ in bar?.advance(b, info: info) })
                }
                let (scores, maps) = try score(x, batch: b, paths: { samples[indices[$0]].imagePath }, info: info)
                bar?.advance(b, info: info)
                if imageDefined {
                    try imageMetric.update(scores: scores, labels: indices.map { samples[$0].label == 1 })
                }
                for (k, i) in indices.enumerated() {
                    if pixelDefined {
                        try pixelMetric.update(scores: maps[k].values, mask: masks[i], width: s, height: s)
                    }
                    let map = settings.keepMaps ? maps[k] : nil
                    if let attackIndex {
                        let d = damage(maps[k].values, masks[i])
                        for j in budgetsOf[attackIndex] {
                            if harm(scores[k], samples[i].label) > harm(budgets[j].scores[i], samples[i].label) {
                                budgets[j].scores[i] = scores[k]
                            }
                            if d > budgets[j].damage[i] { budgets[j].damage[i] = d; budgets[j].maps[i] = maps[k].values }
                        }
                    } else if !attacks.isEmpty {
                        for j in budgets.indices {
                            if budgets[j].scores.isEmpty {
                                budgets[j].scores = [Float](repeating: 0, count: n)
                                budgets[j].maps = [[Float]](repeating: [], count: n)
                                budgets[j].damage = [Double](repeating: 0, count: n)
                            }
                            budgets[j].scores[i] = scores[k]
                            budgets[j].maps[i] = maps[k].values
                            budgets[j].damage[i] = damage(maps[k].values, masks[i])
                        }
                    }
                    if attack == nil {
                        images[i].cleanScore = scores[k]
                        images[i].cleanMap = map
                    } else {
                        let attacked = settings.keepMaps
                            ? Image(width: s, height: s, channels: 3,
                                    pixels: Array(x[(k * 3 * plane)..<((k + 1) * 3 * plane)]))
                            : nil
                        images[i].attacked.append(AttackedImage(score: scores[k], map: map, image: attacked))
                    }
                }
            }
            let image = imageDefined ? try imageMetric.compute() : nil
            let pixel = pixelDefined ? try pixelMetric.compute(fprLimit: settings.fprLimit) : nil
            let curves = PassCurves(name: attack.map { $0.label } ?? "clean", image: image, pixel: pixel,
                                    seconds: Date().timeIntervalSince(passStart))
            let m = curves.metrics
            log?("\(curves.name): image AUROC \(EvaluationReport.formatMetric(m.imageAUROC)), pixel AUROC "
                 + "\(EvaluationReport.formatMetric(m.pixelAUROC)), AUPRO \(EvaluationReport.formatMetric(m.pixelAUPRO))"
                 + String(format: " (%.1f s)", curves.seconds))
            return curves
        }

        let clean = try pass(nil)
        var attacked = [PassCurves]()
        for a in attacks.indices { attacked.append(try pass(a)) }

        var worstCurves = [PassCurves]()
        for w in budgets {
            var imageMetric = ImageAUROC()
            var pixelMetric = PixelMetrics()
            if imageDefined { try imageMetric.update(scores: w.scores, labels: samples.map { $0.label == 1 }) }
            if pixelDefined {
                for i in 0..<n { try pixelMetric.update(scores: w.maps[i], mask: masks[i], width: s, height: s) }
            }
            let curves = PassCurves(name: "worst case \(w.norm.display) ε=\(EvaluationReport.formatBudget(w.epsilon, norm: w.norm))",
                                    image: imageDefined ? try imageMetric.compute() : nil,
                                    pixel: pixelDefined ? try pixelMetric.compute(fprLimit: settings.fprLimit) : nil,
                                    seconds: 0)
            let m = curves.metrics
            log?("\(curves.name) (\(w.labels.count) attacks + clean): image AUROC "
                 + "\(EvaluationReport.formatMetric(m.imageAUROC)), pixel AUROC \(EvaluationReport.formatMetric(m.pixelAUROC))")
            worstCurves.append(curves)
        }

        let report = EvaluationReport(
            category: category, images: n, normalImages: normalImages, anomalousImages: anomalousImages,
            imageSize: s, patchSize: settings.patchSize, batchSize: settings.batchSize, scoring: settings.scoring,
            auproFPRLimit: settings.fprLimit, seconds: Date().timeIntervalSince(start), cleanSeconds: clean.seconds,
            clean: clean.metrics,
            attacks: zip(attacks, attacked).map { a, c in
                AttackReport(attack: a, seconds: c.seconds, metrics: c.metrics,
                             imageStepsPerSecond: c.seconds > 0 ? Double(n * a.stepsPerImage) / c.seconds : nil)
            },
            notes: notes,
            worstCase: zip(budgets, worstCurves).map { w, c in
                WorstCaseReport(norm: w.norm, epsilon: w.epsilon, attacks: w.labels, metrics: c.metrics)
            })
        var result = EvaluationResult(report: report, clean: clean, attacks: attacked, images: images,
                                      worstCase: worstCurves)
        result.report.perDefectType = try Self.perDefectType(
            samples.map { ($0.defectType, $0.label) }, clean: images.map { $0.cleanScore },
            worstCase: budgets.map { $0.scores })
        return result
    }

    /// Image AUROC of the normal images (label 0) against each defect type's images, for the clean scores and each
    /// worst-case score array (empty arrays give `nil`). Sorted by type; empty when there is no normal image.
    static func perDefectType(_ samples: [(type: String, label: Int)], clean: [Float], worstCase: [[Float]]) throws
        -> [DefectTypeReport] {
        let normals = samples.indices.filter { samples[$0].label == 0 }
        guard !normals.isEmpty else { return [] }
        let types = Set(samples.filter { $0.label == 1 }.map { $0.type }).sorted()
        func auroc(_ scores: [Float], _ defective: [Int]) throws -> Double? {
            guard scores.count == samples.count else { return nil }
            var m = ImageAUROC()
            try m.update(scores: normals.map { scores[$0] } + defective.map { scores[$0] },
                         labels: normals.map { _ in false } + defective.map { _ in true })
            return try m.compute().auroc
        }
        return try types.map { t in
            let defective = samples.indices.filter { samples[$0].label == 1 && samples[$0].type == t }
            return DefectTypeReport(type: t, images: defective.count, cleanImageAUROC: try auroc(clean, defective),
                                    worstCaseImageAUROC: try worstCase.map { try auroc($0, defective) })
        }
    }
}
