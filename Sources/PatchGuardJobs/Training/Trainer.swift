import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// One epoch's numbers, as logged to `train_log.jsonl`.
public struct EpochRecord: Codable, Equatable, Sendable {
    public var epoch: Int
    public var loss: Double
    public var bce: Double
    public var reg: Double
    public var lr: Double
    public var seconds: Double
    public var imagesPerSecond: Double
    /// Validation image AUROC, clean and under the validation attack (when `train.validation_fraction` > 0).
    public var valCleanAUROC: Double?
    public var valRobustAUROC: Double?
    /// ε of the epoch's training attack (nil in clean epochs).
    public var epsilon: Double?

    enum CodingKeys: String, CodingKey {
        case epoch, loss, bce, reg, lr, seconds, imagesPerSecond = "images_per_s"
        case valCleanAUROC = "val_clean_auroc", valRobustAUROC = "val_robust_auroc", epsilon
    }
}

public struct TrainSummary: Sendable {
    public var epochs: [EpochRecord]
    public var checkpoint: String
    public var seconds: Double
}

/// PatchGuard's adversarial training loop (DESIGN.md §2):
///
///     for each epoch e (lr from the cosine schedule), for each batch of normal images x:
///         L  = loss(x, 0) + loss(PGD(x, 0), 0)                       clean and attacked normals
///            + loss(x̃, m) + loss(PGD(x̃, m), m)                      pseudo-anomalies x̃ with patch labels m
///         one AdamW step on ViT + discriminator
///
/// During the first `train.clean_warmup_epochs` epochs (default 0) the two PGD terms are left out. A seeded share
/// of the normals (`train.validation_fraction`, ``ValidationSplit``) is held back from every batch; after the last
/// epoch it calibrates the decision threshold stored in the checkpoint (``ScoreCalibration``).
/// `loss` = per-patch BCE + attention KL regulariser. Gradients of the four passes accumulate (the same as one
/// backward of their sum). PGD runs in evaluation mode (no dropout), or with `attack.train_mode` in training
/// mode (dropout on, as the official code; ``TrainingModeDetector``). Every random choice derives from
/// (seed, epoch, batch), so a run resumed from an epoch checkpoint reaches the same weights as an uninterrupted
/// one. A non-finite loss stops training with the last good checkpoint left in place; so do weights that hold a
/// NaN or infinity, or give non-finite logits on the epoch's last batch, when a checkpoint is due (such weights are
/// never written). Resuming a run already past `train.epochs` is an error; a checkpoint whose metadata is not a
/// checkpoint's is refused naming its path.
public final class Trainer {
    public let config: JobConfig
    public let run: RunDirectory
    /// Test hook: throw after this many batches (simulates a killed run).
    var stopAfterBatches: Int?
    /// The normal training images held back from training (``ValidationSplit``, `train.validation_fraction`),
    /// set by ``train(resume:)``: scored after the last epoch to store the decision threshold
    /// (``ScoreCalibration``); free for model selection.
    public internal(set) var validation: [LoadedSample] = []
    /// False when a resumed checkpoint was trained with another split (``holdOutValidation(_:resume:)``).
    public internal(set) var validationIsClean = true

    public init(config: JobConfig, run: RunDirectory) {
        self.config = config
        self.run = run
    }

    public var checkpointPath: String { run.file("checkpoint.safetensors") }
    /// The selected weights (`train.select_by`), written beside the checkpoint; the checkpoint stays the last epoch
    /// (what `--resume` continues from).
    public var bestPath: String { run.file("best.safetensors") }
    var bestRecordPath: String { run.file("best.json") }

    /// Checks, before anything is written into the run directory, that the run at `runDirectory` can be resumed
    /// to `config.train.epochs`: its checkpoint exists, its metadata is valid and it is not past that epoch.
    /// Returns the checkpoint's epoch.
    @discardableResult
    public static func checkResumable(runDirectory: String, config: JobConfig) throws -> Int {
        let path = (runDirectory as NSString).appendingPathComponent("checkpoint.safetensors")
        guard FileManager.default.fileExists(atPath: path) else {
            throw PatchGuardError.io(path: path, reason: "no checkpoint to resume from")
        }
        let epoch = try PatchGuardModel<Float>.checkpointState(of: try SafeTensorsFile.load(path: path)).epoch
        try checkResumable(epoch: epoch, checkpoint: path, epochs: config.train.epochs)
        return epoch
    }

    public static func checkResumable(epoch: Int, checkpoint: String, epochs: Int) throws {
        if epoch > epochs {
            throw PatchGuardError.config(
                "--resume: \(checkpoint) is at epoch \(epoch), past train.epochs = \(epochs); " +
                "nothing to resume (set train.epochs above \(epoch) to train further)")
        }
    }
    var logPath: String { run.file("train_log.jsonl") }

    /// Loads the category's training images (with foreground masks where present).
    func loadTrainingSet() throws -> [LoadedSample] {
        let category = try config.data.scanCategory()
        run.log("data: \(category.summary)")
        let log = run.log
        let loader = try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: config.data.cacheMB << 20,
                                      maskResize: config.data.maskResize,
                                      warn: { log($0) })
        let start = Date()
        let samples = try loader.load(category.train)
        let withMasks = samples.filter { $0.foreground != nil }.count
        run.log(String(format: "loaded %d training images at %d px in %.1f s (%d with foreground masks)",
                       samples.count, config.data.imageSize, Date().timeIntervalSince(start), withMasks))
        return try preparingForegrounds(samples, config: config, log: run.log)
    }

    public func train(resume: Bool = false) throws -> TrainSummary {
        let trainingStart = Date()
        let samples = holdOutValidation(try loadTrainingSet(), resume: resume)
        var rng = SeededRNG(seed: config.seed)
        let model = try PatchGuardModel<Float>(config: config, using: &rng)
        let optimizer = PatchGuardOptimizerState(model: model, weightDecay: config.train.weightDecay)
        if !config.model.weights.isEmpty && !resume {
            let warnings = try model.loadBackboneWeights(path: config.model.weights)
            run.log("backbone weights: \(config.model.weights)")
            // A PatchGuard checkpoint as backbone (fine-tuning a trained run) also holds the discriminator and the
            // optimizer state: one line for those instead of one warning per tensor.
            let unused = warnings.filter { $0.hasPrefix("unused tensor") }
            for w in warnings where !w.hasPrefix("unused tensor") { run.log("warning: \(w)") }
            if !unused.isEmpty {
                run.log("backbone weights: \(unused.count) tensors that are not the backbone's skipped (a PatchGuard "
                        + "checkpoint's discriminator and optimizer state, or a classifier head)")
            }
        }
        var startEpoch = 0
        var history: [EpochRecord] = []
        if resume {
            guard FileManager.default.fileExists(atPath: checkpointPath) else {
                throw PatchGuardError.io(path: checkpointPath, reason: "no checkpoint to resume from")
            }
            let state = try model.loadCheckpoint(path: checkpointPath, optimizer: optimizer)
            startEpoch = state.epoch
            try Self.checkResumable(epoch: startEpoch, checkpoint: checkpointPath, epochs: config.train.epochs)
            history = try readHistory().filter { $0.epoch <= startEpoch }
            run.log("resuming after epoch \(startEpoch) from \(checkpointPath)")
        }
        // The checkpoint that really exists on disk, for every message that points the user at one.
        var savedEpoch: Int? = resume ? startEpoch : nil
        func lastGood() -> String {
            savedEpoch.map { "The last good checkpoint is \(checkpointPath) (epoch \($0))." }
                ?? "No checkpoint was written (train.checkpoint_every = \(config.train.checkpointEvery))."
        }
        run.log("model: \(model.summary)")
        let synthesizer = try PseudoAnomalySynthesizer(config: config.synthesis)
        let sampler = try BatchSampler(count: samples.count, batchSize: config.train.batchSize, seed: config.seed,
                                       shuffle: true, dropLast: false)
        let probe = validation.isEmpty ? nil
            : try ValidationProbe(samples: validation, synthesizer: synthesizer, config: config, patchSize: model.patchSize)
        // attack.train_mode: the attack sees the model with dropout on (masks reseeded per batch below).
        let trainModeDetector = config.attack.trainMode ? TrainingModeDetector(model, rng: SeededRNG(seed: config.seed)) : nil
        let attackBase: PatchDetector = trainModeDetector.map { $0 as PatchDetector } ?? model
        let trainDetector = try PatchLogitDetector(attackBase, topK: config.eval.topK)
        var best = readBest()
        let S = config.data.imageSize
        var batchesDone = 0
        var lastBatch: (images: [Float], count: Int) = ([], 0)

        for epoch in startEpoch..<config.train.epochs {
            let lr = cosineLearningRate(base: config.train.lr, minFactor: config.train.lrMinFactor,
                                        epoch: epoch, epochs: config.train.epochs)
            let batches = sampler.batches(epoch: epoch)
            let adversarial = config.train.isAdversarial(epoch: epoch, attack: config.attack)
            let passes = adversarial ? 4 : 2
            let adversarialEpoch = epoch - config.train.cleanWarmupEpochs
            let epochEpsilon = adversarial ? config.attack.trainingAttack(adversarialEpoch: adversarialEpoch, batch: 0).epsilon : nil
            if adversarial && epoch == config.train.cleanWarmupEpochs && epoch > 0 {
                let a = config.attack
                let targets = a.trainTargets == [.patches] ? ""
                    : ", targets \(a.trainTargets.map(\.rawValue).joined(separator: "/"))"
                run.log("clean warm-up done after \(epoch) epochs; adversarial training (PGD-\(a.trainSteps)" +
                        "\(a.randomStart ? " random start" : "")\(targets), " +
                        "ε = \(EvaluationReport.fractionOf255(a.epsilon))" +
                        (a.epsilonRampEpochs > 0 ? " ramped over \(a.epsilonRampEpochs) epochs" : "") +
                        ") from epoch \(epoch + 1)")
            }
            let bar = ProgressBar("epoch \(epoch + 1)/\(config.train.epochs)", total: samples.count * passes, unit: "img")
            var sumBCE = 0.0, sumReg = 0.0, seen = 0
            for (bi, indices) in batches.enumerated() {
                if let stop = stopAfterBatches, batchesDone >= stop {
                    throw PatchGuardError.numeric("training stopped by test hook after \(batchesDone) batches")
                }
                let batch = try Batch.pack(samples, indices: indices)
                let B = batch.count
                lastBatch = (batch.images, B)
                let streamBase = UInt64(epoch) << 32 | UInt64(bi) << 4
                // Pseudo-anomalies, inside the foreground (textures and mask-less images: whole image).
                let images = (0..<B).map { k in samples[indices[k]].image }
                let foregrounds: [Image]? = config.data.categoryType == .texture ? nil
                    : (0..<B).map { k in samples[indices[k]].foreground ?? Image(width: S, height: S, channels: 1, value: 1) }
                let anomalies = try synthesizer.synthesizeBatch(images: images, foregrounds: foregrounds,
                                                                seed: config.seed &+ UInt64(epoch) &* 1_000_003,
                                                                batchIndex: bi)
                var anomalyImages = [Float](); anomalyImages.reserveCapacity(B * 3 * S * S)
                var anomalyLabels = [Float]()
                for a in anomalies {
                    anomalyImages += a.image.pixels
                    anomalyLabels += try patchLabels(mask: a.mask, patchSize: model.patchSize)
                }
                let normalLabels = [Float](repeating: 0, count: B * model.numPatches)

                model.zeroGradients()
                var inputs: [([Float], [Float])] = [(batch.images, normalLabels)]
                var attackRNG = SeededRNG(seed: config.seed, stream: streamBase | 1)
                trainModeDetector?.reseed(SeededRNG(seed: config.seed, stream: streamBase | 2))
                let attack = config.attack.trainingAttack(adversarialEpoch: max(0, adversarialEpoch), batch: bi)
                if adversarial {
                    inputs.append((attack.run(on: trainDetector, images: batch.images, labels: normalLabels, batch: B,
                                              using: &attackRNG), normalLabels))
                }
                inputs.append((anomalyImages, anomalyLabels))
                if adversarial {
                    inputs.append((attack.run(on: trainDetector, images: anomalyImages, labels: anomalyLabels, batch: B,
                                              using: &attackRNG), anomalyLabels))
                }
                var batchBCE = 0.0, batchReg = 0.0
                for (pass, (x, y)) in inputs.enumerated() {
                    var dropoutRNG = SeededRNG(seed: config.seed, stream: streamBase | UInt64(8 + pass))
                    let parts = model.trainingPass(images: x, labels: y, batch: B, using: &dropoutRNG)
                    guard parts.bce.isFinite, parts.reg.isFinite else {
                        throw PatchGuardError.numeric(
                            "non-finite loss (bce \(parts.bce), reg \(parts.reg)) at epoch \(epoch + 1), batch \(bi + 1); " +
                            "training stopped. " + lastGood())
                    }
                    batchBCE += parts.bce; batchReg += parts.reg
                    bar.advance(B, info: String(format: "loss %.4f", (sumBCE + sumReg + (batchBCE + batchReg) * Double(B)) / Double(seen + B)))
                }
                optimizer.step(model: model, lr: lr)
                sumBCE += batchBCE * Double(B); sumReg += batchReg * Double(B); seen += B
                batchesDone += 1
            }
            let seconds = bar.elapsed
            var record = EpochRecord(epoch: epoch + 1, loss: (sumBCE + sumReg) / Double(seen), bce: sumBCE / Double(seen),
                                     reg: sumReg / Double(seen), lr: lr, seconds: seconds,
                                     imagesPerSecond: Double(seen * passes) / seconds, epsilon: epochEpsilon)
            var validationLine = ""
            var overfit: String?
            if let probe {
                // Weights that hold or give a NaN stop here, with the checkpoint block's message, before the
                // validation scores could meet it.
                if let problem = Self.unhealthy(model, optimizer: optimizer, probe: lastBatch) {
                    throw PatchGuardError.numeric("after epoch \(epoch + 1): \(problem); training stopped and the " +
                                                  "checkpoint not written (lower train.lr?). " + lastGood())
                }
                let selecting = config.train.selectBy == .validationRobust
                let v = try probe.measure(model, epsilon: selecting ? config.attack.epsilon : 0)
                record.valCleanAUROC = v.cleanAUROC
                validationLine = String(format: "  val AUROC %.4f", v.cleanAUROC)
                if selecting {
                    record.valRobustAUROC = v.robustAUROC
                    validationLine += String(format: ", PGD-%d top-k %.4f", config.train.validationSteps, v.robustAUROC)
                }
                if config.train.selectBy == .validationRobust {
                    if best.map({ (v.robustAUROC, v.cleanAUROC) > ($0.record.robustAUROC, $0.record.cleanAUROC) }) ?? true {
                        try model.saveCheckpoint(path: bestPath, epoch: epoch + 1, config: config, optimizer: nil)
                        best = BestRecord(epoch: epoch + 1, record: v)
                        try writeBest(best!)
                        validationLine += " (best so far: best.safetensors)"
                    } else if let b = best, adversarial,
                              Self.overfitting(best: b.record.robustAUROC, now: v.robustAUROC,
                                               threshold: config.train.overfitStop) {
                        overfit = String(format: "validation robust AUROC fell from %.4f (epoch %d) to %.4f: " +
                                         "catastrophic overfitting to the training attack; stopping (train.overfit_stop " +
                                         "= %g). best.safetensors holds epoch %d", b.record.robustAUROC, b.epoch,
                                         v.robustAUROC, config.train.overfitStop, b.epoch)
                    }
                }
            }
            history.append(record)
            run.log(String(format: "epoch %d/%d  loss %.4f (bce %.4f, reg %.3e)  lr %.2e  %.1f s  %.2f img/s",
                           record.epoch, config.train.epochs, record.loss, record.bce, record.reg, lr, seconds,
                           record.imagesPerSecond) + validationLine)
            let last = epoch + 1 == config.train.epochs || overfit != nil
            if last || (config.train.checkpointEvery > 0 && (epoch + 1) % config.train.checkpointEvery == 0) {
                if let problem = Self.unhealthy(model, optimizer: optimizer, probe: lastBatch) {
                    throw PatchGuardError.numeric("after epoch \(epoch + 1): \(problem); training stopped and the " +
                                                  "checkpoint not written (lower train.lr?). " + lastGood())
                }
                try model.saveCheckpoint(path: checkpointPath, epoch: epoch + 1, config: config, optimizer: optimizer)
                try writeHistory(history)
                savedEpoch = epoch + 1
            }
            if let overfit { run.log(overfit); break }
        }
        if startEpoch >= config.train.epochs {
            run.log("nothing to do: the checkpoint is already at epoch \(startEpoch) of \(config.train.epochs)")
        }
        // The final model's decision threshold, from the held-back normals, into the final checkpoint's metadata.
        if savedEpoch == config.train.epochs {
            try calibrateThreshold(model, optimizer: optimizer, epoch: config.train.epochs)
        }
        // The selected epoch's weights get their own threshold (they score differently from the last epoch's).
        if config.train.selectBy == .validationRobust, let b = best, savedEpoch != nil {
            var unused = SeededRNG(seed: config.seed)
            let selected = try PatchGuardModel<Float>(config: config, using: &unused)
            _ = try selected.loadCheckpoint(path: bestPath)
            try calibrateThreshold(selected, optimizer: nil, epoch: b.epoch, path: bestPath)
        }
        return TrainSummary(epochs: history, checkpoint: checkpointPath, seconds: Date().timeIntervalSince(trainingStart))
    }

    /// Why the model is not fit to be a "good" checkpoint, or nil: a parameter or optimizer moment holds a NaN
    /// or infinity, or the patch logits of `probe` (clean images) are not all finite — weights of 1e30 are finite
    /// but evaluate to NaN.
    static func unhealthy(_ model: PatchGuardModel<Float>, optimizer: PatchGuardOptimizerState<Float>?,
                          probe: (images: [Float], count: Int)) -> String? {
        if let bad = model.nonFiniteTensor(optimizer: optimizer) { return "tensor '\(bad)' holds a NaN or infinity" }
        guard probe.count > 0 else { return nil }
        let logits = probe.images.withUnsafeBufferPointer { model.patchLogits($0.baseAddress!, batch: probe.count) }
        if let i = logits.firstIndex(where: { !$0.isFinite }) {
            return "the weights give a non-finite patch logit (\(logits[i])) on a training batch"
        }
        return nil
    }

    /// Whether a fall of the validation robust AUROC from `best` to `now` is catastrophic overfitting by
    /// `train.overfit_stop` (`threshold` 0 = never).
    static func overfitting(best: Double, now: Double, threshold: Double) -> Bool {
        threshold > 0 && best - now > threshold
    }

    /// The epoch `best.safetensors` holds and what it measured (`best.json`).
    struct BestRecord: Codable { var epoch: Int; var record: ValidationRecord }

    func readBest() -> BestRecord? {
        guard FileManager.default.fileExists(atPath: bestPath),
              let data = FileManager.default.contents(atPath: bestRecordPath) else { return nil }
        return try? JSONDecoder().decode(BestRecord.self, from: data)
    }

    func writeBest(_ best: BestRecord) throws {
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicFile.write(String(decoding: try e.encode(best), as: UTF8.self) + "\n", to: bestRecordPath)
    }

    func writeHistory(_ history: [EpochRecord]) throws { try JSONLines.write(history, to: logPath) }

    func readHistory() throws -> [EpochRecord] { try JSONLines.read(EpochRecord.self, from: logPath) }
}
