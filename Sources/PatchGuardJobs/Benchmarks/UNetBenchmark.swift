import Foundation
import PatchGuardCore
import PatchGuardNN
import PatchGuardMethod

/// The diffusion detector's U-Net on the CPU, measured the way `Tools/bench_torch.py --archs unet_ddpm` measures
/// diffusers + PyTorch (the same JSON keys, arch `"unet_ddpm"`): `forward` = ε_θ(x_t, t); `train` = forward +
/// backward of `Σ r·ε_θ` to every parameter (no optimiser update); `input_grad` = the same loss w.r.t. x_t only
/// (an attack step). The U-Net is `Configs/diffusion-default.json`'s (the `diffusion` section's defaults), with
/// `channels` as its `block_out_channels` when given (`Configs/diffusion-mvtec-cpu.json`: 32, 64, 128).
public enum UNetBenchmark {
    public static func run(imageSize: Int = 64, batch: Int = 8, channels: [Int]? = nil,
                           steps: [String] = ViTBenchmark.steps,
                           minSeconds: Double = 5, minIterations: Int = 3, seed: UInt64 = 0,
                           progress: ((ViTBenchmark.Row) -> Void)? = nil) throws -> [ViTBenchmark.Row] {
        ProcessMemory.resetPeak()  // the ViT rows' peak is not this model's
        var config = DiffusionConfig()
        if let channels { config.blockOutChannels = channels }
        let model = try UNet2D<Float>(config: config.unet(imageSize: imageSize), maxBatch: batch, seed: seed)
        var rng = SeededRNG(seed: seed &+ 1)
        let x = Tensor<Float>(shape: [batch, 3, imageSize, imageSize]), r = Tensor<Float>(shape: x.shape)
        rng.fillNormal(x.buffer, std: 1); rng.fillNormal(r.buffer, std: 1)
        let t = (0..<batch).map { _ in Double(rng.int(in: 0..<1000)) }
        let dX = Tensor<Float>(shape: x.shape)
        var rows: [ViTBenchmark.Row] = []
        for step in steps {
            let iteration: () throws -> Void
            switch step {
            case "forward": iteration = { try model.forward(images: x.data, timesteps: t) }
            case "train":
                iteration = {
                    try model.forward(images: x.data, timesteps: t)
                    model.gradients.zero()
                    try model.backward(dOutput: r.data)
                }
            case "input_grad":
                iteration = {
                    try model.forward(images: x.data, timesteps: t)
                    dX.zero()
                    try model.backward(dOutput: r.data, computeParameterGradients: false, dImages: dX.data)
                }
            default:
                throw PatchGuardError.invalidArgument("unknown benchmark step '\(step)'")
            }
            let row = try ViTBenchmark.measure(arch: "unet_ddpm", imageSize: imageSize, batch: batch, step: step,
                                               minSeconds: minSeconds, minIterations: minIterations, iteration)
            rows.append(row)
            progress?(row)
        }
        return rows
    }
}
