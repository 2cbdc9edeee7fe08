import PatchGuardCore
import PatchGuardNN
import PatchGuardMethod

/// The model as a job builds it: from the job config's `model`, `train` and `data.image_size` sections, with the
/// resolved config stored in every checkpoint (so `evaluate --checkpoint` can rebuild the model from it).
extension PatchGuardModel {
    public convenience init(config: JobConfig, maxBatch: Int? = nil, backbone: ViTConfig? = nil,
                            using rng: inout SeededRNG, kernels: (any Kernels<T>)? = nil) throws {
        try self.init(model: config.model, train: config.train, imageSize: config.data.imageSize, maxBatch: maxBatch,
                      backbone: backbone, using: &rng, kernels: kernels)
    }

    public func saveCheckpoint(path: String, epoch: Int, config: JobConfig,
                               optimizer: PatchGuardOptimizerState<T>? = nil,
                               calibration: ScoreCalibration? = nil) throws {
        try saveCheckpoint(path: path, epoch: epoch, arch: config.model.arch,
                           configJSON: String(decoding: try config.resolvedJSON(), as: UTF8.self), optimizer: optimizer,
                           calibration: calibration)
    }
}
