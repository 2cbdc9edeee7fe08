import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adversarially train a PatchGuard detector on one category (pseudo-anomalies in the foreground, PGD training).",
        discussion: """
        Each batch trains on clean normals, PGD-attacked normals, pseudo-anomalies and PGD-attacked pseudo-anomalies
        (train.adversarial, attack.train_steps, attack.epsilon). Writes config.json, log.txt, train_log.jsonl and
        checkpoint.safetensors (atomically, every train.checkpoint_every epochs and at the end) into the run directory.
        Foreground masks (object categories) are read from <category>/train/foreground_mask/<stem>.png or
        data.foreground_dir when present (patchguard foreground); missing ones are computed by border contrast when
        foreground.method is "border" (the default).
        """)
    @OptionGroup var job: JobOptions
    @Option(help: ArgumentHelp("Continue the run in this directory from its last checkpoint (its config.json is used; --set may change e.g. train.epochs).",
                               valueName: "run_dir"))
    var resume: String?

    func validate() throws {
        if resume != nil && job.config != nil {
            throw ValidationError("--resume uses the run's own config.json; do not pass --config with it")
        }
        if resume != nil && job.output != nil {
            throw ValidationError("--resume continues in its own run directory; do not pass --output with it")
        }
    }

    func run() throws {
        try runReportingErrors {
            var options = job
            if let resume {
                options.config = (resume as NSString).appendingPathComponent("config.json")
                options.output = resume
            }
            let config = try options.loadConfig()
            // Before the run directory is touched: a failed resume must not rewrite the run's config.json.
            if let resume {
                if config.model.kind == .diffusion {
                    let path = (resume as NSString).appendingPathComponent("checkpoint.safetensors")
                    let epoch = try DiffusionModel.state(of: try SafeTensorsFile.load(path: path)).epoch
                    try Trainer.checkResumable(epoch: epoch, checkpoint: path, epochs: config.train.epochs)
                } else {
                    try Trainer.checkResumable(runDirectory: resume, config: config)
                }
            }
            let run = try options.openRun(command: "train", config: config)
            if config.model.kind == .diffusion {
                let summary = try DiffusionTrainer(config: config, run: run).train(resume: resume != nil)
                if let last = summary.epochs.last {
                    run.log(String(format: "done: %d epochs in %@, final loss %.4f", summary.epochs.count,
                                   ProgressBar.clock(summary.seconds), last.loss))
                }
                run.log("checkpoint: \(summary.checkpoint)")
                return
            }
            let summary = try Trainer(config: config, run: run).train(resume: resume != nil)
            if let last = summary.epochs.last {
                run.log(String(format: "done: %d epochs in %@, final loss %.4f (bce %.4f, reg %.3e)",
                               summary.epochs.count, ProgressBar.clock(summary.seconds), last.loss, last.bce, last.reg))
            }
            run.log("checkpoint: \(summary.checkpoint)")
        }
    }
}
