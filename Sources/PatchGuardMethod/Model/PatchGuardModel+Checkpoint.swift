import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// Checkpoints are ordinary safetensors files (readable by Python's `safetensors`):
/// backbone parameters under timm names, discriminator parameters under the official `discriminator.…` names,
/// AdamW moments under `optimizer.m.<name>` / `optimizer.v.<name>`, and metadata: format, epoch, optimizer
/// step, architecture, the resolved job config and, for a finished training run, the decision threshold and score
/// normalisation (`calibration`, ``ScoreCalibration``; absent from older checkpoints). Written atomically
/// (temporary file + rename).
///
/// Integrity: a checkpoint is never written with a NaN or infinity in a parameter or optimizer moment (the save
/// throws naming the tensor, and the previous file stays in place), and reading one refuses metadata that is not a
/// checkpoint's (`epoch`/`optimizer_step` not integers ≥ 0), naming the file.
extension PatchGuardModel {
    public static var checkpointFormat: String { "patchguard-checkpoint-v1" }

    public struct CheckpointState: Sendable {
        public var epoch: Int
        public var optimizerStep: Int
    }

    /// Writes parameters, the optimizer state when given (moments and step; without one, no moments and step 0),
    /// and metadata (`arch`, `image_size` and the resolved job config as JSON, which jobs read back; the
    /// calibration when given).
    public func saveCheckpoint(path: String, epoch: Int, arch: String, configJSON: String,
                               optimizer: PatchGuardOptimizerState<T>? = nil,
                               calibration: ScoreCalibration? = nil) throws {
        if let bad = nonFiniteTensor(optimizer: optimizer) {
            throw PatchGuardError.numeric("\(path) not written: tensor '\(bad)' holds a NaN or infinity at epoch \(epoch)")
        }
        var w = SafeTensorsWriter()
        func add(_ arena: Arena<T>, prefix: String) {
            for e in arena.entries { w.add(prefix + e.name, shape: e.shape, values: UnsafeBufferPointer(arena[e.name].buffer)) }
        }
        add(vit.parameters, prefix: ""); add(discriminator.params, prefix: "")
        if let optimizer {
            add(optimizer.vit.m, prefix: "optimizer.m."); add(optimizer.vit.v, prefix: "optimizer.v.")
            add(optimizer.discriminator.m, prefix: "optimizer.m."); add(optimizer.discriminator.v, prefix: "optimizer.v.")
        }
        w.metadata = [
            "format": Self.checkpointFormat, "epoch": "\(epoch)", "optimizer_step": "\(optimizer?.step ?? 0)",
            "arch": arch, "image_size": "\(imageSize)",
            "config": configJSON,
        ]
        if let calibration { w.metadata[ScoreCalibration.metadataKey] = try calibration.metadataJSON() }
        try w.write(to: path)
    }

    /// Restores parameters (and, when present, optimizer moments and step) from a checkpoint written by
    /// ``saveCheckpoint(path:epoch:arch:configJSON:optimizer:)`` into the model and, when given, `optimizer`. A
    /// missing or misshapen tensor throws naming it.
    @discardableResult
    public func loadCheckpoint(path: String, optimizer: PatchGuardOptimizerState<T>? = nil) throws -> CheckpointState {
        let file = try SafeTensorsFile.load(path: path)
        func load(_ arena: Arena<T>, prefix: String, required: Bool) throws {
            for e in arena.entries {
                let name = prefix + e.name
                guard let info = file.info(name) else {
                    if required { throw PatchGuardError.io(path: path, reason: "checkpoint lacks tensor '\(name)' (shape \(e.shape)); was it trained with another architecture?") }
                    continue
                }
                guard info.shape == e.shape else {
                    throw PatchGuardError.io(path: path, reason: "tensor '\(name)' has shape \(info.shape), this model expects \(e.shape) (check model.arch, data.image_size and model.discriminator)")
                }
                try file.copy(name, into: arena[e.name].buffer)
            }
        }
        try load(vit.parameters, prefix: "", required: true)
        try load(discriminator.params, prefix: "", required: true)
        let counts = try Self.checkpointState(of: file)
        let epoch = counts.epoch, step = counts.optimizerStep
        if let optimizer {
            try load(optimizer.vit.m, prefix: "optimizer.m.", required: false)
            try load(optimizer.vit.v, prefix: "optimizer.v.", required: false)
            try load(optimizer.discriminator.m, prefix: "optimizer.m.", required: false)
            try load(optimizer.discriminator.v, prefix: "optimizer.v.", required: false)
            optimizer.step = step
        }
        return CheckpointState(epoch: epoch, optimizerStep: step)
    }

    /// The epoch and optimizer step a checkpoint's metadata states; both must be integers ≥ 0, otherwise the
    /// error names the file, the key and the value found.
    public static func checkpointState(of file: SafeTensorsFile) throws -> CheckpointState {
        func count(_ key: String) throws -> Int {
            guard let text = file.metadata[key] else {
                throw PatchGuardError.io(path: file.path, reason: "invalid checkpoint: metadata '\(key)' is missing")
            }
            guard let n = Int(text), n >= 0 else {
                throw PatchGuardError.io(path: file.path, reason: "invalid checkpoint: metadata '\(key)' is \"\(text)\", expected an integer ≥ 0")
            }
            return n
        }
        return CheckpointState(epoch: try count("epoch"), optimizerStep: try count("optimizer_step"))
    }

    /// The name of the first parameter (then optimizer moment, when given) holding a NaN or infinity, or nil.
    public func nonFiniteTensor(optimizer: PatchGuardOptimizerState<T>? = nil) -> String? {
        var arenas: [(Arena<T>, String)] = [(vit.parameters, ""), (discriminator.params, "")]
        if let optimizer {
            arenas += [(optimizer.vit.m, "optimizer.m."), (optimizer.vit.v, "optimizer.v."),
                       (optimizer.discriminator.m, "optimizer.m."), (optimizer.discriminator.v, "optimizer.v.")]
        }
        for (arena, prefix) in arenas {
            for e in arena.entries {
                let p = arena.pointer(e.name)
                for i in 0..<e.count where !p[i].isFinite { return prefix + e.name }
            }
        }
        return nil
    }

    /// Loads backbone weights (timm names) from a safetensors file, e.g. a DINOv2 checkpoint; returns warnings.
    public func loadBackboneWeights(path: String) throws -> [String] {
        try vit.loadWeights(path: path)
    }
}
