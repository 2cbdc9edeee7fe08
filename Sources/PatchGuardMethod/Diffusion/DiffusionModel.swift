import Foundation
import PatchGuardCore
import PatchGuardNN

/// What a diffusion detector's training owns: the U-Net being trained, the EMA of its weights (what evaluation
/// uses), the AdamW moments, the schedule, and the mean anomaly map of the normal training images (computed with
/// the EMA weights at each checkpoint). The pure model is ``UNet2D``; this is its training state.
///
/// Checkpoint (safetensors, written atomically): parameters under diffusers' names, the EMA under `ema.<name>`,
/// AdamW moments under `optimizer.m.<name>` / `optimizer.v.<name>`, the mean map as `mean_map` (S, S); metadata
/// `format` = `patchguard-diffusion-checkpoint-v1`, `kind` = `diffusion`, `epoch`, `step`, `config` (the resolved
/// job config JSON), `unet_config`.
public final class DiffusionModel {
    public let unet: UNet2D<Float>
    public let ema: Arena<Float>
    public let optimizer: AdamWState<Float>
    public let schedule: DDPMSchedule
    public let config: DiffusionConfig
    public var meanMap: [Float]
    public static let format = "patchguard-diffusion-checkpoint-v1"

    public init(config: DiffusionConfig, imageSize: Int, maxBatch: Int, weightDecay: Double, seed: UInt64) throws {
        self.config = config
        unet = try UNet2D<Float>(config: config.unet(imageSize: imageSize), maxBatch: maxBatch, seed: seed)
        ema = Arena(sameLayoutAs: unet.parameters)
        ema.storage.data.update(from: unet.parameters.storage.data, count: ema.totalCount)
        optimizer = AdamWState(parameters: unet.parameters, weightDecay: weightDecay)
        schedule = try config.schedule()
        meanMap = [Float](repeating: 0, count: imageSize * imageSize)
    }

    /// `ema ← d·ema + (1 − d)·θ`.
    public func updateEMA() {
        let d = Float(config.emaDecay), e = ema.storage.data, p = unet.parameters.storage.data
        for i in 0..<ema.totalCount { e[i] = d * e[i] + (1 - d) * p[i] }
    }

    /// A detector on the EMA weights (a separate U-Net of `maxBatch`), with this model's mean map.
    public func detector(maxBatch: Int, seed: UInt64) throws -> DiffusionDetector {
        let net = try UNet2D<Float>(config: unet.config, maxBatch: maxBatch)
        net.parameters.storage.data.update(from: ema.storage.data, count: ema.totalCount)
        let core = try DiffusionReconstruction(unet: net, schedule: schedule, tStar: config.tStar)
        let det = try DiffusionDetector(core: core, draws: config.noiseDraws, seed: seed)
        det.meanMap = meanMap
        return det
    }

    /// The first tensor (parameters, EMA, moments) holding a NaN or infinity, or nil.
    public func nonFiniteTensor() -> String? {
        for (prefix, arena) in [("", unet.parameters), ("ema.", ema), ("optimizer.m.", optimizer.m), ("optimizer.v.", optimizer.v)] {
            for e in arena.entries {
                let p = arena.pointer(e.name)
                if (0..<e.count).contains(where: { !p[$0].isFinite }) { return prefix + e.name }
            }
        }
        return nil
    }

    public func saveCheckpoint(path: String, epoch: Int, configJSON: String) throws {
        var w = SafeTensorsWriter()
        for (prefix, arena) in [("", unet.parameters), ("ema.", ema), ("optimizer.m.", optimizer.m), ("optimizer.v.", optimizer.v)] {
            for e in arena.entries { w.add(prefix + e.name, shape: e.shape, values: UnsafeBufferPointer(arena[e.name].buffer)) }
        }
        let s = unet.config.sampleSize
        meanMap.withUnsafeBufferPointer { w.add("mean_map", shape: [s, s], values: $0) }
        let unetJSON = String(decoding: try JSONEncoder().encode(unet.config), as: UTF8.self)
        w.metadata = ["format": Self.format, "kind": "diffusion", "epoch": String(epoch),
                      "step": String(optimizer.step), "config": configJSON, "unet_config": unetJSON]
        try w.write(to: path)
    }

    /// Loads everything a checkpoint holds; returns its epoch. Refuses a file that is not a diffusion checkpoint.
    @discardableResult
    public func loadCheckpoint(path: String) throws -> Int {
        let file = try SafeTensorsFile.load(path: path)
        let (epoch, step) = try Self.state(of: file)
        try unet.loadWeights(from: file)
        for (prefix, arena) in [("ema.", ema), ("optimizer.m.", optimizer.m), ("optimizer.v.", optimizer.v)] {
            for e in arena.entries {
                guard let info = file.info(prefix + e.name), info.shape == e.shape else {
                    throw PatchGuardError.io(path: path, reason: "invalid checkpoint: '\(prefix + e.name)' missing or misshapen")
                }
                try file.copy(prefix + e.name, into: arena[e.name].buffer)
            }
        }
        meanMap = try file.floats("mean_map")
        optimizer.step = step
        return epoch
    }

    /// (epoch, step) from a diffusion checkpoint's metadata; anything else is refused naming the file.
    public static func state(of file: SafeTensorsFile) throws -> (epoch: Int, step: Int) {
        guard file.metadata["format"] == format else {
            throw PatchGuardError.io(path: file.path, reason: "not a diffusion checkpoint (metadata format is "
                                     + "\(file.metadata["format"].map { "\"\($0)\"" } ?? "missing"), expected \"\(format)\")")
        }
        guard let e = file.metadata["epoch"].flatMap(Int.init), e >= 0,
              let s = file.metadata["step"].flatMap(Int.init), s >= 0 else {
            throw PatchGuardError.io(path: file.path, reason: "invalid checkpoint: epoch/step metadata missing or not integers ≥ 0")
        }
        return (e, s)
    }
}
