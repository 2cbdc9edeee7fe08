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
    @Flag(name: .customLong("no-gemm"), help: "Skip the sgemm part (e.g. to profile only the model steps).") var noGemm = false
    @Option(name: .customLong("arch"), help: "ViT presets to measure (repeatable).") var archs: [String] = ViTBenchmark.defaultArchs
    @Option(name: .customLong("image-size"), help: "Image size for the ViT part.") var imageSize = 224
    @Option(help: "Batch size for the ViT part.") var batch = 8
    @Option(name: .customLong("step"),
            help: "Steps to measure (repeatable): forward, train, input_grad (default: all three; one step alone is what to profile).")
    var steps: [String] = ViTBenchmark.steps
    @Option(help: "Minimum seconds per measurement.") var seconds = 5.0
    @Option(name: .customLong("unet-image-size"), help: "Image size for the diffusion U-Net part.") var unetImageSize = 64
    @Option(name: .customLong("unet-channels"),
            help: "block_out_channels of the U-Net, comma-separated (default: diffusion-default.json's 32,64,64; diffusion-mvtec-cpu.json's is 32,64,128).")
    var unetChannels: String?
    @Flag(name: .customLong("no-unet"), help: "Skip the diffusion U-Net part.") var noUNet = false
    @Flag(name: .customLong("no-vit"), help: "Skip the ViT part.") var noViT = false
    @Option(help: ArgumentHelp("Precision of every matrix product, the GEMM part included: fp32 or bf16 (needs AVX512_BF16).",
                               valueName: "fp32|bf16"))
    var precision: ComputePrecision = .fp32

    func channels() throws -> [Int]? {
        guard let unetChannels else { return nil }
        let c = unetChannels.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !c.isEmpty, c.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--unet-channels must be positive integers separated by commas, got '\(unetChannels)'")
        }
        return c.map { $0! }
    }

    func run() throws {
        try runReportingErrors {
            try GEMMPrecision.set(precision)
            try BenchmarkJob.run(json: json, gemmOnly: gemmOnly, gemm: !noGemm, archs: noViT ? [] : archs, imageSize: imageSize, batch: batch,
                                 steps: steps, seconds: seconds, startupLine: blasStartupLine + "; " + precisionLine, unetImageSize: unetImageSize,
                                 unet: !noUNet, unetChannels: try channels()) { line in
                print(line)
                fflush(stdout)
            }
        }
    }
}
