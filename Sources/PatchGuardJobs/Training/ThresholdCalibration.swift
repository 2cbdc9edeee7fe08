import PatchGuardCore
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// Scoring of the validation normals for ``ScoreCalibration``, with the image score the evaluation uses.
public enum ThresholdCalibration {
    /// Image scores (the top-`topK` mean of the patch logits, ``PatchLogitDetector``, evaluation mode) of
    /// `samples` (`3 × S × S` each), in batches of at most `batchSize`.
    public static func scores(of samples: [LoadedSample], detector: PatchDetector, topK: Int,
                              batchSize: Int) throws -> [Double] {
        let scorer = try PatchLogitDetector(detector, topK: topK)
        let s = detector.imageSize
        var out = [Double]()
        out.reserveCapacity(samples.count)
        for lo in stride(from: 0, to: samples.count, by: max(1, batchSize)) {
            let indices = Array(lo..<min(samples.count, lo + max(1, batchSize)))
            var images = [Float](repeating: 0, count: indices.count * 3 * s * s)
            try images.withUnsafeMutableBufferPointer {
                try Batch.pack(samples, indices: indices, imageSize: s, images: $0, masks: nil)
            }
            let scores = images.withUnsafeBufferPointer { scorer.outputs($0.baseAddress!, batch: indices.count).scores }
            out += scores.map(Double.init)
        }
        return out
    }
}

extension Trainer {
    /// After the last epoch: scores ``validation`` with the final model, fits the threshold for
    /// `train.threshold_fpr` and rewrites the checkpoint (same weights and optimizer state) with it in its
    /// metadata. Without validation images nothing is stored. Returns the calibration.
    @discardableResult
    func calibrateThreshold(_ model: PatchGuardModel<Float>, optimizer: PatchGuardOptimizerState<Float>?,
                            epoch: Int, path: String? = nil) throws -> ScoreCalibration? {
        let checkpointPath = path ?? self.checkpointPath
        guard !validation.isEmpty, validationIsClean else { return nil }
        let scores = try ThresholdCalibration.scores(of: validation, detector: model, topK: config.eval.topK,
                                                     batchSize: model.maxBatch)
        let calibration = try ScoreCalibration(validationScores: scores, fpr: config.train.thresholdFPR,
                                               topK: config.eval.topK)
        try model.saveCheckpoint(path: checkpointPath, epoch: epoch, config: config, optimizer: optimizer,
                                 calibration: calibration)
        run.log("calibration: \(calibration.summary); stored in \(checkpointPath)")
        if calibration.thresholdFPR > 0 && Double(calibration.validationImages) * calibration.thresholdFPR < 1 {
            run.log("note: with \(calibration.validationImages) validation images the smallest FPR step is "
                    + "\(ScoreCalibration.percent(1 / Double(calibration.validationImages))); the FPR target "
                    + "\(ScoreCalibration.percent(calibration.thresholdFPR)) gives the highest validation score as threshold")
        }
        return calibration
    }
}
