import Foundation
import PatchGuardCore
import PatchGuardMetrics
import PatchGuardData
import PatchGuardMethod

/// One pass of a diffusion evaluation: clean, one attack, or a budget's worst case.
public struct DiffusionPassResult: Codable, Equatable, Sendable {
    public var name: String
    public var imageAUROC: Double?
    public var pixelAUROC: Double?
    enum CodingKeys: String, CodingKey { case name, imageAUROC = "image_auroc", pixelAUROC = "pixel_auroc" }
}

/// `patchguard evaluate` for a diffusion checkpoint (`model.kind = "diffusion"`): the EMA weights and the stored mean
/// map rebuild the ``DiffusionDetector``; the test set is scored clean and under every attack of the config or the
/// command line, which see the detector only through the ``AnomalyDetector`` protocol (labels: the pixel masks at
/// the map's pixel resolution; EOT because the detector is stochastic — set `eot_samples`). Each budget with more
/// than one attack also gets a worst-case row: per image the highest score any attack reached on a normal image
/// and the lowest on a defective one (clean counts too); per image the map of the attack with the worst image score.
/// Writes `metrics.json` (`passes`: name, image_auroc, pixel_auroc).
///
/// Not yet shared with PatchGuard's ``Evaluator`` (AUPRO, ROC plots, Markdown table, heat maps): that evaluator
/// is built on patch logits; this job computes image and pixel AUROC only.
public struct DiffusionEvaluationJob {
    public var checkpoint: String
    public var config: JobConfig
    public var attacks: [AttackSpec]
    public var warnings: [String]

    public init(checkpoint: String, configPath: String? = nil, overrides: [String] = [],
                attackOverrides: AttackOverrides = AttackOverrides()) throws {
        self.checkpoint = checkpoint
        (config, warnings) = try EvaluationJob.resolveConfig(checkpoint: checkpoint, configPath: configPath,
                                                             overrides: overrides)
        attacks = attackOverrides.attacks(config: config).flatMap { $0.expanded() }
        for (i, a) in attacks.enumerated() { try a.validate(key: "attack \(i)") }
    }

    /// Whether `path` is a diffusion checkpoint (metadata `kind` = `diffusion`).
    public static func isDiffusionCheckpoint(_ path: String) -> Bool {
        (try? SafeTensorsFile.load(path: path).metadata["kind"]) == "diffusion"
    }

    /// The detector of a diffusion checkpoint at `config` (EMA weights, stored mean map). The stored mean map μ
    /// belongs to the t* and noise draws it was computed with (the training config's); at others
    /// (`--set diffusion.t_star=…`) it is recomputed on the category's training normals.
    public static func detector(checkpoint: String, config: JobConfig, category: MVTecCategory, maxBatch: Int,
                                log: (String) -> Void) throws -> DiffusionDetector {
        let S = config.data.imageSize
        let model = try DiffusionModel(config: config.diffusion, imageSize: S, maxBatch: 1,
                                       weightDecay: config.train.weightDecay, seed: config.seed)
        let epoch = try model.loadCheckpoint(path: checkpoint)
        let detector = try model.detector(maxBatch: maxBatch, seed: config.seed)
        log("checkpoint: \(checkpoint) (epoch \(epoch)); diffusion detector t* = \(config.diffusion.tStar), "
            + "\(config.diffusion.noiseDraws) noise draw(s)")
        if let stored = try SafeTensorsFile.load(path: checkpoint).metadata["config"],
           let trained = try? JobConfig.decode(JobConfig.tree(json: Data(stored.utf8), source: checkpoint).merged,
                                               source: checkpoint),
           trained.diffusion.tStar != config.diffusion.tStar || trained.diffusion.noiseDraws != config.diffusion.noiseDraws {
            let normals = try SampleLoader(imageSize: S, cacheBudgetBytes: config.data.cacheMB << 20).load(category.train)
            try DiffusionTrainer.calibrate(model, normals, config: config)
            detector.meanMap = model.meanMap
            log("mean map recomputed on \(normals.count) training normals at t* = \(config.diffusion.tStar), "
                + "\(config.diffusion.noiseDraws) draw(s) (the checkpoint's is for t* = \(trained.diffusion.tStar), "
                + "\(trained.diffusion.noiseDraws) draw(s))")
        }
        return detector
    }

    public func run(in run: RunDirectory, showProgress: Bool = true) throws -> [DiffusionPassResult] {
        for w in warnings { run.log("warning: " + w) }
        let S = config.data.imageSize, B = max(1, config.eval.batchSize)
        let category = try MVTecCategory.scan(root: config.data.root, category: config.data.category)
        let detector = try Self.detector(checkpoint: checkpoint, config: config, category: category, maxBatch: B,
                                         log: run.log)
        run.log("data: \(category.summary)")
        var tests = category.test
        if config.eval.maxImages > 0 && config.eval.maxImages < tests.count {
            tests = EvaluationJob.evenlySpaced(count: tests.count, limit: config.eval.maxImages).map { tests[$0] }
        }
        let samples = try SampleLoader(imageSize: S, cacheBudgetBytes: config.data.cacheMB << 20).load(tests)
        let M = S * S
        let labels = samples.map(\.label)

        // Scores (N) and maps (N, M) of one pass, batch by batch; `attack` nil = clean.
        func pass(_ attack: AttackSpec?, index: Int) -> (scores: [Float], maps: [Float]) {
            var scores: [Float] = [], maps: [Float] = []
            let bar = showProgress ? ProgressBar(attack?.label ?? "clean", total: samples.count, unit: "img") : nil
            var start = 0, bi = 0
            while start < samples.count {
                let n = min(B, samples.count - start)
                var images = [Float](), masks = [Float]()
                for s in samples[start..<(start + n)] { images += s.image.pixels; masks += s.mask.pixels }
                if let attack {
                    var rng = SeededRNG(seed: config.seed, stream: UInt64(index + 1) << 32 | UInt64(bi))
                    images = attack.run(on: detector, images: images, labels: masks, batch: n, using: &rng)
                }
                let out = images.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: n) }
                scores += out.scores; maps += out.maps
                bar?.advance(n)
                start += n; bi += 1
            }
            return (scores, maps)
        }
        func metrics(_ name: String, _ scores: [Float], _ maps: [Float]) throws -> DiffusionPassResult {
            let hasBoth = labels.contains(0) && labels.contains(1)
            let image = hasBoth ? try BinaryAUROC.auroc(scores: scores.map(Double.init), labels: labels.map { $0 == 1 }) : nil
            var pixel = PixelAUROC()
            for (i, s) in samples.enumerated() {
                try pixel.update(scores: Array(maps[(i * M)..<((i + 1) * M)]), mask: s.mask.pixels.map { $0 > 0.5 })
            }
            let anyAnomalous = samples.contains { $0.mask.pixels.contains { $0 > 0.5 } }
            let pixelAUROC = anyAnomalous ? try pixel.compute().auroc : nil
            let r = DiffusionPassResult(name: name, imageAUROC: image, pixelAUROC: pixelAUROC)
            run.log(String(format: "%@: image AUROC %@, pixel AUROC %@", name,
                           image.map { String(format: "%.4f", $0) } ?? "n/a",
                           pixelAUROC.map { String(format: "%.4f", $0) } ?? "n/a"))
            return r
        }

        let clean = pass(nil, index: -1)
        var results = [try metrics("clean", clean.scores, clean.maps)]
        var byBudget: [String: (scores: [Float], maps: [Float], count: Int)] = [:]
        var budgetOrder: [String] = []
        for (i, a) in attacks.enumerated() {
            let r = pass(a, index: i)
            results.append(try metrics(a.label, r.scores, r.maps))
            let key = "\(a.norm.rawValue) ε=\(a.epsilonText)"
            var w = byBudget[key] ?? (clean.scores, clean.maps, 0)
            if byBudget[key] == nil { budgetOrder.append(key) }
            for b in 0..<samples.count {
                let worse = labels[b] == 1 ? r.scores[b] < w.scores[b] : r.scores[b] > w.scores[b]
                if worse {
                    w.scores[b] = r.scores[b]
                    w.maps.replaceSubrange((b * M)..<((b + 1) * M), with: r.maps[(b * M)..<((b + 1) * M)])
                }
            }
            w.count += 1
            byBudget[key] = w
        }
        for key in budgetOrder {
            if let w = byBudget[key], w.count > 1 { results.append(try metrics("worst case \(key)", w.scores, w.maps)) }
        }
        let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
        struct Report: Encodable {
            var checkpoint: String, category: String, images: Int, tStar: Int, noiseDraws: Int
            var passes: [DiffusionPassResult]
            enum CodingKeys: String, CodingKey {
                case checkpoint, category, images, tStar = "t_star", noiseDraws = "noise_draws", passes
            }
        }
        try AtomicFile.write(String(decoding: try e.encode(Report(checkpoint: checkpoint, category: config.data.category,
                                                                   images: samples.count, tStar: config.diffusion.tStar,
                                                                   noiseDraws: config.diffusion.noiseDraws, passes: results)),
                                    as: UTF8.self) + "\n", to: run.file("metrics.json"))
        run.log("wrote metrics.json")
        return results
    }
}
