import Foundation
import Testing
import PatchGuardCore
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// `evaluate`/`heatmaps` as a library job: the detector rebuilt from the checkpoint's stored config.
@Suite(.serialized) struct EvaluationJobTests {
    /// A tiny trained run (as in ``TrainingTests``): its config and checkpoint.
    static func trainedRun() throws -> (config: JobConfig, runDir: String, checkpoint: String) {
        var config = try TrainingTests.tinyJob()
        config.train.epochs = 1
        let dir = TrainingTests.tempDir("evaljob-train")
        let run = try RunDirectory(path: dir, command: "train")
        try run.writeConfig(config)
        let summary = try Trainer(config: config, run: run).train()
        return (config, dir, summary.checkpoint)
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch let e as PatchGuardError { return e.description } catch { return "\(error)" }
        return "no error"
    }

    func writeTemp(_ json: String) throws -> String {
        let path = TrainingTests.tempDir("evaljob-config") + "/job.json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func evaluatesFromTheCheckpointAloneWithADataOverride() throws {
        let (trained, runDir, checkpoint) = try Self.trainedRun()
        // The same data under another root: only the data override is given, no --config.
        let root = TrainingTests.tempDir("evaljob-data")
        try GeneratedDataset.write(to: root, seed: 3, imageSize: 16,
                                   counts: GeneratedCounts(trainGood: 6, testGood: 3, testDefective: 4),
                                   categories: [.widget])
        let job = try EvaluationJob(checkpoint: checkpoint, overrides: ["data.root=\(root)"])
        #expect(job.warnings.isEmpty)
        #expect(job.config.model == trained.model && job.config.data.imageSize == 16)
        #expect(job.config.eval == trained.eval && job.config.seed == trained.seed && job.config.train == trained.train)
        #expect(job.config.data.root == root && job.attacks == trained.eval.attacks)
        let out = TrainingTests.tempDir("evaljob-eval")
        let outcome = try job.run(in: try RunDirectory(path: out, command: "evaluate"), showProgress: false)
        #expect(FileManager.default.fileExists(atPath: out + "/metrics.json"))
        #expect(outcome.samples.count == 7 && outcome.result.report.attacks.count == 1)
        #expect(outcome.result.report.detector == checkpoint)

        // Same metrics as with the training run's own config file.
        let withConfig = try EvaluationJob(checkpoint: checkpoint, configPath: runDir + "/config.json")
        #expect(withConfig.config == trained)
        let again = try withConfig.run(in: try RunDirectory(path: TrainingTests.tempDir("evaljob-eval2"), command: "evaluate"),
                                       showProgress: false)
        #expect(again.result.report.clean == outcome.result.report.clean)
        #expect(again.result.report.attacks.map(\.metrics) == outcome.result.report.attacks.map(\.metrics))

        // A config that states only data and eval settings takes the model from the checkpoint.
        let dataOnly = try writeTemp(#"{"data": {"root": "\#(root)"}, "eval": {"top_k": 2}}"#)
        #expect(trained.seed != JobConfig().seed && trained.eval.batchSize != JobConfig().eval.batchSize)
        let partial = try EvaluationJob(checkpoint: checkpoint, configPath: dataOnly,
                                        attackOverrides: AttackOverrides(attack: AttackChoice.none))
        #expect(partial.config.model == trained.model && partial.config.data.imageSize == 16)
        #expect(partial.config.eval.topK == 2 && partial.attacks.isEmpty && partial.config.data.root == root)
        // Keys the file does not state keep the checkpoint's values.
        #expect(partial.config.seed == trained.seed && partial.config.eval.batchSize == trained.eval.batchSize)
    }

    /// `--transfer-from`: attacks crafted on the model itself reproduce the white-box rows exactly; crafted on
    /// another model (a different seed) they are never stronger than white-box on the exact image score; another
    /// image size is refused naming the file.
    @Test func transferAttacksAreCraftedOnTheSourceAndNeverBeatWhiteBox() throws {
        let (_, _, checkpoint) = try Self.trainedRun()
        let attack = AttackOverrides(attack: .pgd, steps: 3, epsilons: [8.0 / 255], targets: [.imageTopK])
        func evaluate(transfer: String?) throws -> EvaluationReport {
            var job = try EvaluationJob(checkpoint: checkpoint, attackOverrides: attack)
            job.transferFrom = transfer
            return try job.run(in: try RunDirectory(path: TrainingTests.tempDir("evaljob-transfer"), command: "evaluate"),
                               showProgress: false).result.report
        }
        let white = try evaluate(transfer: nil)
        let selfTransfer = try evaluate(transfer: checkpoint)
        #expect(selfTransfer.attacks.map(\.metrics) == white.attacks.map(\.metrics))
        #expect(selfTransfer.notes.contains { $0.contains("Transfer attack") })

        var other = try TrainingTests.tinyJob()
        other.train.epochs = 1; other.seed = 99
        let otherRun = try RunDirectory(path: TrainingTests.tempDir("evaljob-train-other"), command: "train")
        let otherCheckpoint = try Trainer(config: other, run: otherRun).train().checkpoint
        let transfer = try evaluate(transfer: otherCheckpoint)
        let w = try #require(white.attacks.first?.metrics.imageAUROC), t = try #require(transfer.attacks.first?.metrics.imageAUROC)
        #expect(t >= w - 1e-9, "transfer image AUROC \(t) below white-box \(w)")

        var bigger = try TrainingTests.tinyJob()
        bigger.train.epochs = 1; bigger.data.imageSize = 24
        try bigger.validate(source: "test")
        let biggerCheckpoint = try Trainer(config: bigger, run: try RunDirectory(path: TrainingTests.tempDir("evaljob-train-24"),
                                                                                   command: "train")).train().checkpoint
        let refused = message { _ = try evaluate(transfer: biggerCheckpoint) }
        #expect(refused.contains("--transfer-from \(biggerCheckpoint)") && refused.contains("image size 24"))
    }

    @Test func modelKeysThatDisagreeWithTheCheckpointAreErrors() throws {
        let (_, _, checkpoint) = try Self.trainedRun()
        let hidden = try writeTemp(#"{"model": {"discriminator": {"hidden": 64}}}"#)
        let m = message { _ = try EvaluationJob(checkpoint: checkpoint, configPath: hidden) }
        #expect(m.hasPrefix("\(hidden): model.discriminator.hidden is 64 but \(checkpoint) was trained with"))
        #expect(m.contains("model.discriminator.hidden = 32"))
        let size = try writeTemp(#"{"data": {"image_size": 32}}"#)
        #expect(message { _ = try EvaluationJob(checkpoint: checkpoint, configPath: size) }.contains("data.image_size is 32"))
        // A --set of the same key supersedes the file's value: then it is the override that must agree.
        let trainedSize = try EvaluationJob(checkpoint: checkpoint).config.data.imageSize
        #expect(trainedSize != 32)
        #expect(try EvaluationJob(checkpoint: checkpoint, configPath: size, overrides: ["data.image_size=\(trainedSize)"])
                    .config.data.imageSize == trainedSize)
        #expect(message { _ = try EvaluationJob(checkpoint: checkpoint, configPath: size, overrides: ["data.image_size=32"]) }
                    .hasPrefix("--set data.image_size=32: data.image_size is 32"))
        let set = message { _ = try EvaluationJob(checkpoint: checkpoint, overrides: ["model.arch=vit_tiny_patch16_224"]) }
        #expect(set.hasPrefix("--set model.arch=vit_tiny_patch16_224: model.arch is \"vit_tiny_patch16_224\""))
        #expect(set.contains("\"vit_cpu_tiny\""))
        // Keys that agree, and the backbone's initial weights, are fine.
        let same = try writeTemp(#"{"model": {"arch": "vit_cpu_tiny", "weights": "/elsewhere.safetensors"}}"#)
        #expect(try EvaluationJob(checkpoint: checkpoint, configPath: same).config.model.weights == "")
    }

    @Test func oldCheckpointWithoutAStoredConfigFallsBackWithAWarning() throws {
        let (trained, runDir, checkpoint) = try Self.trainedRun()
        // Rewrite the checkpoint without its `config` metadata.
        let file = try SafeTensorsFile.load(path: checkpoint)
        var w = SafeTensorsWriter()
        for name in file.names { w.add(name, shape: try #require(file.info(name)).shape, floats: try file.floats(name)) }
        w.metadata = file.metadata.filter { $0.key != "config" }
        let old = runDir + "/old.safetensors"
        try w.write(to: old)
        let job = try EvaluationJob(checkpoint: old, configPath: runDir + "/config.json")
        #expect(job.config == trained)
        #expect(job.warnings.count == 1 && job.warnings[0].contains("no stored config"))
        let outcome = try job.run(in: try RunDirectory(path: TrainingTests.tempDir("evaljob-old"), command: "evaluate"),
                                  showProgress: false)
        #expect(outcome.result.report.clean.imageAUROC != nil)
        let defaults = try EvaluationJob(checkpoint: old)
        #expect(defaults.config == JobConfig() && defaults.warnings[0].contains("built-in defaults"))
    }
}
