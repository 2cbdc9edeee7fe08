import ArgumentParser
import Foundation
import PatchGuard
import PatchGuardCore
import PatchGuardData

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adversarially train a PatchGuard detector on one category (pseudo-anomalies in the foreground, PGD training).",
        discussion: """
        Each batch trains on clean normals, PGD-attacked normals, pseudo-anomalies and PGD-attacked pseudo-anomalies
        (train.adversarial, attack.train_steps, attack.epsilon). Writes config.json, log.txt, train_log.jsonl and
        checkpoint.safetensors (atomically, every train.checkpoint_every epochs and at the end) into the run directory.
        Foreground masks are read from <category>/train/foreground_mask/<stem>.png when present (patchguard foreground).
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
            let run = try options.openRun(command: "train", config: config)
            let summary = try Trainer(config: config, run: run).train(resume: resume != nil)
            if let last = summary.epochs.last {
                run.log(String(format: "done: %d epochs in %@, final loss %.4f (bce %.4f, reg %.4f)",
                               summary.epochs.count, ProgressBar.clock(summary.seconds), last.loss, last.bce, last.reg))
            }
            run.log("checkpoint: \(summary.checkpoint)")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image AUROC (AD) and pixel AUROC/AUPRO (AL), clean and under PGD attacks.")
    @OptionGroup var job: JobOptions
    @Option(help: "Checkpoint to evaluate (a .safetensors file written by train).") var checkpoint: String?

    func run() throws {
        try runReportingErrors {
            _ = try job.loadConfig()
            throw PatchGuardError.notImplemented("`patchguard evaluate` (issue: evaluation under attack)")
        }
    }
}

struct Heatmaps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write PNG heat-map overlays (image | heat map | ground truth | attacked) and an index page.")
    @OptionGroup var job: JobOptions
    @Option(help: "Checkpoint to use.") var checkpoint: String?

    func run() throws {
        try runReportingErrors {
            _ = try job.loadConfig()
            throw PatchGuardError.notImplemented("`patchguard heatmaps` (issue: evaluation, heat maps, reports)")
        }
    }
}

struct Foreground: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute Grad-CAM foreground masks for the training images and write them as PNGs.")
    @OptionGroup var job: JobOptions

    func run() throws {
        try runReportingErrors {
            _ = try job.loadConfig()
            throw PatchGuardError.notImplemented("`patchguard foreground` (issue: Grad-CAM foreground masks)")
        }
    }
}

struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write pseudo-anomalies (original | pseudo-anomaly | mask) as a PNG grid, to look at.")
    @OptionGroup var job: JobOptions
    @Option(help: "Number of pseudo-anomalies to draw.") var count = 16

    func run() throws {
        try runReportingErrors {
            _ = try job.loadConfig()
            throw PatchGuardError.notImplemented("`patchguard synthesize` (issue: pseudo-anomaly synthesis)")
        }
    }
}

struct GenerateData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-data",
        abstract: "Write the generated default dataset (MVTec AD layout: an object category and a texture) used by make run.")
    @Option(help: "Destination folder.") var output = "Datasets/generated"
    @Option(help: "Seed of the generated data (same seed → identical files).") var seed: UInt64 = 0
    @Option(name: .customLong("image-size"), help: "Side of the generated images in pixels.") var imageSize = GeneratedDataset.defaultImageSize
    @Option(name: .customLong("train-good"), help: "Normal training images per category.") var trainGood = 40
    @Option(name: .customLong("test-good"), help: "Normal test images per category.") var testGood = 10
    @Option(name: .customLong("test-defective"), help: "Defective test images per category.") var testDefective = 15
    @Option(help: ArgumentHelp("Also write a PNG grid of normal and defective samples with their masks here.", valueName: "png"))
    var preview: String?

    func run() throws {
        try runReportingErrors {
            let start = Date()
            let categories = try GeneratedDataset.write(
                to: output, seed: seed, imageSize: imageSize,
                counts: GeneratedCounts(trainGood: trainGood, testGood: testGood, testDefective: testDefective))
            for c in categories { print(c.summary) }
            print(String(format: "wrote %d categories to %@ in %.1f s", categories.count, output, Date().timeIntervalSince(start)))
            if let preview, let first = categories.first {
                try writeSampleGrid(category: first, imageSize: imageSize, count: 8, to: preview)
                print("preview: \(preview)")
            }
        }
    }
}

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one image's final-normed patch tokens and every layer's attention maps (safetensors), to compare numerics.")
    @Option(help: "ViT preset (timm name).") var arch: String
    @Option(help: "Backbone weights (safetensors, timm names).") var weights: String?
    @Option(help: "Input image (PNG or JPEG).") var image: String
    @Option(name: .customLong("image-size"), help: "Resize the image to this size.") var imageSize = 224
    @Option(help: "Output .safetensors file.") var output: String

    func run() throws {
        try runReportingErrors {
            throw PatchGuardError.notImplemented("`patchguard features` (issue: Vision Transformer)")
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: sgemm GFLOPS (1024³ and ViT-S/14 shapes), ViT forward / train / input-gradient img/s, peak memory.")
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false
    @Flag(name: .customLong("gemm-only"), help: "Run only the sgemm part.") var gemmOnly = false

    func run() throws {
        try runReportingErrors {
            if !json { print(blasStartupLine) }
            let rows = GEMMBenchmark.run()
            for r in rows {
                if json {
                    print("{\"bench\": \"gemm\", \"name\": \"\(r.name)\", \"m\": \(r.m), \"n\": \(r.n), \"k\": \(r.k), \"gflops\": \(String(format: "%.1f", r.gflops)), \"openblas_core\": \"\(OpenBLAS.coreName)\"}")
                } else {
                    print(r.name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%8.1f GFLOPS", r.gflops))
                }
            }
            if !json { print(String(format: "peak resident memory: %.0f MiB", peakResidentMB())) }
        }
    }
}
