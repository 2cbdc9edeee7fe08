import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN

/// `patchguard features` as library code: one image's final-normed patch tokens and every layer's attention
/// maps as safetensors, to compare numerics with another implementation (e.g. timm).
///
/// Tensors: `features` (N_patches × C, last layer) and `attn.<i>` (heads × N × N, 1-based layer).
public enum FeatureDump {
    /// Writes `output`; returns the weight-loading warnings and a one-line summary.
    public static func write(arch: String, weights: String?, image: String, imageSize: Int, seed: UInt64,
                             to output: String) throws -> (warnings: [String], summary: String) {
        let config = try ViTConfig.preset(arch, imageSize: imageSize)
        let vit = try ViT<Float>(config: config, maxBatch: 1, seed: seed)
        let warnings = try weights.map { try vit.loadWeights(path: $0) } ?? []
        let img = try ImageIO.read(path: image).resized(width: imageSize, height: imageSize, filter: .auto)
        try img.pixels.withUnsafeBufferPointer {
            try vit.forward(images: $0.baseAddress!, batch: 1, featureLayers: [config.depth],
                            attentionLayers: Array(1...config.depth))
        }
        var w = SafeTensorsWriter()
        let f = vit.features(layer: config.depth)
        w.add("features", shape: [f.shape[1], f.shape[2]], values: UnsafeBufferPointer(f.buffer))
        for l in 1...config.depth {
            let a = vit.attention(layer: l)
            w.add("attn.\(l)", shape: Array(a.shape.dropFirst()), values: UnsafeBufferPointer(a.buffer))
        }
        w.metadata = ["arch": arch, "image": image, "image_size": "\(imageSize)", "weights": weights ?? "random(seed \(seed))"]
        try w.write(to: output)
        let shape = f.shape.dropFirst().map(String.init).joined(separator: "×")
        return (warnings, "wrote \(output): features \(shape), attn.1…attn.\(config.depth)")
    }
}
