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
    /// The diffusion detector (`model.kind = "diffusion"`); see `DiffusionConfig`.
    public var diffusion = DiffusionConfig()
    /// Randomized-smoothing certification (`patchguard certify`); see `CertifyConfig`.
    public var certify = CertifyConfig()

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
    /// How test ground-truth masks are resized to `image_size` (pixel AUROC, the evaluation's patch labels):
    /// `"nearest"` (ours: nearest neighbour, any non-zero pixel) or `"lanczos_any"` (the official code's: Lanczos,
    /// any non-zero pixel, so the ringing rim counts and defects come out larger). README "Fidelity to the official code".
    public var maskResize: MaskResizeRule = .nearest

    enum CodingKeys: String, CodingKey {
        case root, category, imageSize = "image_size", categoryType = "category_type", cacheMB = "cache_mb"
        case foregroundDir = "foreground_dir", maskResize = "mask_resize"
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

    /// The largest config file read (1 MiB; `Configs/mvtec.json` is under 2 KiB).
    public static let maxConfigBytes = 1 << 20

    /// Loads `path` (nil = defaults only), applies `--set` overrides, checks every key and decodes.
    public static func load(path: String?, overrides: [String] = []) throws -> JobConfig {
        let tree = try path.map { try fileTree(path: $0).merged } ?? defaultsTree
        return try decode(tree, source: path ?? "defaults", overrides: overrides)
    }

    /// A config file as written (`user`, for telling what it states) and merged over the defaults (key-checked).
    public static func fileTree(path: String) throws -> (user: JSONValue, merged: JSONValue) {
        let bytes = try RegularFile.read(path: path, maxBytes: maxConfigBytes, what: "config file")
        return try tree(json: Data(bytes), source: path)
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

    /// Every numeric range and cross-field check, in one pass, each error naming its key (README, "Limits").
    /// Sizes are bounded so that a config can never ask for more memory than the machine has: the model's
    /// attention maps for the largest batch are estimated from `model.arch`, `data.image_size` and the batch
    /// sizes and compared with the physical memory.
    public func validate(source: String) throws {
        func fail(_ m: String) -> PatchGuardError { .config("\(source): \(m)") }
        func check(_ ok: Bool, _ m: @autoclosure () -> String) throws { if !ok { throw fail(m()) } }
        func range<V: Comparable>(_ key: String, _ v: V, _ r: ClosedRange<V>) throws {
            try check(r.contains(v), "\(key) must be in \(r.lowerBound)...\(r.upperBound), got \(v)")
        }
        func finite(_ key: String, _ v: Double) throws { try check(v.isFinite, "\(key) must be a finite number, got \(v)") }

        // data
        try range("data.image_size", data.imageSize, 8...Self.maxImageSize)
        try range("data.cache_mb", data.cacheMB, 0...(1 << 20))
        // model (PatchGuard's ViT and discriminator; the diffusion detector has its own section)
        var vitConfig: ViTConfig?
        if model.kind == .patchguard {
            let vit: ViTConfig
            do { vit = try ViTConfig.preset(model.arch, imageSize: data.imageSize) } catch let e as PatchGuardError {
                throw fail("model.arch: \(e.description)")
            }
            try check(data.imageSize % vit.patchSize == 0,
                      "data.image_size \(data.imageSize) must be a multiple of \(model.arch)'s patch size \(vit.patchSize)")
            try check(model.featureLayers.count <= vit.depth,
                      "model.feature_layers has \(model.featureLayers.count) entries, \(model.arch) has \(vit.depth) layers")
            for (i, l) in model.featureLayers.enumerated() {
                try check((1...vit.depth).contains(l),
                          "model.feature_layers.\(i) is \(l), outside 1...\(vit.depth) for \(model.arch)")
            }
            let d = model.discriminator
            let width = vit.dim * max(1, model.featureLayers.count)
            try range("model.discriminator.layers", d.layers, 1...64)
            try range("model.discriminator.heads", d.heads, 1...width)
            try check(width % d.heads == 0,
                      "model.discriminator.heads \(d.heads) must divide the discriminator's width \(width) " +
                      "(\(model.arch)'s \(vit.dim) × \(max(1, model.featureLayers.count)) feature layers)")
            try range("model.discriminator.hidden", d.hidden, 1...65536)
            try check(d.dropout >= 0 && d.dropout < 1, "model.discriminator.dropout must be in [0, 1), got \(d.dropout)")
            vitConfig = vit
        }
        // train
        try range("train.epochs", train.epochs, 1...1_000_000)
        try range("train.batch_size", train.batchSize, 1...4096)
        try finite("train.lr", train.lr)
        try check(train.lr > 0 && train.lr <= 1, "train.lr must be in (0, 1], got \(train.lr)")
        try finite("train.weight_decay", train.weightDecay)
        try check(train.weightDecay >= 0 && train.weightDecay <= 1,
                  "train.weight_decay must be in [0, 1], got \(train.weightDecay)")
        try check(train.lrMinFactor > 0 && train.lrMinFactor <= 1,
                  "train.lr_min_factor must be in (0, 1], got \(train.lrMinFactor)")
        try range("train.clean_warmup_epochs", train.cleanWarmupEpochs, 0...1_000_000)
        try range("train.checkpoint_every", train.checkpointEvery, 0...1_000_000)
        if let vit = vitConfig {
            if train.regLayers.count != train.regWeights.count {
                throw fail("train.reg_layers (\(train.regLayers.count)) and train.reg_weights (\(train.regWeights.count)) must have the same length")
            }
            for (i, l) in train.regLayers.enumerated() {
                try check((1...vit.depth).contains(l), "train.reg_layers.\(i) is \(l), outside 1...\(vit.depth) for " +
                          "\(model.arch) (set train.reg_layers/reg_weights for this depth, e.g. [\(vit.depth / 2), \(vit.depth)])")
            }
            for (i, w) in train.regWeights.enumerated() {
                try check(w.isFinite && w >= 0, "train.reg_weights.\(i) must be a finite number ≥ 0, got \(w)")
            }
        }
        try check(train.validationFraction.isFinite && train.validationFraction >= 0 && train.validationFraction < 1,
                  "train.validation_fraction must be in [0, 1) (0 = no validation split), got \(train.validationFraction)")
        try check(train.thresholdFPR.isFinite && train.thresholdFPR >= 0 && train.thresholdFPR < 1,
                  "train.threshold_fpr must be in [0, 1), got \(train.thresholdFPR)")
        // attack (training)
        try check(attack.epsilon.isFinite && attack.epsilon >= 0 && attack.epsilon <= 1,
                  "attack.epsilon must be in [0, 1], got \(attack.epsilon)")
        try range("attack.train_steps", attack.trainSteps, 0...10_000)
        try check(attack.alpha.isFinite && attack.alpha >= 0 && attack.alpha <= 1,
                  "attack.alpha must be in [0, 1] (0 = alpha_scale·ε/steps), got \(attack.alpha)")
        try check(attack.alphaScale.isFinite && attack.alphaScale > 0 && attack.alphaScale <= 100,
                  "attack.alpha_scale must be in (0, 100], got \(attack.alphaScale)")
        try range("attack.epsilon_ramp_epochs", attack.epsilonRampEpochs, 0...1_000_000)
        for (i, t) in attack.trainTargets.enumerated() where t != .patches && t != .imageTopK {
            throw fail("attack.train_targets.\(i) is \"\(t.rawValue)\"; training attacks \"patches\" or \"image_topk\"")
        }
        try check(train.selectBy == .last || train.validationFraction > 0,
                  "train.select_by = \"\(train.selectBy.rawValue)\" needs train.validation_fraction > 0")
        try range("train.validation_steps", train.validationSteps, 0...10_000)
        try check(train.overfitStop.isFinite && train.overfitStop >= 0 && train.overfitStop <= 1,
                  "train.overfit_stop must be in [0, 1], got \(train.overfitStop)")
        // eval
        if let problem = eval.problem() { throw fail(problem) }
        if eval.topK < 1 { throw fail("eval.top_k must be ≥ 1") }
        if let problem = certify.problem() { throw fail(problem) }
        try synthesis.validate()
        try foreground.validate()
        if model.kind == .diffusion, let problem = diffusion.problem(imageSize: data.imageSize) { throw fail(problem) }
        // memory: the attention maps backward keeps, for the largest batch
        if let vit = vitConfig {
            let batch = max(train.batchSize, eval.batchSize, certify.batchSize, 8)
            let need = Self.attentionBytes(vit: vit, discriminator: model.discriminator, batch: batch)
            let have = Double(ProcessInfo.processInfo.physicalMemory)
            try check(need <= have, String(format:
                "data.image_size %d with model.arch %@ needs about %.1f GiB for the attention maps of a batch of %d " +
                "(%d tokens per image), more than this machine's %.1f GiB of memory; lower data.image_size or the batch sizes",
                data.imageSize, model.arch, need / 1_073_741_824, batch, (data.imageSize / vit.patchSize) * (data.imageSize / vit.patchSize) + 1 + vit.numRegisters,
                have / 1_073_741_824))
        }
    }

    /// Largest `data.image_size` (a 8192-px side is already 67 M pixels per image).
    public static let maxImageSize = 8192

    /// Bytes of the attention probabilities the ViT and the discriminator keep for backward, per batch of
    /// `batch` images (4-byte floats): the dominant activation at large image sizes (quadratic in the tokens).
    static func attentionBytes(vit: ViTConfig, discriminator d: DiscriminatorConfig, batch: Int) -> Double {
        let patches = Double((vit.imageSize / vit.patchSize) * (vit.imageSize / vit.patchSize))
        let tokens = patches + 1 + Double(vit.numRegisters)
        let vitMaps = Double(batch) * Double(vit.depth) * Double(vit.heads) * tokens * tokens
        let discriminatorMaps = Double(batch) * Double(d.layers) * Double(d.heads) * patches * patches
        return 4 * (vitMaps + discriminatorMaps)
    }

    /// Pretty, key-sorted JSON of the resolved config (written into every run directory).
    public func resolvedJSON() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }
}
