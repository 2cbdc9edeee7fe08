import ArgumentParser
import Foundation
import PatchGuard
import PatchGuardCore

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adversarially train a PatchGuard detector on one category (foreground → pseudo-anomalies → PGD training).")
    @OptionGroup var job: JobOptions
    @Option(help: ArgumentHelp("Continue the run in this directory from its last checkpoint.", valueName: "run_dir"))
    var resume: String?

    func run() throws {
        try runReportingErrors {
            _ = try job.loadConfig()
            throw PatchGuardError.notImplemented("`patchguard train` (issue: attention discriminator, loss, PGD, training loop)")
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
        abstract: "Write the generated default dataset (MVTec AD layout) used by `make run` and the tests.")
    @Option(help: "Destination folder.") var output = "Datasets/generated"
    @Option(help: "Seed of the generated data.") var seed: UInt64 = 0

    func run() throws {
        try runReportingErrors {
            throw PatchGuardError.notImplemented("`patchguard generate-data` (issue: datasets)")
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
