import Foundation
import Testing
import PatchGuardCore
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// The robust-training options (issue "a training recipe that beats the paper's"): validation split, selection
/// by validation robust AUROC, the per-batch training attack (targets, ε ramp, α scale, random start).
@Suite(.serialized) struct RobustRecipeTests {
    @Test func trainingAttackRampsEpsilonScalesAlphaAndCyclesTargets() {
        var a = AttackConfig()
        // The paper's attack is unchanged: same ε, α = 2.5·ε/steps, patch target, as the old spec.
        let paper = a.trainingAttack(adversarialEpoch: 3, batch: 5)
        #expect(paper.alpha == a.spec.alpha && paper.epsilon == a.spec.epsilon && paper.target == .patches)
        #expect(paper.alpha == 2.5 * a.epsilon / 10)

        a.trainSteps = 1; a.randomStart = true; a.alphaScale = 1.25; a.epsilon = 8.0 / 255
        a.trainTargets = [.imageTopK, .patches]; a.epsilonRampEpochs = 4
        let e0 = a.trainingAttack(adversarialEpoch: 0, batch: 0)
        #expect(e0.epsilon == 8.0 / 255 / 4)
        let fgsmStep: Double = 1.25 * 2.0 / 255
        #expect(abs(e0.alpha - fgsmStep) < 1e-15)        // FGSM-RS step 1.25·ε, at the ramped ε
        #expect(e0.target == .imageTopK && e0.randomStart && e0.steps == 1)
        #expect(a.trainingAttack(adversarialEpoch: 0, batch: 1).target == .patches)
        #expect(a.trainingAttack(adversarialEpoch: 0, batch: 2).target == .imageTopK)
        let rampedThird: Double = 8.0 / 255 * 3 / 4
        #expect(a.trainingAttack(adversarialEpoch: 2, batch: 0).epsilon == rampedThird)
        #expect(a.trainingAttack(adversarialEpoch: 3, batch: 0).epsilon == 8.0 / 255)
        #expect(a.trainingAttack(adversarialEpoch: 40, batch: 0).epsilon == 8.0 / 255)
        a.alpha = 0.01
        #expect(a.trainingAttack(adversarialEpoch: 0, batch: 0).alpha == 0.01)   // an explicit α wins
    }

    @Test func badRecipeKeysAreRefusedNamingTheKey() throws {
        func refused(_ edit: (inout JobConfig) -> Void, _ key: String) throws {
            var c = try TrainingTests.tinyJob()
            edit(&c)
            do { try c.validate(source: "job.json"); Issue.record("\(key) accepted") } catch let e as PatchGuardError {
                #expect(e.description.contains(key) && e.description.contains("job.json"), "\(e)")
            }
        }
        try refused({ $0.attack.trainTargets = [.image] }, "attack.train_targets.0")
        try refused({ $0.attack.alphaScale = 0 }, "attack.alpha_scale")
        try refused({ $0.attack.epsilonRampEpochs = -1 }, "attack.epsilon_ramp_epochs")
                try refused({ $0.train.selectBy = .validationRobust; $0.train.validationFraction = 0 }, "train.select_by")
        try refused({ $0.train.overfitStop = -0.1 }, "train.overfit_stop")
        // Spelt in JSON: an unknown target names the value and the allowed ones.
        let path = TrainingTests.tempDir("cfg") + "/job.json"
        try #"{"attack": {"train_targets": ["image_top3"]}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: PatchGuardError.self) { _ = try JobConfig.load(path: path) }
    }

    @Test func overfittingRuleNeedsAThresholdAndAFall() {
        #expect(!Trainer.overfitting(best: 0.9, now: 0.1, threshold: 0))
        #expect(Trainer.overfitting(best: 0.9, now: 0.6, threshold: 0.2))
        #expect(!Trainer.overfitting(best: 0.9, now: 0.75, threshold: 0.2))
    }

    /// The whole recipe (validation hold-out, selection, FGSM-RS on the top-k score and the patches with an ε
    /// ramp): logs validation AUROCs every epoch, keeps the selected epoch in best.safetensors (loadable, its
    /// epoch in best.json), and a killed-and-resumed run reaches the same weights as an uninterrupted one.
    @Test func recipeSelectsByValidationAndResumesExactly() throws {
        var config = try TrainingTests.tinyJob()
        config.train.epochs = 3; config.train.cleanWarmupEpochs = 1
        config.train.validationFraction = 0.34; config.train.selectBy = .validationRobust; config.train.validationSteps = 2
        config.attack.trainSteps = 1; config.attack.randomStart = true; config.attack.alphaScale = 1.25
        config.attack.trainTargets = [.imageTopK, .patches]; config.attack.epsilonRampEpochs = 2
        try config.validate(source: "test")

        let full = try RunDirectory(path: TrainingTests.tempDir("recipe"), command: "train")
        let trainer = Trainer(config: config, run: full)
        let summary = try trainer.train()
        #expect(summary.epochs.count == 3)
        for e in summary.epochs {
            #expect(e.valCleanAUROC.map { (0...1).contains($0) } == true)
            #expect(e.valRobustAUROC.map { (0...1).contains($0) } == true)
        }
        let ramp: [Double?] = [nil, 4.0 / 255, 8.0 / 255]
        #expect(summary.epochs.map(\.epsilon) == ramp)
        let log = try String(contentsOfFile: full.file("log.txt"), encoding: .utf8)
        #expect(log.contains("validation: 2 of 6 normal training images held back"))
        #expect(log.contains("targets image_topk/patches"))
        let best = try #require(trainer.readBest())
        #expect((1...3).contains(best.epoch))
        let selected = summary.epochs[best.epoch - 1]
        #expect(selected.valRobustAUROC == best.record.robustAUROC)
        let bestKey = (best.record.robustAUROC, best.record.cleanAUROC)
        let noneBetter = summary.epochs.allSatisfy { (e: EpochRecord) -> Bool in
            (e.valRobustAUROC ?? 0, e.valCleanAUROC ?? 0) <= bestKey
        }
        #expect(noneBetter)
        let bestFile = try SafeTensorsFile.load(path: trainer.bestPath)
        #expect(bestFile.metadata["epoch"] == "\(best.epoch)")
        #expect(bestFile.metadata["calibration"] != nil)    // the selected weights carry their own threshold

        let killedDir = TrainingTests.tempDir("recipe-killed")
        let killed = Trainer(config: config, run: try RunDirectory(path: killedDir, command: "train"))
        killed.stopAfterBatches = 2     // 4 training images, batch 4: killed at the start of epoch 3
        #expect(throws: PatchGuardError.self) { _ = try killed.train() }
        _ = try Trainer(config: config, run: try RunDirectory(path: killedDir, command: "train")).train(resume: true)
        let a = try TrainingTests().tensors(full.file("checkpoint.safetensors"))
        let b = try TrainingTests().tensors(killed.checkpointPath)
        for (name, values) in a { #expect(values == b[name], "tensor \(name) differs after resume") }
        let ba = try TrainingTests().tensors(trainer.bestPath), bb = try TrainingTests().tensors(killed.bestPath)
        for (name, values) in ba { #expect(values == bb[name], "best tensor \(name) differs after resume") }
    }
}
