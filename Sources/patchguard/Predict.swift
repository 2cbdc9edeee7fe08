import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Predict: ParsableCommand {
    /// `--attack`: a suite has no single attacked image, so it is not offered here.
    enum Choice: String, ExpressibleByArgument, CaseIterable { case pgd, apgd, none }

    static let configuration = CommandConfiguration(
        abstract: "Score new images with a trained checkpoint: image score, normalised score, decision and heat-map overlay per image.",
        discussion: """
        PATH… are PNG/JPEG files of any size, or folders searched recursively (.png, .jpg, .jpeg; sorted). The \
        model and its scoring settings come from the checkpoint; the decision (anomalous when score > threshold) \
        uses the threshold stored in the checkpoint at the end of training (calibrated on held-back normal \
        training images for train.threshold_fpr), or --threshold. normalized_score is in (0, 1), above 0.5 \
        exactly when anomalous. Overlays are drawn at each image's own size.

        Writes into the run directory: predictions.csv, predictions.json, overlays/NNNN_<stem>.png and, with \
        --attack, attacked/NNNN_<stem>.png and attacked/NNNN_<stem>_overlay.png (model size): each image attacked \
        towards the opposite decision on the exact top-k image score.

        A file that cannot be decoded is reported (log and the error column) and the others are still predicted; \
        the exit status is then 3. Exit 2: bad options or no stored threshold without --threshold.

        Examples:
          patchguard predict --checkpoint runs/default/checkpoint.safetensors photos/ extra.jpg
          patchguard predict --checkpoint … --threshold 0.5 --attack pgd --epsilon 8/255 --steps 10 photos/
        """)
    @Argument(help: ArgumentHelp("Image files or folders.", valueName: "path")) var paths: [String]
    @Option(help: "Trained checkpoint (checkpoint.safetensors of a training run).") var checkpoint: String
    @Option(name: [.customLong("run-dir"), .customLong("output")],
            help: ArgumentHelp("Run directory (default: runs/<timestamp>-predict).", valueName: "dir")) var runDir: String?
    @Option(parsing: .unconditional, help: "Decision threshold on the image score; overrides the checkpoint's.") var threshold: Double?
    @Option(help: "Attack each image towards the opposite decision: pgd, apgd or none (default: none).") var attack: Choice?
    @Option(parsing: .unconditional, help: "Attack budget in [0,1] pixel units, fractions such as 8/255 work (default: the checkpoint's attack.epsilon).")
    var epsilon: String?
    @Option(parsing: .unconditional, help: "Attack steps (default 10).") var steps: Int?
    @Option(help: "Attack norm: linf (default) or l2.") var norm: AttackNorm?
    @Option(parsing: .unconditional, help: "Seed of the attack's random starts (default: the checkpoint's seed).") var seed: UInt64?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per forward (default: the checkpoint's eval.batch_size).")
    var batchSize: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Precision of the matrix products: fp32 or bf16 (needs AVX512_BF16; default: the checkpoint's model.precision).",
        valueName: "fp32|bf16"))
    var precision: ComputePrecision?

    var epsilonValue: Double? {
        guard let epsilon, case let .number(v) = JSONValue.parseCommandLineValue(epsilon) else { return nil }
        return v
    }

    func validate() throws {
        if let epsilon, !(epsilonValue.map { $0.isFinite && $0 >= 0 } ?? false) {
            throw ValidationError("--epsilon \(epsilon) is not a number ≥ 0 or a fraction such as 8/255")
        }
        if attack == nil || attack == Choice.none, epsilon != nil || steps != nil || norm != nil {
            throw ValidationError("--epsilon/--steps/--norm need --attack pgd or apgd")
        }
        if let steps, steps < 1 { throw ValidationError("--steps must be ≥ 1, got \(steps)") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be ≥ 1, got \(batchSize)") }
        if let threshold, !threshold.isFinite { throw ValidationError("--threshold must be a finite number") }
    }

    func run() throws {
        try runReportingErrors {
            let request = attack.flatMap { $0 == Choice.none ? nil
                : PredictAttack(name: $0 == .apgd ? .apgd : .pgd, epsilon: epsilonValue, steps: steps ?? 10, norm: norm ?? .linf) }
            let job = try PredictJob(checkpoint: checkpoint, inputs: paths, threshold: threshold, attack: request,
                                     batchSize: batchSize, seed: seed)
            try GEMMPrecision.set(precision ?? job.config.model.precision)
            let run = try RunDirectory(path: runDir, command: "predict")
            try run.writeConfig(job.config)
            run.log("patchguard \(PatchGuardVersion.string) predict: run directory \(run.path)")
            run.log(blasStartupLine)
            run.log(precisionLine)
            let report = try job.run(in: run)
            print(report.table(), terminator: "")
            if report.exitStatus != 0 {
                RunDirectory.reportFatal("\(report.failed) of \(report.count) file(s) could not be predicted "
                                         + "(the error column of \(run.file(PredictionReport.csvFile)))")
                throw ExitCode(report.exitStatus)
            }
        }
    }
}
