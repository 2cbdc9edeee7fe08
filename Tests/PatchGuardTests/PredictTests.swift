import Foundation
import Testing
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// The validation split, the threshold stored in the checkpoint, `evaluate`'s threshold rows and `predict`.
@Suite(.serialized) struct PredictTests {
    /// A tiny run trained on `trainGood` normals with `fraction` held back for a threshold at `fpr`.
    static func trained(trainGood: Int = 6, fraction: Double = 0.1, fpr: Double = 0.01,
                        epochs: Int = 1) throws -> (config: JobConfig, trainer: Trainer, checkpoint: String) {
        var config = try TrainingTests.tinyJob()
        if trainGood != 6 {
            try GeneratedDataset.write(to: config.data.root, seed: 3, imageSize: 16,
                                       counts: GeneratedCounts(trainGood: trainGood, testGood: 3, testDefective: 4),
                                       categories: [.widget])
        }
        config.train.epochs = epochs
        config.train.validationFraction = fraction
        config.train.thresholdFPR = fpr
        try config.validate(source: "test")
        let run = try RunDirectory(path: TrainingTests.tempDir("predict-train"), command: "train")
        try run.writeConfig(config)
        let trainer = Trainer(config: config, run: run)
        let summary = try trainer.train()
        return (config, trainer, summary.checkpoint)
    }

    // MARK: - Validation split

    @Test func validationSplitIsSeededDisjointAndAtLeastOneImage() {
        #expect(ValidationSplit.validationCount(total: 6, fraction: 0.1) == 1)   // round(0.6) = 1
        #expect(ValidationSplit.validationCount(total: 40, fraction: 0.1) == 4)
        #expect(ValidationSplit.validationCount(total: 3, fraction: 0.01) == 1)  // at least one
        #expect(ValidationSplit.validationCount(total: 3, fraction: 0.99) == 2)  // one always trains
        #expect(ValidationSplit.validationCount(total: 1, fraction: 0.5) == 0)
        #expect(ValidationSplit.validationCount(total: 40, fraction: 0) == 0)
        let (train, validation) = ValidationSplit.indices(total: 20, fraction: 0.25, seed: 7)
        #expect(validation.count == 5 && train.count == 15)
        #expect(Set(train).isDisjoint(with: validation) && Set(train + validation) == Set(0..<20))
        #expect(train == train.sorted() && validation == validation.sorted())
        #expect(ValidationSplit.indices(total: 20, fraction: 0.25, seed: 7).validation == validation)
        #expect(ValidationSplit.indices(total: 20, fraction: 0.25, seed: 8).validation != validation)
        #expect(ValidationSplit.indices(total: 20, fraction: 0, seed: 7) == (Array(0..<20), []))
    }

    @Test func heldBackImagesAreNotTrainedOnAndStayTheSameOnResume() throws {
        let config = try TrainingTests.tinyJob()   // 6 normals, the default 10 % → 1 held back
        let dir = TrainingTests.tempDir("predict-split")
        let killed = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        killed.stopAfterBatches = 3
        #expect(throws: PatchGuardError.self) { _ = try killed.train() }
        #expect(killed.validation.count == 1)
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        #expect(log.contains("validation: 1 of 6 normal training images held back (train.validation_fraction = 0.1), training on 5"))
        // The 5 training images make 2 batches of 4 + 1 per epoch: the killed run stopped in epoch 2.
        #expect(try SafeTensorsFile.load(path: killed.checkpointPath).metadata["epoch"] == "1")
        let resumed = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        _ = try resumed.train(resume: true)
        #expect(resumed.validation.map(\.imagePath) == killed.validation.map(\.imagePath))
        let all = try config.data.scanCategory().train.map(\.imagePath)
        #expect(all.contains(killed.validation[0].imagePath))
    }

    @Test func newTrainKeysAreCheckedLikeTheOthers() throws {
        func message(_ set: String) -> String {
            do { _ = try JobConfig.load(path: nil, overrides: [set]) } catch let e as PatchGuardError { return e.description }
            catch { return "\(error)" }
            return "no error"
        }
        #expect(JobConfig().train.validationFraction == 0.1 && JobConfig().train.thresholdFPR == 0.01)
        #expect(try JobConfig.load(path: nil, overrides: ["train.validation_fraction=0.25", "train.threshold_fpr=0.05"])
            .train.validationFraction == 0.25)
        #expect(message("train.validation_fraction=1").contains("train.validation_fraction must be in [0, 1)"))
        #expect(message("train.threshold_fpr=-0.1").contains("train.threshold_fpr must be in [0, 1)"))
        #expect(message("train.validation_fractoin=0.2").contains("did you mean 'train.validation_fraction'?"))
    }

    @Test func resumingACheckpointTrainedWithoutTheSplitStoresNoThreshold() throws {
        var (config, trainer, checkpoint) = try Self.trained()
        // Make it look like a checkpoint from before validation splits: no train.validation_fraction in its config.
        let file = try SafeTensorsFile.load(path: checkpoint)
        let text = try #require(file.metadata["config"])
        var stored = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        var train = try #require(stored["train"] as? [String: Any])
        train.removeValue(forKey: "validation_fraction")
        stored["train"] = train
        var w = SafeTensorsWriter()
        for name in file.names { w.add(name, shape: try #require(file.info(name)).shape, floats: try file.floats(name)) }
        w.metadata = file.metadata.filter { $0.key != ScoreCalibration.metadataKey }
        w.metadata["config"] = String(decoding: try JSONSerialization.data(withJSONObject: stored), as: UTF8.self)
        try w.write(to: checkpoint)
        config.train.epochs = 2
        let resumed = Trainer(config: config, run: trainer.run)
        _ = try resumed.train(resume: true)
        #expect(!resumed.validationIsClean)
        #expect(try ScoreCalibration.stored(in: try SafeTensorsFile.load(path: checkpoint)) == nil)
        let log = try String(contentsOfFile: trainer.run.file("log.txt"), encoding: .utf8)
        #expect(log.contains("was trained before validation splits existed"))
        // A run killed and resumed with the same split is calibrated at its end (the resume test above covers
        // the split; here the calibration).
        let dir = TrainingTests.tempDir("predict-killed")
        let killed = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        killed.stopAfterBatches = 3
        #expect(throws: PatchGuardError.self) { _ = try killed.train() }
        let finished = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        _ = try finished.train(resume: true)
        #expect(finished.validationIsClean)
        #expect(try ScoreCalibration.stored(in: try SafeTensorsFile.load(path: finished.checkpointPath)) != nil)
    }

    // MARK: - Calibration

    @Test func thresholdRuleOnHandBuiltScores() throws {
        let ten = (1...10).map(Double.init)
        let c = try ScoreCalibration(validationScores: ten.shuffled(), fpr: 0.2, topK: 3)
        #expect(c.threshold == 8 && c.achievedFPR == 0.2 && c.validationImages == 10)   // 9 and 10 exceed 8
        #expect(c.mean == 5.5 && abs(c.std - 8.25.squareRoot()) < 1e-12 && c.scale == c.std)
        #expect(try ScoreCalibration(validationScores: ten, fpr: 0.01, topK: 3).threshold == 10)  // m = 0: the max
        #expect(try ScoreCalibration(validationScores: ten, fpr: 0, topK: 3).achievedFPR == 0)
        // Ties: at most ⌊fpr·n⌋ exceed, and the threshold is the smallest such value.
        let tied = try ScoreCalibration(validationScores: [1, 2, 2, 2, 3], fpr: 0.4, topK: 3)
        #expect(tied.threshold == 2 && tied.achievedFPR == 0.2)
        // One image: σ falls back to 1; u is ½ at τ and increasing.
        let one = try ScoreCalibration(validationScores: [0.3], fpr: 0.01, topK: 3)
        #expect(one.threshold == 0.3 && one.std == 0 && one.scale == 1)
        #expect(c.normalized(8) == 0.5 && c.normalized(9) > 0.5 && c.normalized(7) < 0.5 && c.normalized(100) <= 1)
        #expect(c.normalized(3, threshold: 3) == 0.5)
        #expect(throws: PatchGuardError.self) { _ = try ScoreCalibration(validationScores: [], fpr: 0.1, topK: 3) }
        #expect(throws: PatchGuardError.self) { _ = try ScoreCalibration(validationScores: [1, .nan], fpr: 0.1, topK: 3) }
        #expect(throws: PatchGuardError.self) { _ = try ScoreCalibration(validationScores: [1], fpr: 1, topK: 3) }
    }

    @Test func storedThresholdGivesTheStatedFPROnTheValidationNormals() throws {
        // 20 normals, half held back: 10 validation images, FPR 20 % → at most 2 of them above the threshold.
        let (config, trainer, checkpoint) = try Self.trained(trainGood: 20, fraction: 0.5, fpr: 0.2)
        #expect(trainer.validation.count == 10)
        let file = try SafeTensorsFile.load(path: checkpoint)
        let c = try #require(try ScoreCalibration.stored(in: file))
        #expect(c.validationImages == 10 && c.thresholdFPR == 0.2 && c.topK == config.eval.topK)
        // Score the validation normals independently: the evaluation's scorer on a model loaded from the file.
        var rng = SeededRNG(seed: 99)
        let model = try PatchGuardModel<Float>(config: config, using: &rng)
        try model.loadCheckpoint(path: checkpoint)
        let s = config.data.imageSize, g = s / model.patchSize
        let scorer = try AnomalyScorer(config: ScoringConfig(topK: config.eval.topK), gridHeight: g, gridWidth: g,
                                       imageHeight: s, imageWidth: s)
        // One image at a time here, batches in the trainer: GEMM blocking makes the two differ in the last bits
        // (OpenBLAS), and τ is one of the scores, so the image at τ counts on either side within a tolerance.
        let tolerance = 1e-5 * max(1, abs(c.threshold))
        var clearlyAbove = 0, aboveOrAt = 0
        for sample in trainer.validation {
            let logits = sample.image.pixels.withUnsafeBufferPointer { model.patchLogits($0.baseAddress!, batch: 1) }
            let score = Double(try scorer.imageScore(patchLogits: logits))
            if score > c.threshold + tolerance { clearlyAbove += 1 }
            if score > c.threshold - tolerance { aboveOrAt += 1 }
        }
        #expect(clearlyAbove <= 2 && aboveOrAt >= 2 && aboveOrAt <= 3,
                "FPR 20 %: ⌊0.2·10⌋ = 2 of 10 distinct scores above τ (\(clearlyAbove) clearly, \(aboveOrAt) at or above)")
        #expect(c.achievedFPR == 0.2)
        // The training state is still in the rewritten checkpoint (it resumes), and the epoch is the last.
        #expect(file.metadata["epoch"] == "1" && file.names.contains { $0.hasPrefix("optimizer.m.") })
    }

    @Test func evaluateReportsF1MaxThresholdAndRatesAtTheStoredThreshold() throws {
        let (_, _, checkpoint) = try Self.trained()
        let job = try EvaluationJob(checkpoint: checkpoint)
        let out = TrainingTests.tempDir("predict-eval")
        let outcome = try job.run(in: try RunDirectory(path: out, command: "evaluate"), showProgress: false)
        let t = try #require(outcome.result.report.thresholds)
        let c = try #require(try ScoreCalibration.stored(in: try SafeTensorsFile.load(path: checkpoint)))
        #expect(t.storedThreshold == c.threshold && t.validationImages == 1 && t.rows.count == 2)
        #expect(t.rows[0].run == "clean" && t.rows[0].f1MaxThreshold == outcome.result.clean.image?.f1Max.threshold)
        let images = outcome.result.images
        let fp = images.filter { $0.label == 0 && Double($0.cleanScore) > c.threshold }.count
        let tp = images.filter { $0.label == 1 && Double($0.cleanScore) > c.threshold }.count
        #expect(t.rows[0].fprAtStored == Double(fp) / 3 && t.rows[0].tprAtStored == Double(tp) / 4)
        #expect(t.rows[1].fprAtStored != nil)   // the attack row
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/metrics.json"))) as? [String: Any]
        let thresholds = try #require(json?["thresholds"] as? [String: Any])
        #expect(Set(thresholds.keys) == ["stored_threshold", "stored_threshold_fpr", "validation_images", "rows"])
        #expect(try String(contentsOfFile: out + "/metrics.md", encoding: .utf8).contains("Decision thresholds"))
        let decoded = try JSONDecoder().decode(EvaluationReport.self, from: try outcome.result.report.jsonData())
        #expect(decoded == outcome.result.report)
    }

    // MARK: - predict

    /// A folder with a nested folder, a grayscale PNG, a JPEG, a non-square one, an unreadable file and files
    /// that are not picked up; returns the folder and the expected files in order.
    static func inputFolder(from config: JobConfig) throws -> (folder: String, files: [String]) {
        let dir = TrainingTests.tempDir("predict-in")
        let category = try config.data.scanCategory()
        let good = try ImageIO.read(path: category.test.first { $0.label == 0 }!.imagePath)
        let bad = try ImageIO.read(path: category.test.first { $0.label == 1 }!.imagePath)
        try FileManager.default.createDirectory(atPath: dir + "/nested/deeper", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/.hidden", withIntermediateDirectories: true)
        try ImageIO.writePNG(good.resized(width: 30, height: 20), path: dir + "/a_wide.png")
        let gray = Image(width: 16, height: 16, channels: 1,
                         pixels: (0..<256).map { i in (good[0, i / 16, i % 16] + good[1, i / 16, i % 16]) / 2 })
        try ImageIO.writePNG(gray, path: dir + "/nested/gray.png")
        try AtomicFile.write(try ImageIO.encodeJPEG(bad.resized(width: 40, height: 40), quality: 92),
                             to: dir + "/nested/deeper/photo.JPG")
        try "not an image".write(toFile: dir + "/broken.png", atomically: true, encoding: .utf8)
        try "notes".write(toFile: dir + "/notes.txt", atomically: true, encoding: .utf8)
        try ImageIO.writePNG(good, path: dir + "/.hidden/skipped.png")
        try ImageIO.writePNG(good, path: dir + "/.skipped.png")
        return (dir, [dir + "/a_wide.png", dir + "/broken.png", dir + "/nested/deeper/photo.JPG", dir + "/nested/gray.png"])
    }

    @Test func predictsAFolderAndReportsTheUnreadableFileOnly() throws {
        let (config, _, checkpoint) = try Self.trained()
        let (folder, expected) = try Self.inputFolder(from: config)
        #expect(try PredictInputs.collect([folder]) == expected)
        let job = try PredictJob(checkpoint: checkpoint, inputs: [folder, expected[0]])  // a repeat is kept once
        #expect(job.files == expected && job.thresholdSource == "checkpoint" && job.config.model == config.model)
        let out = TrainingTests.tempDir("predict-out")
        let run = try RunDirectory(path: out, command: "predict")
        let report = try job.run(in: run, showProgress: false)
        #expect(report.count == 4 && report.failed == 1 && report.anomalous + report.normal == 3)
        #expect(report.exitStatus == 3)
        let c = try #require(job.calibration)
        #expect(report.threshold == c.threshold && report.normalization.scale == c.scale)
        for p in report.predictions {
            #expect(p.path == expected[p.index])
            if p.path.hasSuffix("broken.png") {
                #expect(p.error == "not a PNG or JPEG file" && p.score == nil && p.overlay == nil)
                continue
            }
            let score = try #require(p.score), u = try #require(p.normalizedScore)
            #expect(p.error == nil && score.isFinite && u > 0 && u < 1)
            #expect(p.anomalous == (score > report.threshold) && (u > 0.5) == p.anomalous)
            let overlay = try ImageIO.read(path: out + "/" + (try #require(p.overlay)))
            #expect(overlay.width == p.width && overlay.height == p.height, "overlay at the original size")
        }
        #expect(report.predictions[0].width == 30 && report.predictions[0].height == 20)
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(log.contains("error: \(folder)/broken.png: not a PNG or JPEG file"))

        // predictions.csv: the documented columns, one row per file, the error in its column.
        let csv = try String(contentsOfFile: out + "/predictions.csv", encoding: .utf8)
        let lines = csv.split(separator: "\r\n").map(String.init)
        #expect(lines.count == 5 && lines[0] == PredictionReport.csvColumns.joined(separator: ","))
        #expect(lines[2].hasPrefix("1,\(folder)/broken.png,,,") && lines[2].hasSuffix(",not a PNG or JPEG file"))
        #expect(lines.allSatisfy { $0.split(separator: ",", omittingEmptySubsequences: false).count == 16 })
        // predictions.json decodes to the same report.
        let decoded = try JSONDecoder().decode(PredictionReport.self,
                                               from: Data(contentsOf: URL(fileURLWithPath: out + "/predictions.json")))
        #expect(decoded == report)
    }

    @Test func attackedPredictionPushesTowardsTheOppositeDecision() throws {
        let (config, _, checkpoint) = try Self.trained()
        let (folder, _) = try Self.inputFolder(from: config)
        let clean = try PredictJob(checkpoint: checkpoint, inputs: [folder], threshold: 0)
            .run(in: try RunDirectory(path: TrainingTests.tempDir("predict-clean"), command: "predict"), showProgress: false)
        let out = TrainingTests.tempDir("predict-attack")
        let job = try PredictJob(checkpoint: checkpoint, inputs: [folder], threshold: 0,
                                 attack: PredictAttack(name: .pgd, epsilon: 8.0 / 255, steps: 3))
        #expect(job.thresholdSource == "--threshold" && job.attack?.target == .imageTopK)
        let report = try job.run(in: try RunDirectory(path: out, command: "predict"), showProgress: false)
        #expect(report.attack?.steps == 3 && report.flipped != nil)
        for (p, q) in zip(report.predictions, clean.predictions) where p.error == nil {
            #expect(p.score == q.score)   // the clean part is the same with and without an attack
            let a = try #require(p.attacked)
            let score = try #require(p.score)
            if p.anomalous == true { #expect(a.goal == "normal" && a.score < score) }
            else { #expect(a.goal == "anomalous" && a.score > score) }
            let attacked = try ImageIO.read(path: out + "/" + a.image)
            #expect(attacked.width == config.data.imageSize)
            #expect(FileManager.default.fileExists(atPath: out + "/" + a.overlay))
        }
        #expect(throws: PatchGuardError.self) {
            _ = try PredictJob(checkpoint: checkpoint, inputs: [folder], attack: PredictAttack(name: .suite))
        }
    }

    @Test func aCheckpointWithoutAThresholdNeedsOneAndBadInputsAreErrors() throws {
        let (_, trainer, checkpoint) = try Self.trained(fraction: 0)
        #expect(trainer.validation.isEmpty)
        #expect(try ScoreCalibration.stored(in: try SafeTensorsFile.load(path: checkpoint)) == nil)
        let image = try trainer.config.data.scanCategory().test[0].imagePath
        do {
            _ = try PredictJob(checkpoint: checkpoint, inputs: [image])
            Issue.record("predict without a stored threshold and without --threshold did not fail")
        } catch let PatchGuardError.config(message) {
            #expect(message.contains("has no stored decision threshold") && message.contains("--threshold"))
        }
        let job = try PredictJob(checkpoint: checkpoint, inputs: [image], threshold: 0.25)
        #expect(job.threshold == 0.25 && job.scale == 1)
        let report = try job.run(in: try RunDirectory(path: TrainingTests.tempDir("predict-old"), command: "predict"),
                                 showProgress: false)
        #expect(report.failed == 0 && report.exitStatus == 0 && report.thresholdFPR == nil)
        #expect(throws: PatchGuardError.self) { _ = try PredictInputs.collect([]) }
        #expect(throws: PatchGuardError.self) { _ = try PredictInputs.collect(["/nonexistent/x.png"]) }
        let empty = TrainingTests.tempDir("predict-empty")
        #expect(throws: PatchGuardError.self) { _ = try PredictInputs.collect([empty]) }
        #expect(throws: PatchGuardError.self) { _ = try PredictJob(checkpoint: checkpoint, inputs: [image], threshold: .nan) }
    }

    /// The command line: exit status 3 when a file fails, the summary table on standard output.
    @Test func commandLineExitStatus() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("patchguard")
        let candidates = [binary.path, (Bundle.main.bundlePath as NSString).deletingLastPathComponent + "/patchguard"]
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            Issue.record("the patchguard executable was not found next to the tests (\(candidates))")
            return
        }
        let (config, _, checkpoint) = try Self.trained()
        let (folder, _) = try Self.inputFolder(from: config)
        func cli(_ args: [String]) throws -> (status: Int32, out: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = args
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let failing = try cli(["predict", "--checkpoint", checkpoint, folder, "--run-dir", TrainingTests.tempDir("cli1")])
        #expect(failing.status == 3 && failing.out.contains("| images | anomalous | normal | failed |"))
        let fine = try cli(["predict", "--checkpoint", checkpoint, folder + "/nested", "--run-dir", TrainingTests.tempDir("cli2")])
        #expect(fine.status == 0)
        #expect(try cli(["predict", "--checkpoint", checkpoint, folder, "--epsilon", "8/255"]).status != 0)
    }
}
