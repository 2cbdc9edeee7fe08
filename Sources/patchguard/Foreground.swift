import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Foreground: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute foreground masks for the training images and write them as PNGs.",
        discussion: """
        foreground.method = "gradcam" (the paper's way) needs an ImageNet classifier ViT in safetensors (timm names
        incl. head.weight/head.bias) in foreground.weights and its preset in foreground.arch.
        foreground.method = "border" (the default) needs no classifier: the object is what differs from the image
        border in colour or texture (one object on a plain background). Training computes border masks itself when
        none are on disk, so this command is for looking at them (--preview) or for Grad-CAM.
        Writes CATEGORY/train/foreground_mask/<stem>.png (training uses them) or --mask-dir.
        Texture categories (data.category_type = "texture") need no masks.
        """)
    @OptionGroup var job: JobOptions
    @Flag(help: "Recompute masks that already exist.") var force = false
    @Option(name: .customLong("mask-dir"), help: "Write masks here instead of data.foreground_dir (default CATEGORY/train/foreground_mask).") var maskDir: String?
    @Option(help: ArgumentHelp("Also write image | map (Grad-CAM or border contrast) | mask triples here.", valueName: "dir")) var preview: String?

    func run() throws {
        try runReportingErrors {
            let config = try job.loadConfig()
            if config.data.categoryType == .texture { return print(ForegroundJob.textureMessage) }
            let run = try job.openRun(command: "foreground", config: config)
            try ForegroundJob.run(config: config, run: run, force: force, maskDir: maskDir, previewDir: preview)
        }
    }
}
