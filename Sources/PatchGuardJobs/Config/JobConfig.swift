import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// A job: everything `train`, `evaluate`, `heatmaps`, `foreground` and `synthesize` need, in one JSON file with
/// snake_case keys. Defaults live here and only here (the property initialisers); a config file states only what
/// differs. See `Configs/*.json` and README.md for every key.
public struct JobConfig: Codable, Equatable, Sendable {
    /// Seed of every random choice in the job (initialisation, shuffling, synthesis, dropout, attacks).
    public var seed: UInt64 = 0
    public var data = DataConfig()
    public var model = ModelConfig()
    public var train = TrainConfig()
    public var attack = AttackConfig()
    public var eval = EvalConfig()
    /// Pseudo-anomaly synthesis (sizes, dilation, augmentation levels); see `SynthesisConfig`.
    public var synthesis = SynthesisConfig()
    /// Grad-CAM foreground masks (`patchguard foreground`); see `ForegroundConfig`.
    public var foreground = ForegroundConfig()

    public init() {}
}

public struct DataConfig: Codable, Equatable, Sendable {
    /// Folder in the MVTec AD layout (`CATEGORY/train/good`, `CATEGORY/test/<defect>`, `CATEGORY/ground_truth`).
    public var root = "Datasets/generated"
    public var category = "widget"
    /// Images and masks are resized to `image_size × image_size`.
    public var imageSize = 224
    /// `object`: pseudo-anomalies stay inside foreground masks; `texture`: the whole image is foreground.
    public var categoryType: CategoryType = .object
    /// Decoded images are kept in memory up to this many MiB.
    public var cacheMB = 2048
    /// Folder of the foreground masks (`<stem>.png` per training image); empty = `CATEGORY/train/foreground_mask`.
    /// For datasets you cannot write to: `patchguard foreground` writes there and training reads from there.
    public var foregroundDir = ""

    enum CodingKeys: String, CodingKey {
        case root, category, imageSize = "image_size", categoryType = "category_type", cacheMB = "cache_mb"
        case foregroundDir = "foreground_dir"
    }

    /// Scans the configured category (with the configured foreground folder).
    public func scanCategory() throws -> MVTecCategory {
        try MVTecCategory.scan(root: root, category: category, foregroundDirectory: foregroundDir)
    }
}

/// `data.category_type`: an object on a background (pseudo-anomalies inside its foreground mask) or a texture
/// (the whole image is foreground).
public enum CategoryType: String, ConfigEnum {
    case object, texture
}

public struct EvalConfig: Codable, Equatable, Sendable {
    /// Image score = mean of the top-k patch logits.
    public var topK = 3
    /// Gaussian smoothing of the upsampled pixel map.
    public var sigma = 6.0
    public var radius = 7
    /// Attacks run by `evaluate` (in addition to the clean pass) unless the command line names others. Each entry
    /// (``AttackSpec``): `name` (`"pgd"`, `"apgd"` or `"suite"`), `norm` (`"linf"`, `"l2"`), `steps`, `epsilon`,
    /// `alpha` (0 = 2.5·ε/steps), `restarts`, `eot_samples` and `target`: `"patches"` (the paper's attack with
    /// the ground-truth patch labels: the pixel map), `"image"` (the mean of all patches: normal images pushed up,
    /// defective ones down), `"image_topk"` (the exact top-k image score) or `"patches_sea"` (the map, only the
    /// patches not yet flipped).
    public var attacks: [AttackSpec] = [AttackSpec()]
    /// Images per forward/backward during evaluation and attacks.
    public var batchSize = 8
    /// Evaluate at most this many test images, evenly spaced over the test set (0 = all); for long attacks.
    public var maxImages = 0

    enum CodingKeys: String, CodingKey {
        case topK = "top_k", sigma, radius, attacks, batchSize = "batch_size", maxImages = "max_images"
    }

    /// The eval section's checks (called from ``JobConfig/validate(source:)``): every attack and `max_images`.
    public func problem() -> String? {
        for (i, a) in attacks.enumerated() {
            if let problem = a.problem(key: "eval.attacks.\(i)") { return problem }
        }
        if maxImages < 0 { return "eval.max_images must be ≥ 0 (0 = all), got \(maxImages)" }
        return nil
    }
}

extension JobConfig {
    /// The defaults as a JSON tree: the schema that config files and `--set` are checked against.
    public static var defaultsTree: JSONValue {
        // Encoding the defaults cannot fail: every field is a plain value.
        let data = try! JSONEncoder().encode(JobConfig())
        return try! JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// Loads `path` (nil = defaults only), applies `--set` overrides, checks every key and decodes.
    public static func load(path: String?, overrides: [String] = []) throws -> JobConfig {
        let tree = try path.map { try fileTree(path: $0).merged } ?? defaultsTree
        return try decode(tree, source: path ?? "defaults", overrides: overrides)
    }

    /// A config file as written (`user`, for telling what it states) and merged over the defaults (key-checked).
    public static func fileTree(path: String) throws -> (user: JSONValue, merged: JSONValue) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PatchGuardError.io(path: path, reason: "config file not found or unreadable")
        }
        return try tree(json: data, source: path)
    }

    /// JSON text (a file's, or a checkpoint's stored config) as written and merged over the defaults.
    public static func tree(json data: Data, source: String) throws -> (user: JSONValue, merged: JSONValue) {
        let user: JSONValue
        do { user = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw PatchGuardError.config("\(source): not valid JSON (\(error.localizedDescription))")
        }
        return (user, try StrictConfig.merge(user, over: defaultsTree, source: source))
    }

    /// Applies `--set` overrides to a merged tree, decodes and validates it. A type error is blamed on the
    /// `--set` that wrote the key, else on `source`.
    public static func decode(_ merged: JSONValue, source: String, overrides: [String] = []) throws -> JobConfig {
        var tree = merged
        for assignment in overrides {
            tree = try StrictConfig.applyOverride(assignment, to: tree, schema: defaultsTree)
        }
        do {
            let data = try JSONEncoder().encode(tree)
            let config = try JSONDecoder().decode(JobConfig.self, from: data)
            try config.validate(source: overrides.isEmpty ? source : "\(source) with --set")
            return config
        } catch var error as DecodingError {
            // Foundation reports a non-integer where an integer is expected as invalid JSON at the top level;
            // find the number responsible so the message can name its key.
            if case let .dataCorrupted(ctx) = error, ctx.codingPath.isEmpty,
               let path = StrictConfig.nonIntegerCulprit(in: tree, decoding: JobConfig.self) {
                error = .dataCorrupted(.init(codingPath: path.map(StrictConfig.PathKey.init),
                                             debugDescription: "expected an integer"))
            }
            let blamed = StrictConfig.override(responsibleFor: error, among: overrides).map { "--set \($0)" }
            throw PatchGuardError.config(StrictConfig.describe(error, source: blamed ?? source, tree: tree))
        }
    }

    /// Cross-field checks that types cannot express.
    public func validate(source: String) throws {
        func fail(_ m: String) -> PatchGuardError { .config("\(source): \(m)") }
        if data.imageSize < 8 { throw fail("data.image_size must be at least 8, got \(data.imageSize)") }
        if train.epochs < 0 { throw fail("train.epochs must be ≥ 0") }
        if train.batchSize < 1 { throw fail("train.batch_size must be ≥ 1") }
        if train.cleanWarmupEpochs < 0 { throw fail("train.clean_warmup_epochs must be ≥ 0") }
        if train.regLayers.count != train.regWeights.count {
            throw fail("train.reg_layers (\(train.regLayers.count)) and train.reg_weights (\(train.regWeights.count)) must have the same length")
        }
        if attack.epsilon < 0 || attack.epsilon > 1 { throw fail("attack.epsilon must be in [0, 1]") }
        if attack.trainSteps < 0 { throw fail("attack.train_steps must be ≥ 0") }
        if let problem = eval.problem() { throw fail(problem) }
        if eval.topK < 1 { throw fail("eval.top_k must be ≥ 1") }
        try synthesis.validate()
        try foreground.validate()
    }

    /// Pretty, key-sorted JSON of the resolved config (written into every run directory).
    public func resolvedJSON() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }
}
