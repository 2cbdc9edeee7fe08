import Foundation
import Testing
import PatchGuardCore
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// The diffusion detector's training and evaluation jobs on a tiny generated dataset (debug-build seconds):
/// resume reaches the same weights, a non-finite loss stops with the last good checkpoint, train → evaluate
/// (clean and an EOT attack through the detector protocol) writes sane metrics.
@Suite(.serialized) struct DiffusionTrainingTests {
    static func tinyJob() throws -> JobConfig {
        let root = TrainingTests.tempDir("ddata")
        try GeneratedDataset.write(to: root, seed: 4, imageSize: 16,
                                   counts: GeneratedCounts(trainGood: 6, testGood: 3, testDefective: 4),
                                   categories: [.widget])
        var c = JobConfig()
        c.seed = 7
        c.model.kind = .diffusion
        c.data.root = root; c.data.category = "widget"; c.data.imageSize = 16
        c.diffusion.blockOutChannels = [8, 8]
        c.diffusion.attentionLevels = [false, true]
        c.diffusion.attentionHeadDim = 4
        c.diffusion.normNumGroups = 4
        c.diffusion.tStar = 50
        c.train.epochs = 2; c.train.batchSize = 4; c.train.lr = 1e-3
        c.eval.batchSize = 4
        c.eval.attacks = [AttackSpec(name: .pgd, epsilon: 8.0 / 255, steps: 2, alpha: 0, target: .imageTopK,
                                     eotSamples: 2)]
        try c.validate(source: "test")
        return c
    }

    /// The shipped diffusion configs load and validate; `model.kind` defaults to PatchGuard; a bad kind or a
    /// U-Net whose channels do not fit its groups is an error naming the key.
    @Test func configs() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for name in ["diffusion-default.json", "diffusion-mvtec-cpu.json"] {
            let c = try JobConfig.load(path: repo.appendingPathComponent("Configs/" + name).path)
            #expect(c.model.kind == .diffusion)
            try c.diffusion.unet(imageSize: c.data.imageSize).validate()
        }
        #expect(JobConfig().model.kind == .patchguard)
        #expect(throws: PatchGuardError.self) { _ = try JobConfig.load(path: nil, overrides: ["model.kind=ddpm"]) }
        do {
            _ = try JobConfig.load(path: nil, overrides: ["model.kind=diffusion", "data.image_size=64",
                                                          "diffusion.norm_num_groups=5"])
            Issue.record("norm_num_groups 5 with 32 channels was accepted")
        } catch let PatchGuardError.config(message) {
            #expect(message.contains("norm_num_groups"))
        }
        // Found by the config fuzzer: attention_head_dim 0 divided by zero inside validation (a trap, not an error).
        for bad in ["0", "-4"] {
            do {
                _ = try JobConfig.load(path: nil, overrides: ["model.kind=diffusion", "data.image_size=64",
                                                              "diffusion.attention_head_dim=\(bad)"])
                Issue.record("attention_head_dim \(bad) was accepted")
            } catch let PatchGuardError.config(message) {
                #expect(message.contains("attention_head_dim"), "\(message)")
            }
        }
    }

    func tensors(_ path: String) throws -> [String: [Float]] {
        let f = try SafeTensorsFile.load(path: path)
        var out: [String: [Float]] = [:]
        for n in f.names { out[n] = try f.floats(n) }
        return out
    }

    @Test func resumedRunEqualsUninterruptedRun() throws {
        let config = try Self.tinyJob()
        let full = try RunDirectory(path: TrainingTests.tempDir("dfull"), command: "train")
        let summary = try DiffusionTrainer(config: config, run: full).train()
        #expect(summary.epochs.count == 2 && summary.epochs.allSatisfy { $0.loss.isFinite && $0.loss > 0 })

        let killedDir = TrainingTests.tempDir("dkilled")
        let killed = DiffusionTrainer(config: config, run: try RunDirectory(path: killedDir, command: "train"))
        killed.stopAfterBatches = 3  // 6 images, batch 4: epoch 1 has 2 batches
        #expect(throws: PatchGuardError.self) { _ = try killed.train() }
        #expect(try SafeTensorsFile.load(path: killed.checkpointPath).metadata["epoch"] == "1")
        let resumed = try DiffusionTrainer(config: config, run: try RunDirectory(path: killedDir, command: "train"))
            .train(resume: true)
        #expect(resumed.epochs.map(\.epoch) == [1, 2])
        let a = try tensors(full.file("checkpoint.safetensors")), b = try tensors(killed.checkpointPath)
        #expect(a.keys.sorted() == b.keys.sorted())
        for (name, values) in a { #expect(values == b[name], "tensor \(name) differs after resume") }
        #expect(summary.epochs.map(\.loss) == resumed.epochs.map(\.loss))
        #expect(a.keys.contains("ema.conv_in.weight") && a.keys.contains("mean_map"))
        #expect(a["ema.conv_in.weight"] != a["conv_in.weight"])
    }

    @Test func nonFiniteLossStopsAndKeepsLastGoodCheckpoint() throws {
        var config = try Self.tinyJob()
        config.train.epochs = 1
        let dir = TrainingTests.tempDir("dnan")
        let first = DiffusionTrainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        _ = try first.train()
        let before = try Data(contentsOf: URL(fileURLWithPath: first.checkpointPath))
        config.train.epochs = 3; config.train.lr = 1e30
        do {
            _ = try DiffusionTrainer(config: config, run: try RunDirectory(path: dir, command: "train")).train(resume: true)
            Issue.record("training with lr 1e30 did not stop")
        } catch let PatchGuardError.numeric(message) {
            #expect(message.contains("non-finite") || message.contains("NaN"))
            #expect(message.contains("checkpoint.safetensors"))
        }
        let after = try Data(contentsOf: URL(fileURLWithPath: first.checkpointPath))
        #expect(before == after, "the last good checkpoint was overwritten")
    }

    @Test func trainThenEvaluateCleanAndUnderEOTAttack() throws {
        let config = try Self.tinyJob()
        let dir = TrainingTests.tempDir("de2e")
        let summary = try DiffusionTrainer(config: config, run: try RunDirectory(path: dir, command: "train")).train()
        #expect(DiffusionCheckpoint.isDiffusionCheckpoint(summary.checkpoint))
        let job = try EvaluationJob(checkpoint: summary.checkpoint, keepMaps: true)
        #expect(job.config.model.kind == .diffusion && job.attacks.count == 1)
        let outcome = try job.run(in: try RunDirectory(path: dir, command: "evaluate"), showProgress: false)
        let report = outcome.result.report
        #expect(report.attacks.map(\.displayName) == [config.eval.attacks[0].displayName])
        for m in [report.clean] + report.attacks.map(\.metrics) {
            let image = try #require(m.imageAUROC), pixel = try #require(m.pixelAUROC)
            #expect((0...1).contains(image) && (0...1).contains(pixel))
            #expect(m.pixelAUPRO != nil)
        }
        #expect(report.notes.contains { $0.contains("Diffusion detector: one-shot denoising from t* = 50") })
        #expect(report.detectorKind == "diffusion")
        #expect(report.markdown().contains("diffusion detector. Pixel map") && !report.markdown().contains("top-3 patch logits"))
        for file in ["metrics.json", "metrics.md", "roc_image.svg", "roc_pixel.svg"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + file), "\(file)")
        }
        // Maps at pixel resolution, the attacked images kept: heat maps as for PatchGuard.
        let S = config.data.imageSize
        #expect(outcome.result.images.allSatisfy { $0.cleanMap?.values.count == S * S && $0.attacked.count == 1 })
        let pictures = try HeatmapWriter().write(outcome.result, samples: outcome.samples, to: dir + "/heatmaps")
        #expect(pictures.pngPaths.count == outcome.samples.count)
    }

    /// The stored mean map belongs to the training t*: evaluating at another t* recomputes it on the training
    /// normals (and says so); at the same t* the stored one is used.
    @Test func anotherTStarRecomputesTheMeanMap() throws {
        var config = try Self.tinyJob()
        config.eval.attacks = []
        let dir = TrainingTests.tempDir("dtstar")
        let summary = try DiffusionTrainer(config: config, run: try RunDirectory(path: dir, command: "train")).train()
        func evaluate(_ overrides: [String]) throws -> (log: String, clean: MetricSet) {
            let out = TrainingTests.tempDir("dtstar-eval")
            let outcome = try EvaluationJob(checkpoint: summary.checkpoint, overrides: overrides)
                .run(in: try RunDirectory(path: out, command: "evaluate"), showProgress: false)
            return (try String(contentsOfFile: out + "/log.txt", encoding: .utf8), outcome.result.report.clean)
        }
        let same = try evaluate([])
        #expect(!same.log.contains("mean map recomputed"))
        let other = try evaluate(["diffusion.t_star=200"])
        #expect(other.log.contains("mean map recomputed on 6 training normals at t* = 200"))
        #expect(other.log.contains("the checkpoint's is for t* = 50"))
        // Recomputing at the stored t* (more draws) changes the map, so the figures are those of the new setting.
        let draws = try evaluate(["diffusion.noise_draws=3"])
        #expect(draws.log.contains("3 draw(s)"))
        #expect(other.clean != same.clean || draws.clean != same.clean)
    }

    /// `predict` refuses a diffusion checkpoint with a message that says why (no stored threshold yet).
    @Test func predictRefusesADiffusionCheckpointClearly() throws {
        var config = try Self.tinyJob()
        config.eval.attacks = []
        config.train.epochs = 1
        let dir = TrainingTests.tempDir("dpredict")
        let summary = try DiffusionTrainer(config: config, run: try RunDirectory(path: dir, command: "train")).train()
        do {
            _ = try PredictJob(checkpoint: summary.checkpoint, inputs: [dir])
            Issue.record("predict accepted a diffusion checkpoint")
        } catch let PatchGuardError.config(message) {
            #expect(message.contains("is a diffusion model") && message.contains(summary.checkpoint))
        }
    }

    /// `certify` works on a diffusion checkpoint the same way (the detector by the checkpoint's kind).
    @Test func certifyADiffusionCheckpoint() throws {
        var config = try Self.tinyJob()
        config.eval.attacks = []
        let dir = TrainingTests.tempDir("dcertify")
        let summary = try DiffusionTrainer(config: config, run: try RunDirectory(path: dir, command: "train")).train()
        let out = TrainingTests.tempDir("dcertify-out")
        let job = try CertifyJob(checkpoint: summary.checkpoint,
                                 overrides: ["certify.sigmas=[0.25]", "certify.n0=4", "certify.samples=8",
                                             "certify.batch_size=4", "certify.map_cells=false"])
        let result = try job.run(in: try RunDirectory(path: out, command: "certify"), showProgress: false)
        #expect(result.report.images == 7 && result.report.sigmas.count == 1)
        let smoothed = try #require(result.report.sigmas[0].smoothedImageAUROC)
        #expect((0...1).contains(smoothed))
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(log.contains("diffusion detector t* = 50"))
        #expect(FileManager.default.fileExists(atPath: out + "/metrics.json"))
    }
}
