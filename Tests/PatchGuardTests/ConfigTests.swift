import Foundation
import Testing
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// Strict job configs: unknown keys name the key, the file and a suggestion; `--set` overrides nested keys.
@Suite struct ConfigTests {
    func writeTemp(_ json: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pg-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("job.json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func configError(_ body: () throws -> Void) -> String {
        do { try body() } catch let e as PatchGuardError { return e.description } catch { return "\(error)" }
        return "no error"
    }

    @Test func defaultsWithoutAFile() throws {
        let c = try JobConfig.load(path: nil)
        #expect(c == JobConfig())
        #expect(c.train.lr == 8e-4 && c.attack.trainSteps == 10 && c.data.imageSize == 224)
    }

    @Test func fileOverridesOnlyWhatItNames() throws {
        let path = try writeTemp(#"{"seed": 5, "data": {"category": "bottle", "image_size": 112}, "train": {"epochs": 3}}"#)
        let c = try JobConfig.load(path: path)
        #expect(c.seed == 5 && c.data.category == "bottle" && c.data.imageSize == 112 && c.train.epochs == 3)
        #expect(c.train.batchSize == 16) // default kept
    }

    @Test func misspelledKeyNamesKeyFileAndSuggestion() throws {
        let path = try writeTemp(#"{"data": {"categroy": "bottle"}}"#)
        let message = configError { _ = try JobConfig.load(path: path) }
        #expect(message.contains("data.categroy"))
        #expect(message.contains(path))
        #expect(message.contains("did you mean 'data.category'"))
    }

    @Test func unknownTopLevelSection() throws {
        let path = try writeTemp(#"{"trian": {"epochs": 2}}"#)
        let message = configError { _ = try JobConfig.load(path: path) }
        #expect(message.contains("'trian'") && message.contains("did you mean 'train'"))
    }

    @Test func wrongTypeNamesPathAndExpectedType() throws {
        let path = try writeTemp(#"{"train": {"epochs": "many"}}"#)
        let message = configError { _ = try JobConfig.load(path: path) }
        #expect(message.contains("train.epochs"))
        #expect(message.contains("an integer"))
    }

    @Test func invalidJSONNamesFile() throws {
        let path = try writeTemp(#"{"train": {"epochs": 2,}"#)
        let message = configError { _ = try JobConfig.load(path: path) }
        #expect(message.contains(path) && message.contains("not valid JSON"))
    }

    @Test func setOverridesNestedKeys() throws {
        let path = try writeTemp(#"{"data": {"category": "bottle"}}"#)
        let c = try JobConfig.load(path: path, overrides: [
            "data.root=/data/mvtec", "data.category=cable", "train.epochs=5", "attack.epsilon=8/255",
            "model.discriminator.layers=2", "train.reg_layers=[3,6]", "train.reg_weights=[0.1,0.2]", "seed=11"])
        #expect(c.data.root == "/data/mvtec" && c.data.category == "cable" && c.train.epochs == 5)
        #expect(abs(c.attack.epsilon - 8.0 / 255.0) < 1e-12)
        #expect(c.model.discriminator.layers == 2 && c.train.regLayers == [3, 6] && c.seed == 11)
    }

    @Test func setRejectsUnknownKeys() {
        let message = configError { _ = try JobConfig.load(path: nil, overrides: ["train.epoch=5"]) }
        #expect(message.contains("train.epoch") && message.contains("did you mean 'train.epochs'"))
        let malformed = configError { _ = try JobConfig.load(path: nil, overrides: ["train.epochs"]) }
        #expect(malformed.contains("key.path=value"))
    }

    @Test func crossFieldValidation() {
        let message = configError { _ = try JobConfig.load(path: nil, overrides: ["train.reg_layers=[1]"]) }
        #expect(message.contains("reg_layers") && message.contains("same length"))
    }

    @Test func arrayElementsAreCheckedAgainstTheirSchema() throws {
        let ok = try? JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"steps": 100}]"#])
        #expect(ok?.eval.attacks.first?.steps == 100 && ok?.eval.attacks.first?.name == .pgd)
        let image = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"target": "image"}]"#])
        #expect(image.eval.attacks[0].target == .image)
        #expect(ok!.eval.attacks[0].target == .patches)
        #expect(throws: PatchGuardError.self) {
            _ = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"target": "pixels"}]"#])
        }
        let message = configError { _ = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"stepz": 100}]"#]) }
        #expect(message.contains("eval.attacks.0.stepz") && message.contains("did you mean 'eval.attacks.0.steps'"))
    }

    @Test func resolvedConfigRoundTrips() throws {
        var c = JobConfig(); c.seed = 99; c.data.category = "x"
        let back = try JSONDecoder().decode(JobConfig.self, from: try c.resolvedJSON())
        #expect(back == c)
    }

    @Test func unknownEnumValueNamesKeyValueAndAllowedValues() throws {
        let set = configError { _ = try JobConfig.load(path: nil, overrides: ["data.category_type=fabric"]) }
        #expect(set.hasPrefix("--set data.category_type=fabric: data.category_type"))
        #expect(set.contains("\"fabric\"") && set.contains("allowed: object, texture"))
        let path = try writeTemp(#"{"foreground": {"method": "grad-cam", "threshold": "otsu"}}"#)
        let file = configError { _ = try JobConfig.load(path: path) }
        #expect(file.hasPrefix("\(path): foreground.method"))
        #expect(file.contains("\"grad-cam\"") && file.contains("allowed: border, gradcam"))
        let target = configError { _ = try JobConfig.load(path: nil, overrides: ["foreground.target=top-1"]) }
        #expect(target.contains("foreground.target") && target.contains("allowed: top1, class, topk"))
        let threshold = configError { _ = try JobConfig.load(path: nil, overrides: ["foreground.threshold=mean"]) }
        #expect(threshold.contains("foreground.threshold") && threshold.contains("allowed: otsu, quantile"))
        let attack = configError { _ = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"target": "pixel"}]"#]) }
        #expect(attack.hasPrefix("--set eval.attacks=") && attack.contains("eval.attacks.0.target")
                && attack.contains("allowed: patches, image"))
        let name = configError { _ = try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"name": "fgsm"}]"#]) }
        #expect(name.contains("eval.attacks.0.name") && name.contains("\"fgsm\"") && name.contains("allowed: pgd"))
        // Same JSON spelling as before the enums.
        let c = try JobConfig.load(path: nil, overrides: ["data.category_type=texture", "foreground.method=gradcam",
                                                          "foreground.target=class", "foreground.threshold=quantile"])
        #expect(c.data.categoryType == .texture && c.foreground.method == .gradcam)
        #expect(c.foreground.target == .classIndex && c.foreground.threshold == .quantile)
        let json = String(decoding: try c.resolvedJSON(), as: UTF8.self)
        #expect(json.contains(#""category_type" : "texture""#) && json.contains(#""target" : "class""#))
    }

    @Test func nonIntegerWhereAnIntegerIsExpectedNamesTheKey() throws {
        let set = configError { _ = try JobConfig.load(path: nil, overrides: ["train.epochs=2.5"]) }
        #expect(set.hasPrefix("--set train.epochs=2.5: train.epochs has the wrong type: expected an integer"))
        #expect(set.contains("found 2.5"))
        let path = try writeTemp(#"{"eval": {"top_k": 1.5}}"#)
        let file = configError { _ = try JobConfig.load(path: path) }
        #expect(file.hasPrefix("\(path): eval.top_k has the wrong type: expected an integer"))
        #expect(try JobConfig.load(path: nil, overrides: ["train.epochs=3.0"]).train.epochs == 3)
    }

    @Test func errorsCausedByASetNameThatSet() throws {
        let path = try writeTemp(#"{"train": {"epochs": 4}}"#)
        let message = configError { _ = try JobConfig.load(path: path, overrides: ["train.lr=0.1", "train.epochs=abc"]) }
        #expect(message.hasPrefix("--set train.epochs=abc: train.epochs has the wrong type: expected an integer"))
        #expect(!message.contains(path))
        // The file is blamed for its own mistakes even when --set is given.
        let bad = try writeTemp(#"{"train": {"epochs": "many"}}"#)
        let fileMessage = configError { _ = try JobConfig.load(path: bad, overrides: ["train.lr=0.1"]) }
        #expect(fileMessage.hasPrefix("\(bad): train.epochs has the wrong type: expected an integer"))
        let bool = configError { _ = try JobConfig.load(path: nil, overrides: ["train.adversarial=maybe"]) }
        #expect(bool.hasPrefix("--set train.adversarial=maybe: train.adversarial has the wrong type: expected a boolean"))
    }

    @Test func editDistance() {
        #expect(StrictConfig.editDistance("kitten", "sitting") == 3)
        #expect(StrictConfig.closest(to: "zzzzzzzz", among: ["epochs", "lr"]) == nil)
    }
}
