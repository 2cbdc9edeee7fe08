import Foundation
import PatchGuardCore

extension UNet2D {
    /// Loads parameters from a safetensors file under diffusers' names (a `UNet2DModel.state_dict()` saved with
    /// `safetensors`, e.g. `diffusion_pytorch_model.safetensors`, or a file from ``saveWeights(to:metadata:)``).
    /// A missing tensor or a shape mismatch throws, naming the tensor and both shapes; tensors the model does not
    /// use come back as warnings.
    @discardableResult
    public func loadWeights(from file: SafeTensorsFile) throws -> [String] {
        let known = Set(parameters.entries.map(\.name))
        for e in parameters.entries {
            guard let info = file.info(e.name) else {
                throw PatchGuardError.invalidArgument("\(file.path): missing tensor '\(e.name)' (expected shape \(e.shape))")
            }
            guard info.shape == e.shape else {
                throw PatchGuardError.invalidArgument(
                    "\(file.path): tensor '\(e.name)' has shape \(info.shape), the model expects \(e.shape)")
            }
            try file.copy(e.name, into: parameters[e.name].buffer)
        }
        return file.names.filter { !known.contains($0) }.map { "unused tensor '\($0)' skipped" }
    }

    @discardableResult
    public func loadWeights(path: String) throws -> [String] { try loadWeights(from: SafeTensorsFile.load(path: path)) }

    /// Writes every parameter under its diffusers name (F32 for Float, F64 for Double); the config goes into the
    /// metadata as JSON under `unet_config`.
    public func saveWeights(to path: String, metadata: [String: String] = [:]) throws {
        var w = SafeTensorsWriter()
        w.metadata = metadata
        if let json = try? JSONEncoder().encode(config), let s = String(data: json, encoding: .utf8) {
            w.metadata["unet_config"] = s
        }
        for e in parameters.entries {
            w.add(e.name, shape: e.shape, values: UnsafeBufferPointer(parameters[e.name].buffer))
        }
        try w.write(to: path)
    }
}
