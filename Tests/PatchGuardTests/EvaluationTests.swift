import Foundation
import Testing
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// A detector whose patch logit is a smooth function of the patch's mean brightness, with an exact input gradient:
///
///     m_p = (1 / (3·P²)) Σ_{c, pixels of p} x,   logit_p = 4·tanh(3·(m_p − 0.5))
///     ∂logit_p/∂x = 4·3·(1 − tanh²)/(3·P²) for every pixel of patch p
///
/// Bright patches look anomalous. Images are (B, 3, S, S), patches P × P on an (S/P)² grid.
final class EvalBrightnessDetector: PatchDetector {
    let imageSize: Int
    let patchSize: Int
    var numPatches: Int { (imageSize / patchSize) * (imageSize / patchSize) }
    /// Forward and gradient calls, counted in images.
    var forwardImages = 0, gradientImages = 0

    init(imageSize: Int = 16, patchSize: Int = 4) { self.imageSize = imageSize; self.patchSize = patchSize }

    func means(_ x: UnsafePointer<Float>, batch: Int) -> [Float] {
        let s = imageSize, p = patchSize, g = s / p
        var m = [Float](repeating: 0, count: batch * numPatches)
        for b in 0..<batch {
            for c in 0..<3 {
                for y in 0..<s {
                    for xx in 0..<s { m[b * numPatches + (y / p) * g + xx / p] += x[((b * 3 + c) * s + y) * s + xx] }
                }
            }
        }
        let n = Float(3 * p * p)
        return m.map { $0 / n }
    }

    func patchLogits(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        forwardImages += batch
        return means(images, batch: batch).map { 4 * tanh(3 * ($0 - 0.5)) }
    }

    func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dLogits: UnsafePointer<Float>,
                       dImages: UnsafeMutablePointer<Float>) -> [Float] {
        gradientImages += batch
        let s = imageSize, p = patchSize, g = s / p
        let m = means(images, batch: batch)
        let n = Float(3 * p * p)
        for b in 0..<batch {
            for c in 0..<3 {
                for y in 0..<s {
                    for xx in 0..<s {
                        let q = b * numPatches + (y / p) * g + xx / p
                        let t = tanh(3 * (m[q] - 0.5))
                        dImages[((b * 3 + c) * s + y) * s + xx] = dLogits[q] * 12 * (1 - t * t) / n
                    }
                }
            }
        }
        return m.map { 4 * tanh(3 * ($0 - 0.5)) }
    }
}

/// A generated test set: normal images are noise around a per-image gray level; anomalous ones add a bright
/// rectangle (the mask). Levels overlap a little, so the clean AUROC is high but the attack has room to hurt.
func evalTestSet(normal: Int, anomalous: Int, size s: Int = 16, seed: UInt64 = 7) -> [LoadedSample] {
    var rng = SeededRNG(seed: seed)
    var out = [LoadedSample]()
    for i in 0..<(normal + anomalous) {
        let bad = i >= normal
        let level = Float(rng.uniform(0.30, 0.55))
        var image = Image(width: s, height: s, channels: 3, value: 0)
        for k in image.pixels.indices { image.pixels[k] = min(1, max(0, level + Float(rng.uniform(-0.1, 0.1)))) }
        var mask = Image(width: s, height: s, channels: 1, value: 0)
        if bad {
            let w = rng.int(in: 3..<7), h = rng.int(in: 3..<7)
            let x0 = rng.int(in: 0..<(s - w)), y0 = rng.int(in: 0..<(s - h))
            let bright = Float(rng.uniform(0.6, 0.9))
            for y in y0..<(y0 + h) {
                for x in x0..<(x0 + w) {
                    mask[0, y, x] = 1
                    for c in 0..<3 { image[c, y, x] = bright }
                }
            }
        }
        out.append(LoadedSample(image: image, mask: mask, label: bad ? 1 : 0,
                                defectType: bad ? (i % 2 == 0 ? "scratch" : "hole") : "good",
                                imagePath: "/data/test/\(bad ? "defect" : "good")/\(String(format: "%03d", i)).png"))
    }
    return out
}

@Suite struct EvaluationTests {
    func settings(batch: Int = 3, attacks: [AttackSpec] = [], keepMaps: Bool = true) -> EvaluationSettings {
        EvaluationSettings(patchSize: 4, scoring: ScoringConfig(topK: 3, sigma: 2, radius: 3), batchSize: batch,
                           attacks: attacks, seed: 1, keepMaps: keepMaps, showProgress: false)
    }

    func temporaryDirectory(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "pg-eval-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func cleanMetricsEqualTheMetricClassesOnTheWholeSet() throws {
        let samples = evalTestSet(normal: 6, anomalous: 5)
        let detector = EvalBrightnessDetector()
        let result = try Evaluator(detector: detector, settings: settings(batch: 4)).evaluate(samples, category: "toy")

        // Direct: one detector call on all images, one scorer call, the metric classes.
        let n = samples.count
        let batch = try Batch.pack(samples, indices: Array(0..<n))
        let logits = batch.images.withUnsafeBufferPointer { detector.patchLogits($0.baseAddress!, batch: n) }
        let scorer = try AnomalyScorer(config: ScoringConfig(topK: 3, sigma: 2, radius: 3), gridHeight: 4,
                                       gridWidth: 4, imageHeight: 16, imageWidth: 16)
        let (scores, maps) = try scorer.score(batchLogits: logits, count: n)
        var image = ImageAUROC()
        try image.update(scores: scores, labels: samples.map { $0.label == 1 })
        var pixel = PixelMetrics()
        for (map, s) in zip(maps, samples) { try pixel.update(map: map, mask: s.mask) }
        let expectedImage = try image.compute(), expectedPixel = try pixel.compute()

        let m = result.report.clean
        #expect(m.imageAUROC == expectedImage.auroc)
        #expect(m.imageF1Max == expectedImage.f1Max.f1)
        #expect(m.pixelAUROC == expectedPixel.pixel.auroc)
        #expect(m.pixelAUPRO == expectedPixel.aupro.aupro)
        #expect(m.pixelF1Max == expectedPixel.pixel.f1Max.f1)
        #expect(result.images.map { $0.cleanScore } == scores)
        #expect(result.images.map { $0.cleanMap } == maps)
        // The data set is not trivial: a perfect or chance detector would make the attack test meaningless.
        let auroc = try #require(m.imageAUROC)
        #expect(auroc > 0.8)
        #expect(result.report.images == n && result.report.normalImages == 6 && result.report.anomalousImages == 5)
        #expect(detector.gradientImages == 0 && detector.forwardImages == 2 * n)  // evaluation + direct
    }

    @Test func attackedMetricsAreNotAboveCleanAndTheAttackStaysInBudget() throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, seed: 11)
        let weak = AttackSpec(epsilon: 8.0 / 255, steps: 5)
        let strong = AttackSpec(epsilon: 0.25, steps: 10)
        let detector = EvalBrightnessDetector()
        let result = try Evaluator(detector: detector, settings: settings(batch: 5, attacks: [weak, strong]))
            .evaluate(samples, category: "toy")
        let clean = result.report.clean
        let c = try #require(clean.imageAUROC), cp = try #require(clean.pixelAUROC)
        for a in result.report.attacks {
            let ai = try #require(a.metrics.imageAUROC), ap = try #require(a.metrics.pixelAUROC)
            #expect(ai <= c)
            #expect(ap <= cp)
        }
        let strongImage = try #require(result.report.attacks[1].metrics.imageAUROC)
        let strongPixel = try #require(result.report.attacks[1].metrics.pixelAUROC)
        #expect(strongImage < c - 0.3)
        #expect(strongPixel < cp - 0.3)
        // Every PGD step is one gradient call per image; each pass one forward per image.
        #expect(detector.gradientImages == samples.count * 15)
        #expect(detector.forwardImages == samples.count * 3)
        // α defaults to 2.5·ε/steps and is reported.
        #expect(abs(result.report.attacks[0].alpha - 2.5 * (8.0 / 255) / 5) < 1e-15)
        #expect(result.report.attacks[0].target == "pixel (patch labels)")
        // The image-score target is reported as such and also lowers the image AUROC of this detector.
        var imageAttack = strong
        imageAttack.target = .image
        let imageResult = try Evaluator(detector: EvalBrightnessDetector(),
                                        settings: settings(batch: 5, attacks: [imageAttack]))
            .evaluate(samples, category: "toy")
        #expect(imageResult.report.attacks[0].target == "image (image labels)")
        #expect(imageResult.report.attacks[0].displayName == "PGD-\(strong.steps) image")
        #expect(try #require(imageResult.report.attacks[0].metrics.imageAUROC) < c - 0.3)
        // Kept attacked images: within ε of the clean ones and in [0, 1]; anomalies darker, normals brighter.
        for (e, s) in zip(result.images, samples) {
            let x = try #require(e.attacked[1].image)
            var maxDelta: Float = 0, sum: Float = 0
            for (a, b) in zip(x.pixels, s.image.pixels) {
                #expect(a >= 0 && a <= 1)
                maxDelta = max(maxDelta, abs(a - b)); sum += a - b
            }
            #expect(maxDelta <= 0.25 + 1e-6)
            if s.label == 0 { #expect(sum > 0) }
            #expect(e.attacked.count == 2)
        }
    }

    @Test func batchSizeDoesNotChangeTheResult() throws {
        let samples = evalTestSet(normal: 4, anomalous: 3, seed: 5)
        let attack = AttackSpec(epsilon: 0.05, steps: 3)
        let one = try Evaluator(detector: EvalBrightnessDetector(), settings: settings(batch: 1, attacks: [attack]))
            .evaluate(samples, category: "toy")
        let four = try Evaluator(detector: EvalBrightnessDetector(), settings: settings(batch: 4, attacks: [attack]))
            .evaluate(samples, category: "toy")
        #expect(one.report.clean == four.report.clean)
        #expect(one.report.attacks.map(\.metrics) == four.report.attacks.map(\.metrics))
        #expect(one.images.map { $0.attacked[0].score } == four.images.map { $0.attacked[0].score })
    }

    @Test func metricsJSONHasExactlyTheDocumentedKeys() throws {
        let samples = evalTestSet(normal: 4, anomalous: 4)
        let result = try Evaluator(detector: EvalBrightnessDetector(),
                                   settings: settings(attacks: [AttackSpec(epsilon: 8.0 / 255, steps: 2)]))
            .evaluate(samples, category: "toy")
        let dir = temporaryDirectory("json")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let written = try result.writeReports(to: dir)
        #expect(written.map { ($0 as NSString).lastPathComponent }
                == ["metrics.json", "metrics.md", "roc_image.svg", "roc_pixel.svg"])
        let data = try #require(FileManager.default.contents(atPath: dir + "/metrics.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(root.keys) == ["category", "detector", "images", "normal_images", "anomalous_images", "image_size",
                                   "patch_size", "batch_size", "scoring", "aupro_fpr_limit", "seconds", "clean_seconds",
                                   "clean", "attacks", "notes", "worst_case", "thresholds", "per_defect_type",
                                   "detector_kind"])
        #expect(root["detector_kind"] as? String == "patchguard")
        let metricKeys: Set<String> = ["image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max"]
        let clean = try #require(root["clean"] as? [String: Any])
        #expect(Set(clean.keys) == metricKeys)
        let attacks = try #require(root["attacks"] as? [[String: Any]])
        #expect(attacks.count == 1)
        #expect(Set(attacks[0].keys) == metricKeys.union(["name", "steps", "epsilon", "alpha", "random_start",
                                                          "target", "seconds", "norm", "restarts", "eot_samples",
                                                          "image_steps_per_second"]))
        #expect(attacks[0]["norm"] as? String == "linf" && attacks[0]["restarts"] as? Int == 1)
        // One worst-case row per budget, naming the attacks it covers.
        let worst = try #require(root["worst_case"] as? [[String: Any]])
        #expect(worst.count == 1)
        #expect(Set(worst[0].keys) == metricKeys.union(["norm", "epsilon", "attacks"]))
        #expect(worst[0]["attacks"] as? [String] == ["PGD-2 ε=8/255"])
        #expect(attacks[0]["name"] as? String == "pgd")
        #expect(attacks[0]["steps"] as? Int == 2)
        #expect(attacks[0]["target"] as? String == "pixel (patch labels)")
        let scoring = try #require(root["scoring"] as? [String: Any])
        #expect(Set(scoring.keys) == ["top_k", "sigma", "radius"])
        // Per defect type: the normals against that type's images, clean and per worst-case row.
        let perType = try #require(root["per_defect_type"] as? [[String: Any]])
        #expect(perType.map { $0["type"] as? String } == ["hole", "scratch"])
        #expect(Set(perType[0].keys) == ["type", "images", "clean_image_auroc", "worst_case_image_auroc"])
        for row in perType {
            let type = try #require(row["type"] as? String)
            let members = result.images.filter { $0.label == 0 || $0.defectType == type }
            let expected = try ImageAUROC.auroc(scores: members.map { Double($0.cleanScore) },
                                                labels: members.map { $0.label == 1 })
            #expect(row["images"] as? Int == members.filter { $0.label == 1 }.count)
            #expect(row["clean_image_auroc"] as? Double == expected)
            #expect((row["worst_case_image_auroc"] as? [Double])?.count == 1)
        }
        #expect(clean["image_auroc"] as? Double == result.report.clean.imageAUROC)
        // Round trip.
        let decoded = try JSONDecoder().decode(EvaluationReport.self, from: data)
        #expect(decoded == result.report)

        let md = try readText(dir + "/metrics.md")
        #expect(md.contains(result.report.table()))
        #expect(md.contains("| PGD-2 "))
        #expect(md.contains(result.report.perDefectTypeTable()) && md.contains("| scratch "))
        #expect(md.contains(EvaluationReport.formatMetric(result.report.clean.imageAUROC)))
        let svg = try readText(dir + "/roc_image.svg")
        #expect(svg.contains("clean (AUC") && svg.contains("PGD-2 ε=8/255 (AUC"))
        #expect(svg.components(separatedBy: "<polyline").count == 3)
    }

    @Test func tableLinesUpAndFormatsBudgets() throws {
        let report = EvaluationReport(
            category: "c", images: 2, normalImages: 1, anomalousImages: 1, imageSize: 16, patchSize: 4, batchSize: 1,
            scoring: ScoringConfig(), auproFPRLimit: 0.3, seconds: 1, cleanSeconds: 1,
            clean: MetricSet(imageAUROC: 0.98765, pixelAUROC: nil, pixelAUPRO: 0.5, imageF1Max: 1, pixelF1Max: nil),
            attacks: [AttackReport(attack: AttackSpec(epsilon: 8.0 / 255, steps: 1000), seconds: 2,
                                   metrics: MetricSet())],
            notes: [])
        let lines = report.table().split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(Set(lines.map { $0.count }).count == 1)  // padded columns
        #expect(lines[2].contains("0.9877") && lines[2].contains("n/a") && lines[2].contains("0.5000"))
        #expect(lines[3].contains("PGD-1000") && lines[3].contains("8/255") && lines[3].contains("0.02/255"))
        #expect(EvaluationReport.fractionOf255(2.0 / 255) == "2/255")
        #expect(EvaluationReport.fractionOf255(0) == "0")
    }

    @Test func oneClassTestSetReportsNotApplicable() throws {
        let samples = evalTestSet(normal: 5, anomalous: 0)
        let result = try Evaluator(detector: EvalBrightnessDetector(),
                                   settings: settings(attacks: [AttackSpec(epsilon: 0.03, steps: 2)]))
            .evaluate(samples, category: "only-good")
        #expect(result.report.clean == MetricSet())
        #expect(result.report.attacks[0].metrics == MetricSet())
        #expect(result.report.notes.count == 2)
        #expect(result.report.notes[0].contains("only normal"))
        #expect(result.images.allSatisfy { $0.cleanScore.isFinite && $0.attacked[0].score.isFinite })
        #expect(result.report.table().contains("n/a"))
        let dir = temporaryDirectory("oneclass")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try result.writeReports(to: dir)
        let data = try #require(FileManager.default.contents(atPath: dir + "/metrics.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let clean = try #require(root["clean"] as? [String: Any])
        #expect(clean.count == 5 && clean.values.allSatisfy { $0 is NSNull })

        // Defective images whose masks are empty: the image metrics exist, the pixel ones do not.
        var noMasks = evalTestSet(normal: 3, anomalous: 3)
        for i in noMasks.indices { noMasks[i].mask = Image(width: 16, height: 16, channels: 1, value: 0) }
        let r2 = try Evaluator(detector: EvalBrightnessDetector(), settings: settings()).evaluate(noMasks, category: "x")
        #expect(r2.report.clean.imageAUROC != nil && r2.report.clean.pixelAUROC == nil)
        #expect(r2.report.notes.count == 1)
    }

    @Test func rejectsInconsistentInputs() throws {
        let d = EvalBrightnessDetector()
        #expect(throws: PatchGuardError.self) {
            _ = try Evaluator(detector: d, settings: EvaluationSettings(patchSize: 5, showProgress: false))
        }
        #expect(throws: PatchGuardError.self) {
            _ = try Evaluator(detector: d, settings: EvaluationSettings(patchSize: 2, showProgress: false))  // 64 ≠ 16
        }
        #expect(throws: PatchGuardError.self) { try AttackSpec(epsilon: 2, steps: 10).validate() }
        #expect(throws: PatchGuardError.self) {
            _ = try Evaluator(detector: d, settings: settings(attacks: [AttackSpec(epsilon: 2, steps: 10)]))
        }
        #expect(throws: PatchGuardError.self) {
            _ = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"name": "fgsm"}]"#])
        }
        let evaluator = try Evaluator(detector: d, settings: settings())
        #expect(throws: PatchGuardError.self) { _ = try evaluator.evaluate([], category: "x") }
        var wrongSize = evalTestSet(normal: 2, anomalous: 1)
        wrongSize[1].image = Image(width: 8, height: 8, channels: 3, value: 0)
        #expect(throws: PatchGuardError.self) { _ = try evaluator.evaluate(wrongSize, category: "x") }
    }

    @Test func settingsFromTheJobConfig() throws {
        var eval = EvalConfig()
        eval.topK = 2; eval.sigma = 1.5; eval.radius = 2
        var a = AttackSpec(); a.steps = 1000; a.epsilon = 8.0 / 255
        eval.attacks = [a]
        let s = try EvaluationSettings(eval: eval, patchSize: 4, batchSize: 6)
        #expect(s.scoring == ScoringConfig(topK: 2, sigma: 1.5, radius: 2))
        #expect(s.attacks.count == 1 && s.attacks[0].steps == 1000)
        #expect(abs(s.attacks[0].alpha - 0.02 / 255) < 1e-12)
        #expect(s.batchSize == 6)
    }

    @Test func oneAttackTypeFromConfigToReport() throws {
        // Config → AttackSpec: the config's entry is the type the evaluator runs.
        let config = try JobConfig.load(path: nil, overrides: [
            #"eval.attacks=[{"steps": 2, "epsilon": "8/255", "target": "image"}, {"steps": 3, "alpha": 0.01}]"#])
        let specs = config.eval.attacks
        #expect(specs == [AttackSpec(epsilon: 8.0 / 255, steps: 2, target: .image),
                          AttackSpec(epsilon: 8.0 / 255, steps: 3, alpha: 0.01)])
        // → evaluator → report row and JSON: the report formats the spec, it does not re-derive it.
        let samples = evalTestSet(normal: 4, anomalous: 4)
        let settings = try EvaluationSettings(eval: config.eval, patchSize: 4, batchSize: 3, seed: 1, showProgress: false)
        #expect(settings.attacks == specs)
        let result = try Evaluator(detector: EvalBrightnessDetector(), settings: settings).evaluate(samples, category: "toy")
        let rows = result.report.attacks
        #expect(rows.map(\.attack.target) == [.image, .patches])
        #expect(rows.map(\.alpha) == specs.map(\.alpha))
        #expect(rows[0].alpha == 2.5 * (8.0 / 255) / 2 && rows[1].alpha == 0.01)
        #expect(rows.map(\.target) == ["image (image labels)", "pixel (patch labels)"])
        #expect(result.attacks.map(\.name) == ["PGD-2 image ε=8/255", "PGD-3 ε=8/255"])
        let data = try result.report.jsonData()
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let json = try #require(root["attacks"] as? [[String: Any]])
        for (row, spec) in zip(json, specs) { #expect(abs(try #require(row["alpha"] as? Double) - spec.alpha) < 1e-15) }
        #expect(json.map { $0["target"] as? String } == ["image (image labels)", "pixel (patch labels)"])
        #expect(json.map { $0["steps"] as? Int } == [2, 3] && json.map { $0["name"] as? String } == ["pgd", "pgd"])
        let decoded = try JSONDecoder().decode(EvaluationReport.self, from: data)
        #expect(decoded == result.report && decoded.attacks[0].attack.target == .image)
        // The table row shows the same α.
        let row = try #require(result.report.table().split(separator: "\n").first { $0.hasPrefix("| PGD-2 image ") })
        let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(Array(cells.prefix(7)) == ["PGD-2 image", "8/255", "2", "10/255", "L∞", "1", "image (image labels)"])
    }

    @Test func alphaIsResolvedOnceFromWhatWasGiven() throws {
        let eps = 8.0 / 255
        // The config keeps α as given (0 = default), so changing the steps changes the default α.
        let config = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"steps": 100}]"#, "attack.train_steps=4"])
        #expect(config.eval.attacks[0].stepSize == 0 && config.eval.attacks[0].alpha == 2.5 * eps / 100)
        let resolved = String(decoding: try config.resolvedJSON(), as: UTF8.self)
        #expect(resolved.contains(#""alpha" : 0"#))
        // The training attack resolves into the same type and the same rule.
        #expect(config.attack.spec == AttackSpec(epsilon: eps, steps: 4))
        #expect(config.attack.spec.alpha == 2.5 * eps / 4)
        // The command line's attacks too.
        let cli = AttackOverrides(steps: 20, epsilons: [eps, 4.0 / 255], targets: [.patches, .image]).attacks(config: config)
        #expect(cli.count == 4 && cli.map(\.alpha) == [2.5 * eps / 20, 2.5 * (4.0 / 255) / 20, 2.5 * eps / 20, 2.5 * (4.0 / 255) / 20])
        #expect(AttackOverrides(alpha: 0.003).attacks(config: config).map(\.alpha) == [0.003])
        #expect(AttackOverrides().attacks(config: config) == config.eval.attacks)
        #expect(AttackOverrides(attack: AttackChoice.none, steps: 5).attacks(config: config).isEmpty)
        #expect(AttackOverrides(randomStart: true).attacks(config: config).map(\.randomStart) == [true])
        // No steps: no step.
        #expect(AttackSpec(epsilon: eps, steps: 0).alpha == 0)
        // The report keeps the resolved α (and equals itself after a JSON round trip).
        let row = AttackReport(attack: AttackSpec(epsilon: eps, steps: 10), seconds: 0, metrics: MetricSet())
        #expect(row.alpha == 2.5 * eps / 10 && row.attack.stepSize == row.alpha)
    }
}

/// A UTF-8 text file's contents; a missing or undecodable file fails the calling test.
func readText(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let data = try #require(FileManager.default.contents(atPath: path), "missing \(path)", sourceLocation: sourceLocation)
    return try #require(String(data: data, encoding: .utf8), "not UTF-8: \(path)", sourceLocation: sourceLocation)
}
