import Foundation
import PatchGuardCore
import PatchGuardData
import PatchGuardMethod

/// `patchguard certify` as library code: the detector (PatchGuard or diffusion, by the checkpoint's kind) rebuilt
/// from a checkpoint exactly as ``EvaluationJob`` / ``DiffusionCheckpoint`` do
/// (the checkpoint's stored config, then `--config`, then `--set`; a model key that disagrees is an error), its
/// category's test set (at most `certify.max_images`, evenly spaced), ``Certifier`` at every `certify.sigmas`,
/// and the reports (``CertificationResult/writeReports(to:)``).
public struct CertifyJob {
    public var checkpoint: String
    /// The resolved config (write it into the run directory).
    public var config: JobConfig
    public var warnings: [String]

    public init(checkpoint: String, configPath: String? = nil, overrides: [String] = []) throws {
        self.checkpoint = checkpoint
        (config, warnings) = try EvaluationJob.resolveConfig(checkpoint: checkpoint, configPath: configPath,
                                                             overrides: overrides)
    }

    public func run(in run: RunDirectory, showProgress: Bool = true) throws -> CertificationResult {
        for w in warnings { run.log("warning: " + w) }
        let c = config.certify
        let category = try config.data.scanCategory()
        let detector: AnomalyDetector
        if DiffusionCheckpoint.isDiffusionCheckpoint(checkpoint) {
            detector = try DiffusionCheckpoint.detector(checkpoint: checkpoint, config: config, category: category,
                                                           maxBatch: max(1, c.batchSize), log: run.log)
        } else {
            var rng = SeededRNG(seed: config.seed)
            let model = try PatchGuardModel<Float>(config: config, maxBatch: max(1, c.batchSize), using: &rng)
            let state = try model.loadCheckpoint(path: checkpoint)
            run.log("checkpoint: \(checkpoint) (epoch \(state.epoch)); model: \(model.summary)")
            detector = try PatchLogitDetector(model, topK: config.eval.topK)
        }
        run.log("data: \(category.summary)")
        var indices = Array(category.test.indices)
        if c.maxImages > 0 && c.maxImages < indices.count {
            indices = EvaluationJob.evenlySpaced(count: indices.count, limit: c.maxImages)
            run.log("certify.max_images = \(c.maxImages): certifying \(indices.count) of \(category.test.count) test images")
        }
        let samples = try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: config.data.cacheMB << 20)
            .load(indices.map { category.test[$0] })
        run.log("certify: σ ∈ {\(c.sigmas.map { String(format: "%g", $0) }.joined(separator: ", "))}, n0 = \(c.n0), "
                + "n = \(c.samples), α = \(c.alpha), squash \(c.squashFunction.description), \(samples.count) images, "
                + "\(c.sigmas.count * samples.count * (c.n0 + c.samples)) noisy forwards in batches of \(c.batchSize)")
        var squashes: [Squash]?
        if c.squashFit == .trainNormals {
            let picked = EvaluationJob.evenlySpaced(count: category.train.count, limit: c.squashFitImages)
            let normals = try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: config.data.cacheMB << 20)
                .load(picked.map { category.train[$0] }).map(\.image.pixels)
            let fitted = try Certifier.fitSquash(detector: detector, normals: normals, sigmas: c.sigmas, kind: c.squash,
                                                 seed: config.seed, batchSize: c.batchSize)
            for (sigma, q) in zip(c.sigmas, fitted) {
                run.log("squash at σ = \(sigma) fitted on \(normals.count) noisy training normals: \(q.description)")
            }
            squashes = fitted
        }
        var result = try Certifier(detector: detector, config: c, seed: config.seed, showProgress: showProgress,
                                   squashes: squashes)
            .certify(samples, category: config.data.category, indices: indices, log: run.log)
        if squashes != nil {
            result.report.notes.append("Squash fitted per σ (certify.squash_fit = train_normals) on "
                                       + "\(min(c.squashFitImages, category.train.count)) training normals with one noise "
                                       + "draw each: " + result.report.squash + ".")
        }
        if indices.count < category.test.count {
            result.report.notes.append("A subset: \(indices.count) of the \(category.test.count) test images, evenly "
                                       + "spaced (certify.max_images = \(c.maxImages)).")
        }
        result.report.detector = checkpoint
        let files = try result.writeReports(to: run.path)
        run.log("wrote " + files.joined(separator: ", "))
        return result
    }
}
