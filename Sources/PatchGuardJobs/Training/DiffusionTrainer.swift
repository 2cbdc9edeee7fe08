import Foundation
import PatchGuardCore
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// One epoch of diffusion training, as logged to `train_log.jsonl`.
public struct DiffusionEpochRecord: Codable, Equatable, Sendable {
    public var epoch: Int
    public var loss: Double
    public var lr: Double
    public var seconds: Double
    public var imagesPerSecond: Double

    enum CodingKeys: String, CodingKey { case epoch, loss, lr, seconds, imagesPerSecond = "images_per_s" }
}

public struct DiffusionTrainSummary: Sendable {
    public var epochs: [DiffusionEpochRecord]
    public var checkpoint: String
    public var seconds: Double
}

/// DDPM training of the diffusion detector on a category's normal images (`model.kind = "diffusion"`):
///
///     for each epoch e (lr from the cosine schedule of train.lr / train.lr_min_factor), each batch x:
///         t ~ U{0…T−1}, ε ~ N(0, I) per image;  L = mean((ε_θ(√ᾱ_t·(2x−1) + √(1−ᾱ_t)·ε, t) − ε)²)
///         one AdamW step;  EMA ← d·EMA + (1 − d)·θ
///     at each checkpoint: the mean map of the training images (EMA weights) and an atomic checkpoint
///
/// The same guarantees as PatchGuard's ``Trainer``: every random choice derives from (seed, epoch, batch), so a run
/// resumed from a checkpoint reaches the same weights as an uninterrupted one; a non-finite loss stops training
/// with the last good checkpoint in place, and weights holding a NaN or infinity are never written.
public final class DiffusionTrainer {
    public let config: JobConfig
    public let run: RunDirectory
    /// Test hook: throw after this many batches (simulates a killed run).
    var stopAfterBatches: Int?

    public init(config: JobConfig, run: RunDirectory) {
        self.config = config
        self.run = run
    }

    public var checkpointPath: String { run.file("checkpoint.safetensors") }
    var logPath: String { run.file("train_log.jsonl") }

    /// Seed of the detector's noise when the mean map is computed (fixed: the map is part of the checkpoint).
    static func calibrationSeed(_ seed: UInt64) -> UInt64 { seed ^ 0xD1FF_0510 }

    public func train(resume: Bool = false) throws -> DiffusionTrainSummary {
        let start = Date()
        let category = try config.data.scanCategory()
        run.log("data: \(category.summary)")
        let samples = try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: config.data.cacheMB << 20)
            .load(category.train)
        let S = config.data.imageSize, per = 3 * S * S, B = config.train.batchSize
        let model = try DiffusionModel(config: config.diffusion, imageSize: S, maxBatch: B,
                                       weightDecay: config.train.weightDecay, seed: config.seed)
        run.log("model: diffusion U-Net \(model.unet.config.blockOutChannels), \(model.unet.parameterCount) parameters, "
                + "T = \(config.diffusion.timesteps), t* = \(config.diffusion.tStar)")
        var startEpoch = 0
        var history: [DiffusionEpochRecord] = []
        if resume {
            guard FileManager.default.fileExists(atPath: checkpointPath) else {
                throw PatchGuardError.io(path: checkpointPath, reason: "no checkpoint to resume from")
            }
            startEpoch = try model.loadCheckpoint(path: checkpointPath)
            try Trainer.checkResumable(epoch: startEpoch, checkpoint: checkpointPath, epochs: config.train.epochs)
            history = try readHistory().filter { $0.epoch <= startEpoch }
            run.log("resuming after epoch \(startEpoch) from \(checkpointPath)")
        }
        var savedEpoch: Int? = resume ? startEpoch : nil
        func lastGood() -> String {
            savedEpoch.map { "The last good checkpoint is \(checkpointPath) (epoch \($0))." }
                ?? "No checkpoint was written (train.checkpoint_every = \(config.train.checkpointEvery))."
        }
        let sampler = try BatchSampler(count: samples.count, batchSize: B, seed: config.seed, shuffle: true,
                                       dropLast: false)
        let configJSON = String(decoding: try config.resolvedJSON(), as: UTF8.self)
        let scratch = Tensor<Float>(shape: [B, 3, S, S]), noise = Tensor<Float>(shape: [B, 3, S, S])
        var batchesDone = 0
        for epoch in startEpoch..<config.train.epochs {
            let lr = cosineLearningRate(base: config.train.lr, minFactor: config.train.lrMinFactor, epoch: epoch,
                                        epochs: config.train.epochs)
            let bar = ProgressBar("epoch \(epoch + 1)/\(config.train.epochs)", total: samples.count, unit: "img")
            var sum = 0.0, seen = 0
            for (bi, indices) in sampler.batches(epoch: epoch).enumerated() {
                if let stop = stopAfterBatches, batchesDone >= stop {
                    throw PatchGuardError.numeric("training stopped by test hook after \(batchesDone) batches")
                }
                let batch = try Batch.pack(samples, indices: indices)
                let n = batch.count
                var rng = SeededRNG(seed: config.seed, stream: UInt64(epoch) << 32 | UInt64(bi))
                let ts = (0..<n).map { _ in rng.int(in: 0..<model.schedule.steps) }
                rng.fillNormal(UnsafeMutableBufferPointer(start: noise.data, count: n * per), std: 1)
                model.unet.gradients.zero()
                let loss = try batch.images.withUnsafeBufferPointer {
                    try DDPMLoss.step(model.unet, schedule: model.schedule, images: $0.baseAddress!, batch: n,
                                      scratch: scratch.data, noise: noise.data, timesteps: ts)
                }
                guard loss.isFinite else {
                    throw PatchGuardError.numeric("non-finite loss (\(loss)) at epoch \(epoch + 1), batch \(bi + 1); "
                                                  + "training stopped. " + lastGood())
                }
                model.optimizer.update(parameters: model.unet.parameters, gradients: model.unet.gradients, lr: lr,
                                       kernels: model.unet.kernels)
                model.updateEMA()
                sum += loss * Double(n); seen += n
                batchesDone += 1
                bar.advance(n, info: String(format: "loss %.4f", sum / Double(seen)))
            }
            let seconds = bar.elapsed
            let record = DiffusionEpochRecord(epoch: epoch + 1, loss: sum / Double(seen), lr: lr, seconds: seconds,
                                              imagesPerSecond: Double(seen) / seconds)
            history.append(record)
            run.log(String(format: "epoch %d/%d  loss %.4f  lr %.2e  %.1f s  %.2f img/s", record.epoch,
                           config.train.epochs, record.loss, lr, seconds, record.imagesPerSecond))
            let last = epoch + 1 == config.train.epochs
            if last || (config.train.checkpointEvery > 0 && (epoch + 1) % config.train.checkpointEvery == 0) {
                if let bad = model.nonFiniteTensor() {
                    throw PatchGuardError.numeric("after epoch \(epoch + 1): tensor '\(bad)' holds a NaN or infinity; "
                                                  + "training stopped and the checkpoint not written (lower train.lr?). "
                                                  + lastGood())
                }
                try calibrate(model, samples)
                try model.saveCheckpoint(path: checkpointPath, epoch: epoch + 1, configJSON: configJSON)
                try writeHistory(history)
                savedEpoch = epoch + 1
            }
        }
        if startEpoch >= config.train.epochs {
            run.log("nothing to do: the checkpoint is already at epoch \(startEpoch) of \(config.train.epochs)")
        }
        return DiffusionTrainSummary(epochs: history, checkpoint: checkpointPath, seconds: Date().timeIntervalSince(start))
    }

    /// The mean anomaly map of the training images under the EMA weights (fixed noise seed).
    func calibrate(_ model: DiffusionModel, _ samples: [LoadedSample]) throws {
        try Self.calibrate(model, samples, config: config)
    }

    /// ``calibrate(_:_:)`` at `config`'s t*, noise draws, batch size and seed.
    static func calibrate(_ model: DiffusionModel, _ samples: [LoadedSample], config: JobConfig) throws {
        let det = try model.detector(maxBatch: max(1, min(config.eval.batchSize, samples.count)),
                                     seed: calibrationSeed(config.seed))
        det.meanMap = [Float](repeating: 0, count: det.mapCount)
        let images = samples.flatMap(\.image.pixels)
        images.withUnsafeBufferPointer { det.calibrate(normalImages: $0.baseAddress!, count: samples.count) }
        model.meanMap = det.meanMap
    }

    func writeHistory(_ history: [DiffusionEpochRecord]) throws { try JSONLines.write(history, to: logPath) }

    func readHistory() throws -> [DiffusionEpochRecord] { try JSONLines.read(DiffusionEpochRecord.self, from: logPath) }
}
