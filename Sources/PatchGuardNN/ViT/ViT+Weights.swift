import Foundation
import PatchGuardCore

extension ViT {
    /// Loads parameters from a safetensors file under timm's names (e.g. a converted timm/DINOv2 checkpoint or a
    /// file written by ``saveWeights(to:metadata:)``).
    ///
    /// - A parameter the model has but the file lacks, or a tensor whose shape differs, throws
    ///   ``PatchGuardError/invalidArgument(_:)`` naming the tensor and both shapes.
    /// - `pos_embed` with a different square grid (e.g. DINOv2's 37×37 at 518 px for a 224 px model) is resampled
    ///   bicubically (``PosEmbedResample``), prefix rows kept; the prefix row count must match.
    /// - Tensors the model does not use (`mask_token`, `head.*` when `numClasses == 0`, …) are skipped; their names
    ///   come back as warnings.
    /// - Returns: warnings (skipped tensors, resampling done).
    @discardableResult
    public func loadWeights(from file: SafeTensorsFile) throws -> [String] {
        var warnings: [String] = []
        let known = Set(parameters.entries.map(\.name))
        for e in parameters.entries {
            guard let info = file.info(e.name) else {
                throw PatchGuardError.invalidArgument("\(file.path): missing tensor '\(e.name)' (expected shape \(e.shape))")
            }
            if info.shape == e.shape {
                try file.copy(e.name, into: parameters[e.name].buffer)
            } else if e.name == "pos_embed" {
                let values = try resampledPosEmbed(file.doubles(e.name), fileShape: info.shape, path: file.path)
                let dst = parameters[e.name].buffer
                for i in 0..<dst.count { dst[i] = T(values[i]) }
                warnings.append("pos_embed resampled from \(info.shape) to \(e.shape) (bicubic)")
            } else {
                throw PatchGuardError.invalidArgument(
                    "\(file.path): tensor '\(e.name)' has shape \(info.shape), the model expects \(e.shape)")
            }
        }
        for name in file.names where !known.contains(name) {
            warnings.append("unused tensor '\(name)' skipped")
        }
        return warnings
    }

    /// ``loadWeights(from:)`` for a path.
    @discardableResult
    public func loadWeights(path: String) throws -> [String] {
        try loadWeights(from: SafeTensorsFile.load(path: path))
    }

    /// Writes every parameter under its timm name (F32 for `ViT<Float>`, F64 for `ViT<Double>`); the config goes
    /// into the metadata as JSON under `vit_config`.
    public func saveWeights(to path: String, metadata: [String: String] = [:]) throws {
        var w = SafeTensorsWriter()
        w.metadata = metadata
        if let json = try? JSONEncoder().encode(config), let s = String(data: json, encoding: .utf8) {
            w.metadata["vit_config"] = s
        }
        for e in parameters.entries {
            w.add(e.name, shape: e.shape, values: UnsafeBufferPointer(parameters[e.name].buffer))
        }
        try w.write(to: path)
    }

    func resampledPosEmbed(_ values: [Double], fileShape: [Int], path: String) throws -> [Double] {
        let prefix = config.noEmbedClass ? 0 : config.numPrefixTokens
        let rows = config.posEmbedRows, C = self.C
        let fail = { (why: String) in
            PatchGuardError.invalidArgument("\(path): cannot resample 'pos_embed' \(fileShape) to (1, \(rows), \(C)): \(why)")
        }
        guard fileShape.count == 3, fileShape[0] == 1, fileShape[2] == C else { throw fail("channel count differs") }
        let oldGridCount = fileShape[1] - prefix
        let side = Int(Double(max(oldGridCount, 0)).squareRoot().rounded())
        guard oldGridCount > 0, side * side == oldGridCount else {
            throw fail("\(fileShape[1]) rows minus \(prefix) prefix rows is not a square grid")
        }
        let g = config.gridSize
        return PosEmbedResample.resample(values, channels: C, prefix: prefix, oldGrid: (side, side), newGrid: (g, g))
    }
}
