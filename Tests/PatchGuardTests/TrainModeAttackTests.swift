import Foundation
import Testing
import PatchGuardCore
import PatchGuardNN
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// `attack.train_mode`: the training attack on the model in training mode (discriminator dropout on, seeded
/// masks, ``TrainingModeDetector``) as the official code runs it, against our default evaluation-mode attack.
@Suite struct TrainModeAttackTests {
    static let B = 2, S = 8

    func model(dropout: Double) throws -> PatchGuardModel<Float> {
        var config = JobConfig()
        config.data.imageSize = Self.S
        config.model.discriminator = DiscriminatorConfig(layers: 1, heads: 3, hidden: 7, dropout: dropout)
        config.train.regLayers = [1, 2]
        config.train.regWeights = [0.005, 0.01]
        let backbone = ViTConfig(imageSize: Self.S, patchSize: 4, dim: 12, depth: 2, heads: 3, mlpRatio: 1.5)
        var rng = SeededRNG(seed: 21)
        return try PatchGuardModel<Float>(config: config, maxBatch: Self.B, backbone: backbone, using: &rng)
    }

    func inputs() -> (images: [Float], labels: [Float]) {
        var rng = SeededRNG(seed: 8)
        let images = (0..<(Self.B * 3 * Self.S * Self.S)).map { _ in Float(rng.uniform(0.1, 0.9)) }
        return (images, [0, 0, 0, 0, 0, 1, 1, 0])
    }

    /// The training attack (PGD-10, ε 8/255, α 2.5ε/10, patch labels) on `detector`, random start from seed 5.
    func attack(_ detector: PatchDetector) throws -> [Float] {
        var spec = AttackConfig()
        spec.randomStart = true
        var rng = SeededRNG(seed: 5)
        let (images, labels) = inputs()
        return spec.trainingAttack(adversarialEpoch: 0, batch: 0)
            .run(on: try PatchLogitDetector(detector, topK: 3), images: images, labels: labels, batch: Self.B, using: &rng)
    }

    @Test func dropoutMakesItDifferentButDeterministic() throws {
        let m = try model(dropout: 0.3)
        let eval = try attack(m)
        let trainMode = TrainingModeDetector(m, rng: SeededRNG(seed: 1, stream: 2))
        #expect(trainMode.isStochastic)
        let first = try attack(trainMode)
        trainMode.reseed(SeededRNG(seed: 1, stream: 2))
        let again = try attack(trainMode)
        #expect(first == again)                          // same seed → same masks → same attack
        #expect(first != eval)                           // dropout changes the gradients
        trainMode.reseed(SeededRNG(seed: 1, stream: 3))
        #expect(try attack(trainMode) != first)          // another seed, other masks
        let x0 = inputs().images, eps = Float(8.0 / 255.0)
        for i in x0.indices { #expect(abs(first[i] - x0[i]) <= eps * (1 + 1e-6) && (0...1).contains(first[i])) }
        // Training-mode logits differ from the evaluation-mode ones, and leave evaluation mode untouched.
        let before = x0.withUnsafeBufferPointer { m.patchLogits($0.baseAddress!, batch: Self.B) }
        let dropped = x0.withUnsafeBufferPointer { trainMode.patchLogits($0.baseAddress!, batch: Self.B) }
        let after = x0.withUnsafeBufferPointer { m.patchLogits($0.baseAddress!, batch: Self.B) }
        #expect(dropped != before && after == before)
    }

    @Test func withoutDropoutItIsTheEvaluationAttack() throws {
        let m = try model(dropout: 0)
        let trainMode = TrainingModeDetector(m, rng: SeededRNG(seed: 1, stream: 2))
        #expect(!trainMode.isStochastic)
        #expect(try attack(trainMode) == attack(m))
    }

    /// Through the trainer: a train-mode run killed mid-epoch and resumed reaches the same weights as an
    /// uninterrupted one (the dropout masks are reseeded per batch), and its losses differ from an eval-mode run's.
    @Test func trainerRunIsResumableAndDiffersFromEvaluationMode() throws {
        var config = try TrainingTests.tinyJob()
        config.attack.trainMode = true
        let full = try RunDirectory(path: TrainingTests.tempDir("tm-full"), command: "train")
        let summary = try Trainer(config: config, run: full).train()
        let killedDir = TrainingTests.tempDir("tm-killed")
        let killed = Trainer(config: config, run: try RunDirectory(path: killedDir, command: "train"))
        killed.stopAfterBatches = 3
        #expect(throws: PatchGuardError.self) { _ = try killed.train() }
        let resumed = try Trainer(config: config, run: try RunDirectory(path: killedDir, command: "train")).train(resume: true)
        #expect(summary.epochs.map(\.loss) == resumed.epochs.map(\.loss))
        let a = try SafeTensorsFile.load(path: full.file("checkpoint.safetensors"))
        let b = try SafeTensorsFile.load(path: killed.checkpointPath)
        #expect(a.names == b.names)
        for name in a.names { #expect(try a.floats(name) == b.floats(name), "tensor \(name) differs after resume") }
        var evalMode = config
        evalMode.attack.trainMode = false
        let other = try Trainer(config: evalMode, run: try RunDirectory(path: TrainingTests.tempDir("tm-eval"), command: "train"))
            .train()
        #expect(other.epochs.map(\.loss) != summary.epochs.map(\.loss))
    }

    @Test func configKey() throws {
        #expect(try JobConfig.load(path: nil).attack.trainMode == false)
        #expect(try JobConfig.load(path: nil, overrides: ["attack.train_mode=true"]).attack.trainMode)
        do {
            _ = try JobConfig.load(path: nil, overrides: ["attack.train_mod=true"])
            Issue.record("a misspelt key was accepted")
        } catch let e as PatchGuardError {
            #expect(e.description.contains("attack.train_mod") && e.description.contains("did you mean 'attack.train_mode'"))
        }
        #expect(try JobConfig.load(path: nil).data.maskResize == .nearest)
        #expect(try JobConfig.load(path: nil, overrides: [#"data.mask_resize="lanczos_any""#]).data.maskResize == .lanczosAny)
        do {
            _ = try JobConfig.load(path: nil, overrides: [#"data.mask_resize="bicubic""#])
            Issue.record("an unknown mask_resize was accepted")
        } catch let e as PatchGuardError {
            #expect(e.description.contains("data.mask_resize") && e.description.contains("nearest, lanczos_any"),
                    "\(e.description)")
        }
    }
}
