import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// What `predict --attack` asks for: PGD or APGD at a budget in a norm (nil: the checkpoint's training
/// `attack.epsilon`), always on the exact top-k image score.
public struct PredictAttack: Sendable, Equatable {
    public var name: AttackName
    public var epsilon: Double?
    public var steps: Int
    public var norm: AttackNorm
    public init(name: AttackName = .pgd, epsilon: Double? = nil, steps: Int = 10, norm: AttackNorm = .linf) {
        self.name = name; self.epsilon = epsilon; self.steps = steps; self.norm = norm
    }
}

/// `patchguard predict` as library code: a trained checkpoint applied to image files of any size.
///
/// The model, `data.image_size` and the scoring settings (`eval.top_k`, `sigma`, `radius`) come from the
/// checkpoint's stored config (no `--config`); the decision threshold and normalisation from its
/// ``ScoreCalibration`` (`--threshold` overrides the threshold; a checkpoint without a calibration needs it).
///
/// Per file: decode (``ImageIO/read(path:)``, gray replicated to RGB), resize to `S × S` the way training and
/// evaluation load images (``ResizeFilter/auto``, a non-square image stretched), score (top-k mean of the patch
/// logits), decide (`score > threshold`), normalise (``ScoreCalibration/normalized(_:threshold:)``, with the
/// threshold in use as its centre so ½ stays the boundary), and write the heat-map overlay at the file's
/// **original size**: the smoothed `S × S` map bilinearly resized to the image, each pixel's map value coloured
/// (jet) by the same normalisation as the score — blue below the threshold, red above, one scale for every image —
/// and blended 50 % over the image.
///
/// With an attack (``AttackSpec``, PGD or APGD, any norm; the target is always the exact top-k image score) each
/// image is attacked towards the opposite decision (normal → maximise the score, anomalous → minimise it); the
/// attacked image and its overlay are written at the model's size `S` (where the attack lives).
///
/// A file that cannot be read or decoded does not stop the job: its row carries the error, the log names the file,
/// the others are predicted (``PredictionReport/failed``; the CLI then exits with status 3).
public struct PredictJob {
    public var checkpoint: String
    /// The files to predict, in order (``PredictInputs``).
    public var files: [String]
    public var config: JobConfig
    public var calibration: ScoreCalibration?
    public var threshold: Double
    public var thresholdSource: String
    public var attack: AttackSpec?
    public var batchSize: Int
    /// From resolving the config (an old checkpoint without a stored config); log them.
    public var warnings: [String]

    /// - Parameters:
    ///   - inputs: files and folders (``PredictInputs/collect(_:)``).
    ///   - threshold: overrides the stored threshold.
    ///   - attack: PGD or APGD on ``PGDTarget/imageTopK``, α the default of ``AttackSpec/alpha``.
    ///   - batchSize: images per forward (default `eval.batch_size`).
    ///   - seed: overrides the stored seed (random starts of the attack).
    public init(checkpoint: String, inputs: [String], threshold: Double? = nil, attack: PredictAttack? = nil,
                batchSize: Int? = nil, seed: UInt64? = nil) throws {
        self.checkpoint = checkpoint
        if DiffusionCheckpoint.isDiffusionCheckpoint(checkpoint) {
            throw PatchGuardError.config("\(checkpoint) is a diffusion model: predict supports PatchGuard checkpoints "
                                         + "only so far (the diffusion trainer stores no decision threshold); use "
                                         + "evaluate or heatmaps on an MVTec-layout folder")
        }
        files = try PredictInputs.collect(inputs)
        (config, warnings) = try EvaluationJob.resolveConfig(checkpoint: checkpoint, configPath: nil,
                                                             overrides: seed.map { ["seed=\($0)"] } ?? [])
        calibration = try ScoreCalibration.stored(in: try SafeTensorsFile.load(path: checkpoint))
        if let threshold {
            guard threshold.isFinite else {
                throw PatchGuardError.invalidArgument("--threshold must be a finite number, got \(threshold)")
            }
            self.threshold = threshold; thresholdSource = "--threshold"
        } else if let calibration {
            self.threshold = calibration.threshold; thresholdSource = "checkpoint"
        } else {
            throw PatchGuardError.config(
                "\(checkpoint) has no stored decision threshold (a checkpoint from before calibration, an "
                + "intermediate epoch's, or trained with train.validation_fraction = 0): pass --threshold SCORE "
                + "(evaluate's metrics.json lists the test set's F1-max threshold under \"thresholds\")")
        }
        if let a = attack {
            guard a.name != .suite else {
                throw PatchGuardError.invalidArgument("predict --attack: pgd or apgd (a suite has no single attacked image)")
            }
            let spec = AttackSpec(name: a.name, epsilon: a.epsilon ?? config.attack.epsilon, steps: a.steps,
                                  target: .imageTopK, norm: a.norm)
            try spec.validate(key: "--attack")
            self.attack = spec.steps > 0 && spec.epsilon > 0 ? spec : nil
        }
        self.batchSize = batchSize ?? max(1, config.eval.batchSize)
        guard self.batchSize >= 1 else {
            throw PatchGuardError.invalidArgument("--batch-size must be ≥ 1, got \(self.batchSize)")
        }
    }

    /// The normalisation's σ: the calibration's, or 1 (logit units) without one.
    public var scale: Double { calibration?.scale ?? 1 }

    func normalized(_ v: Double) -> Double { ScoreCalibration.normalized(v, threshold: threshold, scale: scale) }

    public static let overlaysFolder = "overlays", attackedFolder = "attacked"

    /// Predicts every file, writes the overlays, `predictions.csv` and `predictions.json` into `run` and returns
    /// the report. Throws only for what stops the whole job (the checkpoint, a non-finite model output, a write).
    public func run(in run: RunDirectory, showProgress: Bool = true) throws -> PredictionReport {
        for w in warnings { run.log("warning: " + w) }
        let runPath = (URL(fileURLWithPath: run.path).standardizedFileURL.path as NSString).appendingPathComponent("")
        let inputs = files.filter { !URL(fileURLWithPath: $0).standardizedFileURL.path.hasPrefix(runPath + "/") }
        if inputs.count < files.count {
            run.log("skipping \(files.count - inputs.count) file(s) inside the run directory \(run.path)")
        }
        var rng = SeededRNG(seed: config.seed)
        let model = try PatchGuardModel<Float>(config: config, maxBatch: batchSize, using: &rng)
        let state = try model.loadCheckpoint(path: checkpoint)
        run.log("checkpoint: \(checkpoint) (epoch \(state.epoch)); model: \(model.summary)")
        run.log(calibration.map { "calibration: " + $0.summary } ?? "calibration: none stored")
        run.log(String(format: "threshold %.6g (%@); %d file(s)", threshold, thresholdSource, inputs.count))
        let s = model.imageSize, plane = s * s, g = s / model.patchSize
        let topK = config.eval.topK
        let scorer = try AnomalyScorer(config: ScoringConfig(topK: topK, sigma: config.eval.sigma, radius: config.eval.radius),
                                       gridHeight: g, gridWidth: g, imageHeight: s, imageWidth: s)
        let detector = try PatchLogitDetector(model, topK: topK)
        for folder in [Self.overlaysFolder] + (attack == nil ? [] : [Self.attackedFolder]) {
            do { try FileManager.default.createDirectory(atPath: run.file(folder), withIntermediateDirectories: true) }
            catch { throw PatchGuardError.io(path: run.file(folder), reason: "cannot create folder (\(error.localizedDescription))") }
        }
        let perImage = 1 + (attack.map { $0.stepsPerImage + 1 } ?? 0)
        let bar = showProgress ? ProgressBar("predict", total: inputs.count * perImage, unit: attack == nil ? "img" : "img·step") : nil
        let names = inputs.enumerated().map { Self.fileStem(index: $0, path: $1) }
        var predictions = [Prediction]()
        predictions.reserveCapacity(inputs.count)

        for (batchIndex, lo) in stride(from: 0, to: inputs.count, by: batchSize).enumerated() {
            let indices = Array(lo..<min(inputs.count, lo + batchSize))
            // Decode in parallel; a failure stays with its file.
            var decoded = [Result<Image, Error>?](repeating: nil, count: indices.count)
            decoded.withUnsafeMutableBufferPointer { out in
                parallelFor(indices.count) { k in out[k] = Result { try ImageIO.read(path: inputs[indices[k]]) } }
            }
            var ok = [(index: Int, original: Image)]()
            var rows = [Int: Prediction]()
            for (k, i) in indices.enumerated() {
                switch decoded[k] {
                case .success(let image)?: ok.append((i, image))
                case .failure(let error)?:
                    let reason = (error as? PatchGuardError).map(Self.reason) ?? "\(error)"
                    run.log("error: \(inputs[i]): \(reason) (skipped; the other files are still predicted)")
                    rows[i] = Prediction(index: i, path: inputs[i], error: reason)
                case nil: rows[i] = Prediction(index: i, path: inputs[i], error: "internal: not decoded")
                }
            }
            if !ok.isEmpty {
                let b = ok.count
                var x = [Float](); x.reserveCapacity(b * 3 * plane)
                for item in ok { x += item.original.resized(width: s, height: s, filter: .auto).pixels }
                let clean = try scoreBatch(x, b, model: model, scorer: scorer, paths: ok.map { inputs[$0.index] })
                bar?.advance(b)
                var attacked: (x: [Float], scores: [Float], maps: [ScoreMap])?
                if let attack {
                    // Labels at the detector's map resolution: all 1 (anomalous → push the score down), all 0.
                    var labels = [Float](repeating: 0, count: b * detector.mapCount)
                    for k in 0..<b where Double(clean.scores[k]) > threshold {
                        for m in 0..<detector.mapCount { labels[k * detector.mapCount + m] = 1 }
                    }
                    var attackRNG = SeededRNG(seed: config.seed, stream: UInt64(batchIndex))
                    let xa = attack.run(on: detector, images: x, labels: labels, batch: b, using: &attackRNG,
                                        onStep: { _ in bar?.advance(b) })
                    let scored = try scoreBatch(xa, b, model: model, scorer: scorer,
                                                paths: ok.map { inputs[$0.index] + " (attacked)" })
                    bar?.advance(b)
                    attacked = (xa, scored.scores, scored.maps)
                }
                var written = [Error?](repeating: nil, count: b)
                var made = [Prediction?](repeating: nil, count: b)
                written.withUnsafeMutableBufferPointer { errs in
                    made.withUnsafeMutableBufferPointer { out in
                        parallelFor(b) { k in
                            do {
                                let i = ok[k].index
                                out[k] = try predictionFiles(index: i, path: inputs[i], stem: names[i], original: ok[k].original,
                                                             score: clean.scores[k], map: clean.maps[k],
                                                             attacked: attacked.map { a in
                                                                 (Array(a.x[(k * 3 * plane)..<((k + 1) * 3 * plane)]), a.scores[k], a.maps[k])
                                                             }, in: run, size: s)
                            } catch { errs[k] = error }
                        }
                    }
                }
                if let first = written.compactMap({ $0 }).first { throw first }
                for (k, item) in ok.enumerated() { rows[item.index] = made[k] }
            }
            bar?.advance((indices.count - ok.count) * perImage)
            predictions += indices.compactMap { rows[$0] }
        }

        let report = PredictionReport(
            checkpoint: checkpoint, imageSize: s, topK: topK, threshold: threshold, thresholdSource: thresholdSource,
            thresholdFPR: calibration?.thresholdFPR, validationImages: calibration?.validationImages,
            normalization: .init(center: threshold, scale: scale),
            attack: attack.map { .init(name: $0.name.rawValue, norm: $0.norm.rawValue, epsilon: $0.epsilon,
                                       steps: $0.steps, alpha: $0.alpha, target: $0.target.rawValue) },
            predictions: predictions)
        try AtomicFile.write(try report.jsonData(), to: run.file(PredictionReport.jsonFile))
        try AtomicFile.write(report.csv(), to: run.file(PredictionReport.csvFile))
        run.log("wrote \(run.file(PredictionReport.csvFile)), \(run.file(PredictionReport.jsonFile)) and "
                + "\(inputs.count - report.failed) overlay(s) in \(run.file(Self.overlaysFolder))")
        return report
    }

    /// Image scores and `S × S` maps of a packed batch; a non-finite logit is an error naming the file.
    func scoreBatch(_ x: [Float], _ b: Int, model: PatchGuardModel<Float>, scorer: AnomalyScorer,
                    paths: [String]) throws -> (scores: [Float], maps: [ScoreMap]) {
        let logits = x.withUnsafeBufferPointer { model.patchLogits($0.baseAddress!, batch: b) }
        if let bad = logits.firstIndex(where: { !$0.isFinite }) {
            throw PatchGuardError.numeric("the model returned a non-finite logit (\(logits[bad])) for "
                                          + paths[bad / model.numPatches])
        }
        let scored = try scorer.score(batchLogits: logits, count: b)
        return (scored.imageScores, scored.maps)
    }

    /// Writes one file's overlay (and attacked image + overlay) and returns its row.
    func predictionFiles(index: Int, path: String, stem: String, original: Image, score: Float, map: ScoreMap,
                         attacked: (x: [Float], score: Float, map: ScoreMap)?, in run: RunDirectory,
                         size s: Int) throws -> Prediction {
        let overlay = Self.overlaysFolder + "/" + stem + ".png"
        let big = Image(width: s, height: s, channels: 1, pixels: map.values)
            .resized(width: original.width, height: original.height, filter: .bilinear)
        try ImageIO.writePNG(overlayImage(original, map: big.pixels), path: run.file(overlay))
        let clean = Double(score) > threshold
        var row = Prediction(index: index, path: path, width: original.width, height: original.height,
                             score: Double(score), normalizedScore: normalized(Double(score)), anomalous: clean,
                             overlay: overlay)
        if let attacked {
            let image = Self.attackedFolder + "/" + stem + ".png"
            let attackedOverlay = Self.attackedFolder + "/" + stem + "_overlay.png"
            let picture = Image(width: s, height: s, channels: 3, pixels: attacked.x)
            try ImageIO.writePNG(picture, path: run.file(image))
            try ImageIO.writePNG(overlayImage(picture, map: attacked.map.values), path: run.file(attackedOverlay))
            row.attacked = AttackedPrediction(goal: clean ? "normal" : "anomalous", score: Double(attacked.score),
                                              normalizedScore: normalized(Double(attacked.score)),
                                              anomalous: Double(attacked.score) > threshold, image: image,
                                              overlay: attackedOverlay)
        }
        return row
    }

    /// `½·image + ½·jet(u(map))` (RGB, the image's size); `map` has one value per pixel.
    func overlayImage(_ image: Image, map: [Float]) -> Image {
        let units = map.map { v -> Float in
            let u = Float(normalized(Double(v)))
            return u.isNaN ? 0 : min(1, max(0, u))
        }
        return Image(width: image.width, height: image.height, channels: 3,
                     pixels: JetColormap.overlay(image.pixels, units: units, opacity: 0.5))
    }

    /// `0007_<stem>`: input index and file stem reduced to `[A-Za-z0-9._-]`.
    public static func fileStem(index: Int, path: String) -> String {
        let stem = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let clean = String(stem.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") ? $0 : "_" })
        return String(format: "%04d", index) + "_" + clean
    }

    /// The reason of an error about a file (without the path, which the row already has).
    static func reason(_ e: PatchGuardError) -> String {
        if case let .io(_, reason) = e { return reason }
        return e.description
    }
}
