import Foundation
import PatchGuardCore
import PatchGuardMethod

/// `patchguard bench` as library code: sgemm GFLOPS, then (unless `gemmOnly`) ViT img/s per preset and step,
/// each line handed to `emit` as soon as it is measured (a table row, or one JSON object with `json`).
public enum BenchmarkJob {
    public static func run(json: Bool, gemmOnly: Bool, gemm: Bool = true, archs: [String], imageSize: Int, batch: Int,
                           steps: [String] = ViTBenchmark.steps, seconds: Double,
                           startupLine: String, unetImageSize: Int = 64, unet: Bool = true,
                           unetChannels: [Int]? = nil,
                           emit: @escaping (String) -> Void) throws {
        try ViTBenchmark.checkSteps(steps)  // before the GEMM part, not after it
        if !json { emit(startupLine) }
        let gemmRows = gemm ? GEMMBenchmark.run() : []
        // The roofline: img/s if every GEMM FLOP of a step ran at the 1024³ rate and nothing else took time.
        let peakGFLOPS = gemmRows.first?.gflops
        for r in gemmRows {
            if json {
                emit("{\"bench\": \"gemm\", \"name\": \"\(r.name)\", \"m\": \(r.m), \"n\": \(r.n), \"k\": \(r.k), \"gflops\": \(String(format: "%.1f", r.gflops)), \"openblas_core\": \"\(OpenBLAS.coreName)\"}")
            } else {
                emit(r.name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%8.1f GFLOPS", r.gflops))
            }
        }
        if gemmOnly {
            if !json { emit(String(format: "peak resident memory: %.0f MiB", ProcessMemory.peakMB)) }
            return
        }
        if !json {
            emit("\nViT, batch \(batch), \(imageSize) px (img/s; GEMM: share of the step's time in GEMMs and their "
                 + "GFLOP per image; roofline: img/s if all of it ran at the 1024³ GEMM rate above; "
                 + "peak RSS: each step's own, with a model of its own; forward stores no backward caches):")
        }
        let line = { (row: ViTBenchmark.Row) in
            let roof = peakGFLOPS.flatMap { p in row.gflopPerImage.map { $0 > 0 ? p / $0 : 0 } }
            emit(json ? row.jsonLine
                      : row.arch.padding(toLength: 28, withPad: " ", startingAt: 0)
                        + row.step.padding(toLength: 12, withPad: " ", startingAt: 0)
                        + String(format: "%8.2f img/s   GEMM %3.0f%% of %6.2f GFLOP/img", row.imgPerS,
                                 100 * (row.gemmShare ?? 0), row.gflopPerImage ?? 0)
                        + (roof.map { String(format: "   roofline %8.2f img/s", $0) } ?? "")
                        + String(format: "   peak RSS %6.0f MiB", row.peakRSSMB))
        }
        if !archs.isEmpty {
            _ = try ViTBenchmark.run(archs: archs, imageSize: imageSize, batch: batch, steps: steps, minSeconds: seconds,
                                 progress: line)
        }
        if unet {
            let channels = unetChannels ?? DiffusionConfig().blockOutChannels
            if !json {
                emit("\nDiffusion U-Net (block_out_channels \(channels)), batch \(batch), \(unetImageSize) px:")
            }
            _ = try UNetBenchmark.run(imageSize: unetImageSize, batch: batch, channels: channels, steps: steps,
                                      minSeconds: seconds,
                                      progress: line)
        }
    }
}
