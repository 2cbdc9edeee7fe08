import Foundation
import PatchGuardCore
import PatchGuardMetrics
import PatchGuardData
import PatchGuardMethod

/// A diffusion checkpoint (`model.kind = "diffusion"`, metadata `kind` = `diffusion`) as a detector.
/// ``EvaluationJob``, `heatmaps` and ``CertifyJob`` use it: the EMA weights and the stored mean map rebuild the
/// ``DiffusionDetector``, which the ``Evaluator`` scores by its own pixel maps (``Evaluator/init(mapDetector:settings:)``)
/// and the attacks see through the ``AnomalyDetector`` protocol (EOT because the detector is stochastic — set
/// `eot_samples`).
public enum DiffusionCheckpoint {
    /// Whether `path` is a diffusion checkpoint (metadata `kind` = `diffusion`).
    public static func isDiffusionCheckpoint(_ path: String) -> Bool {
        (try? SafeTensorsFile.load(path: path).metadata["kind"]) == "diffusion"
    }

    /// The detector of a diffusion checkpoint at `config` (EMA weights, stored mean map). The stored mean map μ
    /// belongs to the t* and noise draws it was computed with (the training config's); at others
    /// (`--set diffusion.t_star=…`) it is recomputed on the category's training normals.
    public static func detector(checkpoint: String, config: JobConfig, category: MVTecCategory, maxBatch: Int,
                                log: (String) -> Void) throws -> DiffusionDetector {
        let S = config.data.imageSize
        let model = try DiffusionModel(config: config.diffusion, imageSize: S, maxBatch: 1,
                                       weightDecay: config.train.weightDecay, seed: config.seed)
        let epoch = try model.loadCheckpoint(path: checkpoint)
        let detector = try model.detector(maxBatch: maxBatch, seed: config.seed)
        log("checkpoint: \(checkpoint) (epoch \(epoch)); diffusion detector t* = \(config.diffusion.tStar), "
            + "\(config.diffusion.noiseDraws) noise draw(s)")
        if let stored = try SafeTensorsFile.load(path: checkpoint).metadata["config"],
           let trained = try? JobConfig.decode(JobConfig.tree(json: Data(stored.utf8), source: checkpoint).merged,
                                               source: checkpoint),
           trained.diffusion.tStar != config.diffusion.tStar || trained.diffusion.noiseDraws != config.diffusion.noiseDraws {
            let normals = try SampleLoader(imageSize: S, cacheBudgetBytes: config.data.cacheMB << 20).load(category.train)
            try DiffusionTrainer.calibrate(model, normals, config: config)
            detector.meanMap = model.meanMap
            log("mean map recomputed on \(normals.count) training normals at t* = \(config.diffusion.tStar), "
                + "\(config.diffusion.noiseDraws) draw(s) (the checkpoint's is for t* = \(trained.diffusion.tStar), "
                + "\(trained.diffusion.noiseDraws) draw(s))")
        }
        return detector
    }
}
