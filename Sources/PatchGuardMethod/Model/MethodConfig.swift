import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

// The method's config sections (model, training, training attack). ``JobConfig`` (Jobs) composes them with the
// data and evaluation sections; defaults live here, in the property initialisers, and only here.

/// A config value from a fixed set of strings (`"object"`, `"gradcam"`, `"patches"`, …), spelt in JSON as its raw
/// value. Decoding an unknown string fails with a message that names the value and the allowed ones; the job
/// config's loader adds the key path and the file (or `--set`).
public protocol ConfigEnum: RawRepresentable, CaseIterable, Codable, Sendable, Equatable where RawValue == String {}

extension ComputePrecision: ConfigEnum {}

extension ConfigEnum {
    /// `"object, texture"`.
    public static var allowedValues: String { allCases.map(\.rawValue).joined(separator: ", ") }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath,
                debugDescription: "unknown value \"\(text)\" (allowed: \(Self.allowedValues))"))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// `data.mask_resize` (the type lives with the resamplers, in PatchGuardImage).
extension MaskResizeRule: ConfigEnum {}

public struct DiscriminatorConfig: Codable, Equatable, Sendable {
    /// Post-norm attention blocks after the learned positional encodings.
    public var layers = 1
    public var heads = 4
    public var hidden = 2048
    public var dropout = 0.2

    public init(layers: Int = 1, heads: Int = 4, hidden: Int = 2048, dropout: Double = 0.2) {
        self.layers = layers; self.heads = heads; self.hidden = hidden; self.dropout = dropout
    }
}

public struct ModelConfig: Codable, Equatable, Sendable {
    public init() {}

    /// Which detector: `"patchguard"` (default) or `"diffusion"` (the `diffusion` section).
    public var kind: ModelKind = .patchguard
    /// A ViT preset named as timm names it (`vit_small_patch14_dinov2`, `vit_tiny_patch16_224`, …).
    public var arch = "vit_small_patch14_dinov2"
    /// Optional safetensors checkpoint for the backbone (timm names); empty = random initialisation.
    public var weights = ""
    /// 1-based backbone layers whose final-normed patch tokens feed the discriminator; empty = the last layer.
    public var featureLayers: [Int] = []
    public var discriminator = DiscriminatorConfig()
    /// The matrix products' precision: `"fp32"` (default) or `"bf16"` (bf16 inputs, fp32 accumulation; needs a CPU
    /// with AVX512_BF16 and is refused elsewhere; see ``GEMMPrecision``). Both detectors; `--precision` overrides.
    public var precision: ComputePrecision = .fp32

    enum CodingKeys: String, CodingKey {
        case kind, arch, weights, featureLayers = "feature_layers", discriminator, precision
    }
}

public struct TrainConfig: Codable, Equatable, Sendable {
    public init() {}

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
    /// Which epoch's weights `best.safetensors` keeps: `"last"` (no selection, no validation pass) or
    /// `"validation_robust"` (the highest image AUROC, under the validation attack, of the held-back normals
    /// against pseudo-anomalies made from them; needs `validation_fraction` > 0).
    public var selectBy: SelectionRule = .last
    /// The validation attack: PGD steps (random start, the exact top-k image score, at `attack.epsilon`).
    public var validationSteps = 5
    /// Stop when the validation robust AUROC falls this far below its best after adversarial training began
    /// (the catastrophic overfitting of single-step training); 0 = never stop, only log.
    public var overfitStop = 0.0
    /// Share of the normal training images held back (never trained on) to calibrate the decision threshold at
    /// the end of training (``ScoreCalibration``) and, with `select_by`, to choose the epoch; 0 = no validation
    /// split and no stored threshold.
    public var validationFraction = 0.1
    /// The false-positive rate on those validation normals that the stored threshold is chosen for.
    public var thresholdFPR = 0.01

    enum CodingKeys: String, CodingKey {
        case epochs, batchSize = "batch_size", lr, weightDecay = "weight_decay", lrMinFactor = "lr_min_factor"
        case adversarial, cleanWarmupEpochs = "clean_warmup_epochs", checkpointEvery = "checkpoint_every"
        case regLayers = "reg_layers", regWeights = "reg_weights"
        case validationFraction = "validation_fraction", thresholdFPR = "threshold_fpr"
        case selectBy = "select_by", validationSteps = "validation_steps", overfitStop = "overfit_stop"
    }

    /// Whether epoch `epoch` (0-based) trains adversarially, given a usable attack.
    public func isAdversarial(epoch: Int, attack: AttackConfig) -> Bool {
        adversarial && attack.trainSteps > 0 && attack.epsilon > 0 && epoch >= cleanWarmupEpochs
    }
}

/// `train.select_by`.
public enum SelectionRule: String, ConfigEnum {
    case last
    case validationRobust = "validation_robust"
}

public struct AttackConfig: Codable, Equatable, Sendable {
    public init() {}

    /// PGD steps used during adversarial training.
    public var trainSteps = 10
    /// L∞ budget in [0,1] pixel units (a string such as "8/255" is accepted).
    public var epsilon = 8.0 / 255.0
    /// Step size; 0 = the default of ``AttackSpec/alpha`` (2.5·ε/steps).
    public var alpha = 0.0
    public var randomStart = false
    /// Step size as a multiple of ε/steps when `alpha` is 0: 2.5 (the paper); FGSM with random start
    /// (Wong et al. 2020) is `train_steps` 1, `random_start` true, `alpha_scale` 1.25.
    public var alphaScale = 2.5
    /// What the training attack moves, cycled over the batches (batch i uses `train_targets[i % count]`):
    /// `"patches"` (the paper: normal patches up, anomalous ones down), `"image_topk"` (the exact top-k image
    /// score, the threat the evaluation's image AUROC is judged by: normal images up, pseudo-anomalies down).
    public var trainTargets: [PGDTarget] = [.patches]
    /// ε grows linearly over the first this many adversarial epochs (ε·(j+1)/n in the j-th); 0 = full ε at once.
    public var epsilonRampEpochs = 0
    /// Run the training attack on the model in training mode (discriminator dropout on, a fresh seeded mask per
    /// forward: ``TrainingModeDetector``), as the official code does; false (ours) = evaluation mode, no dropout,
    /// the model the evaluation scores. README "Fidelity to the official code".
    public var trainMode = false

    enum CodingKeys: String, CodingKey {
        case trainSteps = "train_steps", epsilon, alpha, randomStart = "random_start", alphaScale = "alpha_scale"
        case trainTargets = "train_targets", epsilonRampEpochs = "epsilon_ramp_epochs", trainMode = "train_mode"
    }

    /// The training attack as the one attack type (PGD on the patch labels; α resolved by ``AttackSpec/alpha``).
    public var spec: AttackSpec {
        AttackSpec(epsilon: epsilon, steps: trainSteps, alpha: alpha, randomStart: randomStart, target: .patches)
    }

    /// The attack of batch `batch` in the `adversarialEpoch`-th (0-based) adversarial epoch: ε ramped, α from
    /// `alpha` or `alpha_scale`·ε/steps, the batch's target.
    public func trainingAttack(adversarialEpoch j: Int, batch: Int) -> AttackSpec {
        let eps = epsilonRampEpochs > 0 ? epsilon * Double(min(j + 1, epsilonRampEpochs)) / Double(epsilonRampEpochs)
            : epsilon
        let a = alpha > 0 ? alpha : alphaScale * eps / Double(max(trainSteps, 1))
        let target = trainTargets.isEmpty ? .patches : trainTargets[batch % trainTargets.count]
        return AttackSpec(epsilon: eps, steps: trainSteps, alpha: a, randomStart: randomStart, target: target)
    }
}
