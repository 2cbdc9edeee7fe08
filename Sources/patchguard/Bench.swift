import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: sgemm GFLOPS (1024³ and ViT-S/14 shapes), ViT and diffusion U-Net forward / train / input-gradient img/s, peak memory.")
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false
    @Flag(name: .customLong("gemm-only"), help: "Run only the sgemm part.") var gemmOnly = false
    @Option(name: .customLong("arch"), help: "ViT presets to measure (repeatable).") var archs: [String] = ViTBenchmark.defaultArchs
    @Option(name: .customLong("image-size"), help: "Image size for the ViT part.") var imageSize = 224
    @Option(help: "Batch size for the ViT part.") var batch = 8
    @Option(help: "Minimum seconds per measurement.") var seconds = 5.0
    @Option(name: .customLong("unet-image-size"), help: "Image size for the diffusion U-Net part.") var unetImageSize = 64
    @Flag(name: .customLong("no-unet"), help: "Skip the diffusion U-Net part.") var noUNet = false
    @Flag(name: .customLong("no-vit"), help: "Skip the ViT part.") var noViT = false

    func run() throws {
        try runReportingErrors {
            try BenchmarkJob.run(json: json, gemmOnly: gemmOnly, archs: noViT ? [] : archs, imageSize: imageSize, batch: batch,
                                 seconds: seconds, startupLine: blasStartupLine, unetImageSize: unetImageSize,
                                 unet: !noUNet) { line in
                print(line)
                fflush(stdout)
            }
        }
    }
}
