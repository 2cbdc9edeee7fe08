import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one image's final-normed patch tokens and every layer's attention maps (safetensors), to compare numerics.",
        discussion: "Tensors: features (N_patches × C, last layer) and attn.<i> (heads × N × N, 1-based layer).")
    @Option(help: "ViT preset (timm name), e.g. vit_small_patch14_dinov2.") var arch: String
    @Option(help: "Backbone weights (safetensors, timm names). Without it the model is randomly initialised (--seed).") var weights: String?
    @Option(help: "Input image (PNG or JPEG).") var image: String
    @Option(name: .customLong("image-size"), help: "Resize the image to this size.") var imageSize = 224
    @Option(help: "Seed for random initialisation when no weights are given.") var seed: UInt64 = 0
    @Option(help: "Output .safetensors file.") var output: String

    func run() throws {
        try runReportingErrors {
            let (warnings, summary) = try FeatureDump.write(arch: arch, weights: weights, image: image,
                                                            imageSize: imageSize, seed: seed, to: output)
            for w in warnings { print("warning: \(w)") }
            print(summary)
        }
    }
}
