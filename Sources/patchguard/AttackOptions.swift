import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

/// `--attack pgd --steps N --epsilon E [--epsilon E2 …] [--alpha A] [--target T …]` on evaluate and heatmaps.
struct AttackOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Attack to run after the clean pass: pgd, or none. Default: the config's eval.attacks.", valueName: "name"))
    var attack: AttackChoice?
    @Option(help: "PGD steps (e.g. 10, 100, 1000).") var steps: Int?
    @Option(help: ArgumentHelp("L∞ budget in [0,1] pixel units; fractions such as 8/255 work. Repeat for several budgets.",
                               valueName: "eps"))
    var epsilon: [String] = []
    @Option(help: "PGD step size (default 2.5·ε/steps).") var alpha: Double?
    @Flag(name: .customLong("random-start"), help: "Start PGD from a uniform random point in the ε-ball.") var randomStart = false
    @Option(help: ArgumentHelp("What PGD attacks: patches (the paper: the ground-truth patch labels, i.e. the pixel map) or image (the image score). Repeat for both.", valueName: "target"))
    var target: [PGDTarget] = []

    func validate() throws {
        for e in epsilon where parseEpsilon(e) == nil { throw ValidationError("--epsilon \(e) is not a number or fraction") }
        if let steps, steps < 0 { throw ValidationError("--steps must be ≥ 0") }
    }

    func parseEpsilon(_ text: String) -> Double? {
        if case let .number(v) = JSONValue.parseCommandLineValue(text) { return v }
        return nil
    }

    var overrides: AttackOverrides {
        AttackOverrides(attack: attack, steps: steps, epsilons: epsilon.compactMap(parseEpsilon), alpha: alpha,
                        randomStart: randomStart, targets: target)
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
extension CategoryType: ExpressibleByArgument {}
extension ForegroundMethod: ExpressibleByArgument {}
extension GradCAMTargetKind: ExpressibleByArgument {}
extension ThresholdKind: ExpressibleByArgument {}
extension AttackName: ExpressibleByArgument {}
