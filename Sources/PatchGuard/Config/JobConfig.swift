import Foundation
import PatchGuardCore
import PatchGuardData

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
    /// `object`: pseudo-anomalies stay inside Grad-CAM foreground masks; `texture`: the whole image is foreground.
    public var categoryType = "object"
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

public struct DiscriminatorConfig: Codable, Equatable, Sendable {
    /// Post-norm attention blocks after the learned positional encodings.
    public var layers = 1
    public var heads = 4
    public var hidden = 2048
    public var dropout = 0.2
}

public struct ModelConfig: Codable, Equatable, Sendable {
    /// A ViT preset named as timm names it (`vit_small_patch14_dinov2`, `vit_tiny_patch16_224`, …).
    public var arch = "vit_small_patch14_dinov2"
    /// Optional safetensors checkpoint for the backbone (timm names); empty = random initialisation.
    public var weights = ""
    /// 1-based backbone layers whose final-normed patch tokens feed the discriminator; empty = the last layer.
    public var featureLayers: [Int] = []
    public var discriminator = DiscriminatorConfig()

    enum CodingKeys: String, CodingKey {
        case arch, weights, featureLayers = "feature_layers", discriminator
    }
}

public struct TrainConfig: Codable, Equatable, Sendable {
    public var epochs = 20
    public var batchSize = 16
    public var lr = 8e-4
    public var weightDecay = 0.01
    /// Cosine schedule from `lr` down to `lr × lr_min_factor`.
    public var lrMinFactor = 0.0125
    /// Train on PGD-attacked normals and pseudo-anomalies as well as clean ones.
    public var adversarial = true
    /// Epochs of clean training (normals and pseudo-anomalies, no PGD) before adversarial training starts; 0 (the
    /// paper) = adversarial from the first epoch. A clean start lets a small budget learn the task before it is
    /// made robust (see README, "Status"); the learning-rate schedule still spans all `epochs`.
    public var cleanWarmupEpochs = 0
    public var checkpointEvery = 1
    /// Attention regulariser: 1-based layers and their weights (KL(uniform ‖ attention)).
    public var regLayers = [6, 9, 12]
    public var regWeights = [0.005, 0.01, 0.05]

    enum CodingKeys: String, CodingKey {
        case epochs, batchSize = "batch_size", lr, weightDecay = "weight_decay", lrMinFactor = "lr_min_factor"
        case adversarial, cleanWarmupEpochs = "clean_warmup_epochs", checkpointEvery = "checkpoint_every"
        case regLayers = "reg_layers", regWeights = "reg_weights"
    }

    /// Whether epoch `epoch` (0-based) trains adversarially, given a usable attack.
    public func isAdversarial(epoch: Int, attack: AttackConfig) -> Bool {
        adversarial && attack.trainSteps > 0 && attack.epsilon > 0 && epoch >= cleanWarmupEpochs
    }
}

public struct AttackConfig: Codable, Equatable, Sendable {
    /// PGD steps used during adversarial training.
    public var trainSteps = 10
    /// L∞ budget in [0,1] pixel units (a string such as "8/255" is accepted).
    public var epsilon = 8.0 / 255.0
    /// Step size; 0 = 2.5·ε/steps.
    public var alpha = 0.0
    public var randomStart = false

    enum CodingKeys: String, CodingKey {
        case trainSteps = "train_steps", epsilon, alpha, randomStart = "random_start"
    }
}

public struct EvalAttackConfig: Codable, Equatable, Sendable {
    public var name = "pgd"
    public var steps = 10
    public var epsilon = 8.0 / 255.0
    /// 0 = 2.5·ε/steps.
    public var alpha = 0.0
    /// `"patches"` (the paper's attack with the ground-truth patch labels: the pixel map) or `"image"` (the
    /// image score: normal images pushed up, defective ones down).
    public var target = "patches"
}

public struct EvalConfig: Codable, Equatable, Sendable {
    /// Image score = mean of the top-k patch logits.
    public var topK = 3
    /// Gaussian smoothing of the upsampled pixel map.
    public var sigma = 6.0
    public var radius = 7
    /// Attacks run by `evaluate` (in addition to the clean pass) unless the command line names others.
    public var attacks: [EvalAttackConfig] = [EvalAttackConfig()]
    /// Images per forward/backward during evaluation and attacks.
    public var batchSize = 8

    enum CodingKeys: String, CodingKey {
        case topK = "top_k", sigma, radius, attacks, batchSize = "batch_size"
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
        let schema = defaultsTree
        var tree = schema
        var source = "defaults"
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw PatchGuardError.io(path: path, reason: "config file not found or unreadable")
            }
            let user: JSONValue
            do { user = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
                throw PatchGuardError.config("\(path): not valid JSON (\(error.localizedDescription))")
            }
            tree = try StrictConfig.merge(user, over: schema, source: path)
            source = path
        }
        for assignment in overrides {
            tree = try StrictConfig.applyOverride(assignment, to: tree, schema: schema)
        }
        do {
            let data = try JSONEncoder().encode(tree)
            let config = try JSONDecoder().decode(JobConfig.self, from: data)
            try config.validate(source: overrides.isEmpty ? source : "\(source) with --set")
            return config
        } catch let error as DecodingError {
            throw PatchGuardError.config(StrictConfig.describe(error, source: source))
        }
    }

    /// Cross-field checks that types cannot express.
    public func validate(source: String) throws {
        func fail(_ m: String) -> PatchGuardError { .config("\(source): \(m)") }
        if data.imageSize < 8 { throw fail("data.image_size must be at least 8, got \(data.imageSize)") }
        if !["object", "texture"].contains(data.categoryType) {
            throw fail("data.category_type must be \"object\" or \"texture\", got \"\(data.categoryType)\"")
        }
        if train.epochs < 0 { throw fail("train.epochs must be ≥ 0") }
        if train.batchSize < 1 { throw fail("train.batch_size must be ≥ 1") }
        if train.cleanWarmupEpochs < 0 { throw fail("train.clean_warmup_epochs must be ≥ 0") }
        if train.regLayers.count != train.regWeights.count {
            throw fail("train.reg_layers (\(train.regLayers.count)) and train.reg_weights (\(train.regWeights.count)) must have the same length")
        }
        if attack.epsilon < 0 || attack.epsilon > 1 { throw fail("attack.epsilon must be in [0, 1]") }
        if attack.trainSteps < 0 { throw fail("attack.train_steps must be ≥ 0") }
        for (i, a) in eval.attacks.enumerated() where a.name != "pgd" {
            throw fail("eval.attacks.\(i).name: unknown attack \"\(a.name)\" (available: pgd)")
        }
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
