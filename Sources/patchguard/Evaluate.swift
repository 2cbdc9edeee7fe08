import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image AUROC (AD) and pixel AUROC/AUPRO (AL), clean and under PGD/APGD attacks, with worst-case rows.",
        discussion: """
        Writes metrics.json, metrics.md, roc_image.svg and roc_pixel.svg into the run directory and prints the \
        table.

        The model (model.*, data.image_size) is rebuilt from the checkpoint's stored config. --config and --set \
        are needed only to change the data (data.root, data.category) or the eval settings; a model key they \
        state must agree with the checkpoint's. Without --config the checkpoint's own data and eval settings are \
        used.

        --target patches (the paper's attack) uses the ground-truth patch labels, pushing normal patches up and \
        anomalous ones down: it attacks the pixel map, not the image score (on a defective image it raises every \
        normal patch, which raises the top-k image score). --target image attacks the mean of all patch logits (a \
        surrogate of the image score); --target image_topk the exact top-k image score; --target patches_sea the \
        pixel map, only the patches not yet flipped.

        --attack suite runs, at every budget, APGD on image_topk, APGD on patches_sea, APGD on patches and PGD \
        (random start) on image_topk (--steps default 100, --restarts each). Every budget (norm, ε) gets a \
        worst-case row: per image the highest score any attack reached on a normal image and the lowest on a \
        defective one (clean counts), per pixel map the strongest attack's map.

        Examples:
          patchguard evaluate --checkpoint runs/tire/checkpoint.safetensors --attack pgd --steps 100 --epsilon 8/255
          patchguard evaluate --checkpoint … --attack suite --epsilon 2/255 --epsilon 8/255 --epsilon l2:0.2
          patchguard evaluate --checkpoint … --attack apgd --steps 100 --target image_topk --norm l2 --epsilon 0.2 \
            --restarts 3 --set eval.max_images=16
        """)
    @OptionGroup var job: JobOptions
    @OptionGroup var attack: AttackOptions
    @Option(help: "Checkpoint to evaluate (default: RUN_DIR/checkpoint.safetensors of --output).") var checkpoint: String?
    @Option(name: .customLong("transfer-from"),
            help: "Craft the attacks on this other checkpoint (same image size) and score them on --checkpoint: a transfer attack, never stronger than the white-box one unless gradients are masked.")
    var transferFrom: String?

    func run() throws {
        try runReportingErrors {
            var (evaluation, run) = try openEvaluation(command: "evaluate", job: job, attack: attack,
                                                       checkpoint: checkpoint, keepMaps: false)
            evaluation.transferFrom = transferFrom
            let outcome = try evaluation.run(in: run)
            print(outcome.result.report.table())
            run.log("metrics: \(run.file("metrics.md"))")
        }
    }
}
