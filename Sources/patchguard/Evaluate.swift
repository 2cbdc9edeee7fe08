import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image AUROC (AD) and pixel AUROC/AUPRO (AL), clean and under PGD attacks.",
        discussion: """
        Writes metrics.json, metrics.md, roc_image.svg and roc_pixel.svg into the run directory and prints the \
        table.

        The model (model.*, data.image_size) is rebuilt from the checkpoint's stored config. --config and --set \
        are needed only to change the data (data.root, data.category) or the eval settings; a model key they \
        state must agree with the checkpoint's. Without --config the checkpoint's own data and eval settings are \
        used.

        --target patches (the paper's attack) uses the ground-truth patch labels, pushing normal patches up and \
        anomalous ones down: it attacks the pixel map, not the image score (on a defective image it raises every \
        normal patch, which raises the top-k image score). --target image attacks the image score.

        Example:
          patchguard evaluate --checkpoint runs/tire/checkpoint.safetensors --attack pgd --steps 100 --epsilon 8/255
        """)
    @OptionGroup var job: JobOptions
    @OptionGroup var attack: AttackOptions
    @Option(help: "Checkpoint to evaluate (default: RUN_DIR/checkpoint.safetensors of --output).") var checkpoint: String?

    func run() throws {
        try runReportingErrors {
            let (evaluation, run) = try openEvaluation(command: "evaluate", job: job, attack: attack,
                                                       checkpoint: checkpoint, keepMaps: false)
            let outcome = try evaluation.run(in: run)
            print(outcome.result.report.table())
            run.log("metrics: \(run.file("metrics.md"))")
        }
    }
}
