import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// ViT throughput on the CPU, measured the way `Tools/bench_torch.py` measures PyTorch + timm, so the two sets of
/// JSON lines compare row by row:
/// - `forward`: images in [0, 1] → final-normed patch tokens of the last block;
/// - `train`: forward + backward of `L = Σ r·features` to every parameter (gradients zeroed each step, no
///   optimiser update);
/// - `input_grad`: the same loss, gradient w.r.t. the [0, 1] image only (`computeParameterGradients: false`), the
///   PGD / Grad-CAM step.
/// Random timm-style weights (`seed`), one warm-up iteration, then timed iterations until `minSeconds` have
/// elapsed (at least `minIterations`). Each (arch, step) gets a model of its own, built after the previous one is
/// freed and after the process's peak is reset (``ProcessMemory/resetPeak()``), so `peakRSSMB` (VmHWM after the
/// row) is that step's own peak, as `bench_torch.py` measures each step in a process of its own. `forward` is a
/// forward-only pass (`storeCaches: false`, as PyTorch's `no_grad`).
public enum ViTBenchmark {
    public struct Row: Codable, Sendable, Equatable {
        public let arch: String
        public let imageSize: Int
        public let batch: Int
        public let step: String
        public let imgPerS: Double
        public let peakRSSMB: Double
        public let secPerIter: Double
        public let iterations: Int
        /// Share of the step's wall time spent in GEMMs (``GEMMCounter``), and the GEMM FLOPs per image.
        public var gemmShare: Double? = nil
        public var gflopPerImage: Double? = nil
        /// `"fp32"` or `"bf16"` (``GEMMPrecision``).
        public var precision: String? = nil

        enum CodingKeys: String, CodingKey {
            case arch, imageSize = "image_size", batch, step, imgPerS = "img_per_s", peakRSSMB = "peak_rss_mb"
            case secPerIter = "sec_per_iter", iterations = "iters", gemmShare = "gemm_share"
            case gflopPerImage = "gemm_gflop_per_image", precision
        }

        /// One JSON object, the same keys as `Tools/bench_torch.py` (`impl: "swift"`).
        public var jsonLine: String {
            String(format: #"{"impl": "swift", "arch": "%@", "image_size": %d, "batch": %d, "step": "%@", "img_per_s": %.3f, "peak_rss_mb": %.1f, "sec_per_iter": %.4f, "iters": %d, "gemm_share": %.3f, "gemm_gflop_per_image": %.3f, "precision": "%@"}"#,
                   arch, imageSize, batch, step, imgPerS, peakRSSMB, secPerIter, iterations, gemmShare ?? 0,
                   gflopPerImage ?? 0, precision ?? GEMMPrecision.current.rawValue)
        }
    }

    /// Times `iteration` (one warm-up, then until `minSeconds` and `minIterations`) with the GEMM counter on.
    static func measure(arch: String, imageSize: Int, batch: Int, step: String, minSeconds: Double,
                        minIterations: Int, _ iteration: () throws -> Void) throws -> Row {
        try iteration()  // warm-up
        GEMMCounter.enabled = true
        GEMMCounter.reset()
        defer { GEMMCounter.enabled = false }
        var count = 0
        let start = Date()
        repeat {
            try iteration()
            count += 1
        } while count < minIterations || Date().timeIntervalSince(start) < minSeconds
        let total = Date().timeIntervalSince(start)
        let gemm = GEMMCounter.totals
        let seconds = total / Double(count)
        return Row(arch: arch, imageSize: imageSize, batch: batch, step: step, imgPerS: Double(batch) / seconds,
                   peakRSSMB: ProcessMemory.peakMB, secPerIter: seconds, iterations: count,
                   gemmShare: min(1, gemm.seconds / total), gflopPerImage: gemm.flops / 1e9 / Double(count * batch),
                   precision: GEMMPrecision.current.rawValue)
    }

    public static let defaultArchs = ["vit_tiny_patch16_224", "vit_small_patch14_dinov2"]
    public static let steps = ["forward", "train", "input_grad"]

    /// Throws for a step name outside ``steps`` (naming it and the known ones).
    public static func checkSteps(_ steps: [String]) throws {
        for s in steps where !Self.steps.contains(s) {
            throw PatchGuardError.invalidArgument("unknown benchmark step '\(s)' (known: \(Self.steps.joined(separator: ", ")))")
        }
    }

    /// Runs every (arch, step) pair; `progress` receives each row as it is measured.
    public static func run(archs: [String] = defaultArchs, imageSize: Int = 224, batch: Int = 8,
                           steps: [String] = steps, minSeconds: Double = 5, minIterations: Int = 3, seed: UInt64 = 0,
                           progress: ((Row) -> Void)? = nil) throws -> [Row] {
        try checkSteps(steps)
        var rows: [Row] = []
        for arch in archs {
            let config = try ViTConfig.preset(arch, imageSize: imageSize)
            let last = config.depth
            for step in steps {
                ProcessMemory.resetPeak()
                let model = try ViT<Float>(config: config, maxBatch: batch, seed: seed)
                var rng = SeededRNG(seed: seed &+ 1)
                let images = Tensor<Float>(shape: [batch, 3, imageSize, imageSize])
                rng.fillUniform(images.buffer, lo: 0, hi: 1)
                let r = Tensor<Float>(shape: [batch, config.numPatches, config.dim])
                rng.fillNormal(r.buffer, std: 1)
                let dImage = Tensor<Float>(shape: images.shape)
                let iteration: () throws -> Void
                switch step {
                case "forward":
                    iteration = { try model.forward(images: images, featureLayers: [last], storeCaches: false) }
                case "train":
                    iteration = {
                        try model.forward(images: images, featureLayers: [last])
                        model.gradients.zero()
                        try model.backward(dFeatures: [last: r.data], computeParameterGradients: true)
                    }
                default:
                    iteration = {
                        try model.forward(images: images, featureLayers: [last])
                        dImage.zero()
                        try model.backward(dFeatures: [last: r.data], computeParameterGradients: false,
                                           dImage: dImage.data)
                    }
                }
                let row = try measure(arch: arch, imageSize: imageSize, batch: batch, step: step,
                                      minSeconds: minSeconds, minIterations: minIterations, iteration)
                rows.append(row)
                progress?(row)
            }
        }
        return rows
    }
}
