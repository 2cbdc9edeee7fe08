import Foundation
import Testing
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// Training loop end to end on a tiny generated dataset: resume equivalence, NaN stop, train → evaluate → heat maps.
@Suite(.serialized) struct TrainingTests {
    static func tempDir(_ tag: String) -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("pg-\(tag)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// A dataset and config small enough for a few seconds of debug-build training.
    static func tinyJob() throws -> JobConfig {
        let root = tempDir("data")
        try GeneratedDataset.write(to: root, seed: 3, imageSize: 16,
                                   counts: GeneratedCounts(trainGood: 6, testGood: 3, testDefective: 4),
                                   categories: [.widget])
        var c = JobConfig()
        c.seed = 5
        c.data.root = root; c.data.category = "widget"; c.data.imageSize = 16
        c.model.arch = "vit_cpu_tiny"
        c.model.discriminator.hidden = 32
        c.train.epochs = 2; c.train.batchSize = 4
        c.train.regLayers = [2, 4]; c.train.regWeights = [0.01, 0.05]
        c.attack.trainSteps = 2
        c.synthesis.minSize = 3; c.synthesis.maxSize = 8; c.synthesis.dilation = 1
        c.eval.attacks = [AttackSpec(name: .pgd, epsilon: 8.0 / 255, steps: 3, alpha: 0)]
        c.eval.batchSize = 4
        try c.validate(source: "test")
        return c
    }

    func tensors(_ path: String) throws -> [String: [Float]] {
        let f = try SafeTensorsFile.load(path: path)
        var out: [String: [Float]] = [:]
        for n in f.names { out[n] = try f.floats(n) }
        return out
    }

    @Test func resumedRunEqualsUninterruptedRun() throws {
        let config = try Self.tinyJob()
        let full = try RunDirectory(path: Self.tempDir("full"), command: "train")
        let summary = try Trainer(config: config, run: full).train()
        #expect(summary.epochs.count == 2)

        // Killed in the middle of epoch 2 (epoch 1 has 2 batches: stop after the 3rd), then resumed.
        let killedDir = Self.tempDir("killed")
        let killed = Trainer(config: config, run: try RunDirectory(path: killedDir, command: "train"))
        killed.stopAfterBatches = 3
        #expect(throws: PatchGuardError.self) { _ = try killed.train() }
        let afterKill = try SafeTensorsFile.load(path: killed.checkpointPath)
        #expect(afterKill.metadata["epoch"] == "1")
        let resumed = try Trainer(config: config, run: try RunDirectory(path: killedDir, command: "train")).train(resume: true)
        #expect(resumed.epochs.map(\.epoch) == [1, 2])

        let a = try tensors(full.file("checkpoint.safetensors")), b = try tensors(killed.checkpointPath)
        #expect(a.keys.sorted() == b.keys.sorted())
        for (name, values) in a { #expect(values == b[name], "tensor \(name) differs after resume") }
        #expect(summary.epochs.map(\.loss) == resumed.epochs.map(\.loss))
    }

    /// `train.clean_warmup_epochs`: those epochs are exactly clean training (same losses as `adversarial = false`),
    /// the ones after are adversarial (different losses, logged), and a warm-up as long as the run is clean training.
    @Test func cleanWarmupLeavesOutPGDForItsEpochsOnly() throws {
        var clean = try Self.tinyJob()
        clean.train.adversarial = false
        let cleanRun = try Trainer(config: clean, run: try RunDirectory(path: Self.tempDir("clean"), command: "train")).train()
        let adversarialRun = try Trainer(config: try Self.tinyJob(),
                                         run: try RunDirectory(path: Self.tempDir("adv"), command: "train")).train()

        var warm = try Self.tinyJob()
        warm.train.cleanWarmupEpochs = 1
        let warmDir = try RunDirectory(path: Self.tempDir("warm"), command: "train")
        let warmRun = try Trainer(config: warm, run: warmDir).train()
        #expect(warmRun.epochs[0].loss == cleanRun.epochs[0].loss)
        #expect(warmRun.epochs[0].loss != adversarialRun.epochs[0].loss)
        #expect(warmRun.epochs[1].loss != cleanRun.epochs[1].loss)
        let log = try String(contentsOfFile: warmDir.file("log.txt"), encoding: .utf8)
        #expect(log.contains("clean warm-up done after 1 epochs; adversarial training (PGD-2, ε = 8/255) from epoch 2"))

        warm.train.cleanWarmupEpochs = 5
        let allClean = try Trainer(config: warm, run: try RunDirectory(path: Self.tempDir("warm5"), command: "train"))
        _ = try allClean.train()
        let a = try tensors(allClean.checkpointPath)
        let b = try tensors(cleanRun.checkpoint)
        for (name, values) in a { #expect(values == b[name], "tensor \(name) differs from clean training") }

        warm.train.cleanWarmupEpochs = -1
        #expect(throws: PatchGuardError.self) { try warm.validate(source: "test") }
    }

    @Test func nonFiniteLossStopsAndKeepsLastGoodCheckpoint() throws {
        var config = try Self.tinyJob()
        config.train.epochs = 1
        let dir = Self.tempDir("nan")
        _ = try Trainer(config: config, run: try RunDirectory(path: dir, command: "train")).train()
        let trainer = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        let before = try Data(contentsOf: URL(fileURLWithPath: trainer.checkpointPath))
        // An absurd learning rate blows the weights up during epoch 2.
        config.train.epochs = 3; config.train.lr = 1e30
        let exploding = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        do {
            _ = try exploding.train(resume: true)
            Issue.record("training with lr 1e30 did not stop")
        } catch let PatchGuardError.numeric(message) {
            #expect(message.contains("non-finite loss"))
            #expect(message.contains("checkpoint.safetensors"))
        }
        let after = try Data(contentsOf: URL(fileURLWithPath: trainer.checkpointPath))
        #expect(before == after, "the last good checkpoint was overwritten")
    }

    @Test func trainEvaluateHeatmapsEndToEnd() throws {
        let config = try Self.tinyJob()
        let runDir = Self.tempDir("e2e")
        let run = try RunDirectory(path: runDir, command: "train")
        let summary = try Trainer(config: config, run: run).train()
        #expect(FileManager.default.fileExists(atPath: run.file("train_log.jsonl")))
        #expect(summary.epochs.allSatisfy { $0.loss.isFinite && $0.loss > 0 })

        var rng = SeededRNG(seed: config.seed)
        let model = try PatchGuardModel<Float>(config: config, maxBatch: 4, using: &rng)
        #expect(try model.loadCheckpoint(path: summary.checkpoint).epoch == 2)
        let category = try MVTecCategory.scan(root: config.data.root, category: config.data.category)
        let samples = try SampleLoader(imageSize: 16).load(category.test)
        let settings = try EvaluationSettings(eval: config.eval, patchSize: model.patchSize, batchSize: 4,
                                              seed: config.seed, keepMaps: true, showProgress: false)
        let result = try Evaluator(detector: model, settings: settings).evaluate(samples, category: "widget")
        let files = try result.writeReports(to: runDir)
        for f in ["metrics.json", "metrics.md", "roc_image.svg", "roc_pixel.svg"] {
            #expect(files.contains { $0.hasSuffix(f) } && FileManager.default.fileExists(atPath: runDir + "/" + f))
        }
        let clean = result.report.clean, attacked = try #require(result.report.attacks.first).metrics
        let cleanImage = try #require(clean.imageAUROC), attackedImage = try #require(attacked.imageAUROC)
        let cleanPixel = try #require(clean.pixelAUROC), attackedPixel = try #require(attacked.pixelAUROC)
        #expect((0...1).contains(cleanImage) && (0...1).contains(cleanPixel))
        #expect(attackedImage <= cleanImage + 1e-9)
        #expect(attackedPixel <= cleanPixel + 1e-9)
        let heat = try HeatmapWriter().write(result, samples: samples, to: runDir + "/heatmaps")
        #expect(FileManager.default.fileExists(atPath: heat.indexPath))
        #expect(heat.pngPaths.count == samples.count)
    }
}
