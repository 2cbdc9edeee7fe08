import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

/// `--attack pgd|apgd|suite --steps N --epsilon E [--epsilon l2:0.2 …] [--norm l2] [--alpha A] [--target T …]
/// [--restarts R] [--eot-samples K]` on evaluate and heatmaps.
///
/// Numeric options take the next word whatever it looks like (`--alpha -1` is the value −1, reported as invalid,
/// not a missing value), and `--epsilon=-1` is the same.
struct AttackOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Attack to run after the clean pass: pgd, apgd, suite (APGD on the top-k image score, APGD on the unflipped patches, APGD on the patch labels, PGD with random start on the top-k score), or none. Default: the config's eval.attacks.", valueName: "name"))
    var attack: AttackChoice?
    @Option(parsing: .unconditional, help: "Steps per restart (e.g. 10, 100, 1000; default 10, suite 100).")
    var steps: Int?
    @Option(parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Budget in [0,1] pixel units; fractions such as 8/255 work; prefix linf: or l2: to give its norm (l2:0.2). Repeat for several budgets.",
                               valueName: "eps"))
    var epsilon: [String] = []
    @Option(help: "Norm of the --epsilon values without a prefix: linf (default) or l2.") var norm: AttackNorm?
    @Option(parsing: .unconditional, help: "PGD step size (default 2.5·ε/steps; APGD starts at 2ε and ignores it).")
    var alpha: String?
    @Flag(name: .customLong("random-start"), help: "Start PGD from a random point in the ε-ball (APGD always does).") var randomStart = false
    @Option(help: ArgumentHelp("What is attacked: patches (the paper: the ground-truth patch labels, i.e. the pixel map), image (mean of all patch logits), image_topk (the exact top-k image score) or patches_sea (the pixel map, only patches not yet flipped). Repeat for several.", valueName: "target"))
    var target: [PGDTarget] = []
    @Option(parsing: .unconditional, help: "Restarts per attack (default 1); per image the strongest is kept.")
    var restarts: Int?
    @Option(name: .customLong("eot-samples"), parsing: .unconditional,
            help: "Gradient samples per step for a stochastic detector (EOT; default 1).")
    var eotSamples: Int?

    func validate() throws {
        for e in epsilon {
            guard let (n, v) = parseBudget(e) else {
                throw ValidationError("--epsilon \(e) is not a number or fraction (e.g. 8/255, l2:0.2)")
            }
            if !(v.isFinite && v >= 0) { throw ValidationError("--epsilon must be ≥ 0, got \(e)") }
            if (n ?? norm ?? .linf) == .linf && v > 1 { throw ValidationError("--epsilon must be in [0, 1] for L∞, got \(e)") }
        }
        if let steps, steps < 0 { throw ValidationError("--steps must be ≥ 0, got \(steps)") }
        if let alpha {
            guard let a = parseNumber(alpha) else { throw ValidationError("--alpha \(alpha) is not a number or fraction") }
            if !(a.isFinite && a > 0) {
                throw ValidationError("--alpha must be > 0, got \(alpha) (omit it for the default 2.5·ε/steps)")
            }
        }
        if let restarts, restarts < 1 { throw ValidationError("--restarts must be ≥ 1, got \(restarts)") }
        if let eotSamples, eotSamples < 1 { throw ValidationError("--eot-samples must be ≥ 1, got \(eotSamples)") }
    }

    func parseNumber(_ text: String) -> Double? {
        if case let .number(v) = JSONValue.parseCommandLineValue(text) { return v }
        return nil
    }

    /// `8/255` → (nil, 0.0314), `l2:0.2` → (.l2, 0.2), `linf:2/255` → (.linf, 0.0078).
    func parseBudget(_ text: String) -> (AttackNorm?, Double)? {
        for n in AttackNorm.allCases where text.lowercased().hasPrefix(n.rawValue + ":") {
            return parseNumber(String(text.dropFirst(n.rawValue.count + 1))).map { (n, $0) }
        }
        return parseNumber(text).map { (nil, $0) }
    }

    var overrides: AttackOverrides {
        let parsed = epsilon.compactMap(parseBudget)
        return AttackOverrides(attack: attack, steps: steps,
                               epsilons: parsed.filter { $0.0 == nil }.map(\.1),
                               alpha: alpha.flatMap(parseNumber), randomStart: randomStart, targets: target,
                               budgets: parsed.compactMap { n, v in n.map { AttackOverrides.Budget(norm: $0, epsilon: v) } },
                               norm: norm, restarts: restarts, eotSamples: eotSamples)
    }
}

/// The evaluation job of evaluate and heatmaps, with its run directory opened (the resolved config written).
func openEvaluation(command: String, job: JobOptions, attack: AttackOptions, checkpoint: String?,
                    keepMaps: Bool) throws -> (EvaluationJob, RunDirectory) {
    let evaluation = try EvaluationJob(checkpoint: try defaultCheckpoint(checkpoint, output: job.output),
                                       configPath: job.config, overrides: job.allOverrides,
                                       attackOverrides: attack.overrides, keepMaps: keepMaps)
    return (evaluation, try job.openRun(command: command, config: evaluation.config))
}

func defaultCheckpoint(_ given: String?, output: String?) throws -> String {
    if let given { return given }
    if let output { return (output as NSString).appendingPathComponent("checkpoint.safetensors") }
    throw ValidationError("give --checkpoint FILE (or --output RUN_DIR of a training run)")
}

extension PGDTarget: ExpressibleByArgument {}
extension AttackChoice: ExpressibleByArgument {}
extension AttackNorm: ExpressibleByArgument {}
extension CategoryType: ExpressibleByArgument {}
extension ForegroundMethod: ExpressibleByArgument {}
extension GradCAMTargetKind: ExpressibleByArgument {}
extension ThresholdKind: ExpressibleByArgument {}
extension AttackName: ExpressibleByArgument {}
extension SquashFit: ExpressibleByArgument {}
