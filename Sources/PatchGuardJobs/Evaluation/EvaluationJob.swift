import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// `--attack` on the command line: PGD, APGD, the suite (``AttackName/suite``), or no attack (the clean pass only).
public enum AttackChoice: String, ConfigEnum {
    case pgd, apgd, suite, none

    var attackName: AttackName? {
        switch self {
        case .pgd: return .pgd
        case .apgd: return .apgd
        case .suite: return .suite
        case .none: return nil
        }
    }
}

/// The command line's attack settings (`--attack/--steps/--epsilon/--norm/--alpha/--random-start/--target/
/// --restarts/--eot-samples`); unset fields fall back to the config.
public struct AttackOverrides: Sendable, Equatable {
    public var attack: AttackChoice?
    public var steps: Int?
    /// Budgets in ``norm`` (the first version's L∞ list), one attack per budget and target.
    public var epsilons: [Double]
    /// Budgets with their own norm (`--epsilon l2:0.2`), after ``epsilons``.
    public var budgets: [Budget]
    /// The norm of ``epsilons`` (default L∞).
    public var norm: AttackNorm?
    public var alpha: Double?
    public var randomStart: Bool
    public var targets: [PGDTarget]
    public var restarts: Int?
    public var eotSamples: Int?

    /// One (norm, ε).
    public struct Budget: Sendable, Equatable {
        public var norm: AttackNorm
        public var epsilon: Double
        public init(norm: AttackNorm, epsilon: Double) { self.norm = norm; self.epsilon = epsilon }
    }

    public init(attack: AttackChoice? = nil, steps: Int? = nil, epsilons: [Double] = [], alpha: Double? = nil,
                randomStart: Bool = false, targets: [PGDTarget] = [], budgets: [Budget] = [], norm: AttackNorm? = nil,
                restarts: Int? = nil, eotSamples: Int? = nil) {
        self.attack = attack; self.steps = steps; self.epsilons = epsilons; self.alpha = alpha
        self.randomStart = randomStart; self.targets = targets; self.budgets = budgets; self.norm = norm
        self.restarts = restarts; self.eotSamples = eotSamples
    }

    /// The attacks to run. `--attack none`: none. No attack option: the config's `eval.attacks` (with a random
    /// start when `--random-start` is given; a suite expanded). Otherwise, for every budget (default
    /// `attack.epsilon` in L∞): the suite's attacks (`--attack suite`, default 100 steps; `--target` is not used),
    /// or one attack (`--attack`, default pgd) per target (default `patches`) with `--steps` (default 10),
    /// `--alpha` (default 0, i.e. ``AttackSpec/alpha``'s 2.5·ε/steps), `--restarts` and `--eot-samples` (default 1).
    public func attacks(config: JobConfig) -> [AttackSpec] {
        if attack == AttackChoice.none { return [] }
        if attack == nil && steps == nil && epsilons.isEmpty && budgets.isEmpty && targets.isEmpty && alpha == nil
            && norm == nil && restarts == nil && eotSamples == nil {
            return config.eval.attacks.flatMap { $0.expanded() }.map { var a = $0; a.randomStart = a.randomStart || randomStart; return a }
        }
        let name = attack?.attackName ?? .pgd
        var all = epsilons.map { Budget(norm: norm ?? .linf, epsilon: $0) } + budgets
        if all.isEmpty { all = [Budget(norm: norm ?? .linf, epsilon: config.attack.epsilon)] }
        let stepCount = steps ?? (name == .suite ? 100 : 10)
        func spec(_ b: Budget, _ t: PGDTarget) -> AttackSpec {
            AttackSpec(name: name, epsilon: b.epsilon, steps: stepCount, alpha: alpha ?? 0, randomStart: randomStart,
                       target: t, norm: b.norm, restarts: restarts ?? 1, eotSamples: eotSamples ?? 1)
        }
        if name == .suite { return all.flatMap { spec($0, .imageTopK).expanded() } }
        return (targets.isEmpty ? [.patches] : targets).flatMap { t in all.map { spec($0, t) } }
    }
}

/// What ``EvaluationJob/run(in:log:)`` returns: the result (report, curves, maps) and the test set it ran on.
public struct EvaluationOutcome: Sendable {
    public var result: EvaluationResult
    public var samples: [LoadedSample]
}

/// `patchguard evaluate` and `heatmaps` as library code: the detector rebuilt from a checkpoint, its category's
/// test set, the clean pass and the attacks, and the reports.
///
/// The config (``resolveConfig(checkpoint:configPath:overrides:)``) starts from the checkpoint's own stored config
/// (safetensors metadata `config`, the resolved job config of the training run), so the model section
/// (architecture, discriminator, feature layers), `data.image_size` and `train` come from the checkpoint. The keys
/// a `--config` file states go over the checkpoint's (data, eval, seed, …; unstated keys keep the checkpoint's
/// values) and `--set` overrides apply last; a model key that the file or a `--set` states and that differs from
/// the checkpoint's is an error naming the key (`model.weights`, the backbone's initial weights, is not checked).
/// Checkpoints without a stored config fall back to the given config, with a warning.
public struct EvaluationJob {
    public var checkpoint: String
    /// The resolved config (write it into the run directory).
    public var config: JobConfig
    public var attacks: [AttackSpec]
    /// Keep every map and attacked image (heat maps need them).
    public var keepMaps: Bool
    /// Warnings from resolving the config (e.g. an old checkpoint without a stored config); log them.
    public var warnings: [String]
    /// Craft every attack on this checkpoint's model instead (a transfer attack; same image size), then score the
    /// attacked images with ``checkpoint``'s. nil = white-box.
    public var transferFrom: String?

    /// - Parameters:
    ///   - configPath: optional `--config`; `overrides`: `--set key=value` (and `seed=` for `--seed`).
    ///   - attackOverrides: the command line's attack options (none: the config's `eval.attacks`).
    public init(checkpoint: String, configPath: String? = nil, overrides: [String] = [],
                attackOverrides: AttackOverrides = AttackOverrides(), keepMaps: Bool = false) throws {
        self.checkpoint = checkpoint
        (config, warnings) = try Self.resolveConfig(checkpoint: checkpoint, configPath: configPath, overrides: overrides)
        attacks = attackOverrides.attacks(config: config)
        self.keepMaps = keepMaps
    }

    /// Loads the detector and the test set, evaluates, writes `metrics.json`, `metrics.md` and the ROC curves
    /// into `run` and returns the result.
    public func run(in run: RunDirectory, showProgress: Bool = true) throws -> EvaluationOutcome {
        for w in warnings { run.log("warning: " + w) }
        let category = try MVTecCategory.scan(root: config.data.root, category: config.data.category)
        let batch = max(1, config.eval.batchSize)
        let isDiffusion = DiffusionCheckpoint.isDiffusionCheckpoint(checkpoint)
        var model: PatchGuardModel<Float>?
        var diffusion: DiffusionDetector?
        if isDiffusion {
            if transferFrom != nil {
                throw PatchGuardError.config("--transfer-from is for PatchGuard checkpoints; \(checkpoint) is a "
                                             + "diffusion model")
            }
            diffusion = try DiffusionCheckpoint.detector(checkpoint: checkpoint, config: config, category: category,
                                                         maxBatch: batch, log: run.log)
        } else {
            var rng = SeededRNG(seed: config.seed)
            let m = try PatchGuardModel<Float>(config: config, maxBatch: batch, using: &rng)
            let state = try m.loadCheckpoint(path: checkpoint)
            run.log("checkpoint: \(checkpoint) (epoch \(state.epoch)); model: \(m.summary)")
            model = m
        }
        run.log("data: \(category.summary)")
        var tests = category.test
        let limit = config.eval.maxImages
        if limit > 0 && limit < tests.count {
            let picked = Self.evenlySpaced(count: tests.count, limit: limit)
            run.log("eval.max_images = \(limit): evaluating \(limit) of \(tests.count) test images, evenly spaced "
                    + "(indices \(picked.map(String.init).joined(separator: ",")))")
            tests = picked.map { tests[$0] }
        }
        let samples = try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: config.data.cacheMB << 20,
                                      maskResize: config.data.maskResize)
            .load(tests)
        var settings = try EvaluationSettings(eval: config.eval, patchSize: model?.patchSize ?? 1,
                                              batchSize: batch, seed: config.seed,
                                              keepMaps: keepMaps, showProgress: showProgress)
        settings.attacks = attacks
        let evaluator = try model.map { try Evaluator(detector: $0, settings: settings) }
            ?? Evaluator(mapDetector: diffusion!, settings: settings)
        if let source = transferFrom {
            let (sourceConfig, _) = try Self.resolveConfig(checkpoint: source, configPath: nil, overrides: [])
            guard sourceConfig.data.imageSize == config.data.imageSize else {
                throw PatchGuardError.config("--transfer-from \(source): its image size \(sourceConfig.data.imageSize) "
                                             + "differs from the evaluated model's \(config.data.imageSize)")
            }
            var sourceRNG = SeededRNG(seed: sourceConfig.seed)
            let surrogate = try PatchGuardModel<Float>(config: sourceConfig, maxBatch: max(1, config.eval.batchSize),
                                                       using: &sourceRNG)
            _ = try surrogate.loadCheckpoint(path: source)
            evaluator.attackSource = try PatchLogitDetector(surrogate, topK: config.eval.topK)
            run.log("transfer attack: attacks are crafted on \(source) and scored on \(checkpoint)")
        }
        var result = try evaluator.evaluate(samples, category: config.data.category, log: run.log)
        if let source = transferFrom {
            result.report.notes.append("Transfer attack: every attack row was crafted on \(source) (white-box "
                                       + "there) and scored on this model.")
        }
        if limit > 0 && limit < category.test.count {
            result.report.notes.append("A subset: \(samples.count) of the \(category.test.count) test images, evenly "
                                       + "spaced (eval.max_images = \(limit)).")
        }
        if isDiffusion {
            result.report.detectorKind = "diffusion"
            let d = config.diffusion
            result.report.notes.append("Diffusion detector: one-shot denoising from t* = \(d.tStar) (\(d.noiseDraws) "
                                       + "noise draw(s)); the map is the multiscale reconstruction error minus the "
                                       + "training normals' mean map, the image score its maximum over pixels "
                                       + "(eval.top_k, sigma and radius are not used).")
        }
        result.report.detector = checkpoint
        let calibration = try ScoreCalibration.stored(in: try SafeTensorsFile.load(path: checkpoint))
        result.report.thresholds = DecisionThresholds(result: result, calibration: calibration)
        if let calibration, calibration.topK != config.eval.topK {
            result.report.notes.append("The stored threshold was calibrated on the top-\(calibration.topK) image "
                                       + "score; this evaluation uses eval.top_k = \(config.eval.topK), so the rates "
                                       + "at the stored threshold compare different scores.")
        }
        for line in result.report.thresholds?.lines() ?? [] { run.log("thresholds: " + line) }
        let files = try result.writeReports(to: run.path)
        run.log("wrote " + files.joined(separator: ", "))
        return EvaluationOutcome(result: result, samples: samples)
    }
}

extension EvaluationJob {
    /// `limit` indices out of `0..<count`, evenly spaced (`⌊i·count/limit⌋`), so every defect type keeps its share.
    public static func evenlySpaced(count: Int, limit: Int) -> [Int] {
        guard limit > 0, limit < count else { return Array(0..<count) }
        return (0..<limit).map { $0 * count / limit }
    }
}
