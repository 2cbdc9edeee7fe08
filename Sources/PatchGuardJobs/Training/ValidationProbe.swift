import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardData
import PatchGuardMethod

/// What one validation pass measured.
public struct ValidationRecord: Codable, Equatable, Sendable {
    /// Image AUROC of the held-back normals against pseudo-anomalies made from them, clean.
    public var cleanAUROC: Double
    /// The same under PGD (random start) on the exact top-k image score at the training ε: normals pushed up,
    /// pseudo-anomalies down. Equal to `cleanAUROC` without steps.
    public var robustAUROC: Double

    enum CodingKeys: String, CodingKey { case cleanAUROC = "val_clean_auroc", robustAUROC = "val_robust_auroc" }
}

/// Model selection without the test set: the validation normals and one fixed pseudo-anomaly of each (the same
/// for every epoch), scored by the detector's own image score (top-k mean) clean and under the validation attack.
final class ValidationProbe {
    let normals: [Float]        // (V, 3, S, S)
    let anomalies: [Float]      // (V, 3, S, S)
    let anomalyLabels: [Float]  // (V, Np)
    let count: Int
    let config: JobConfig

    init(samples: [LoadedSample], synthesizer: PseudoAnomalySynthesizer, config: JobConfig, patchSize: Int) throws {
        let S = config.data.imageSize
        count = samples.count
        self.config = config
        normals = samples.flatMap(\.image.pixels)
        let foregrounds: [Image]? = config.data.categoryType == .texture ? nil
            : samples.map { $0.foreground ?? Image(width: S, height: S, channels: 1, value: 1) }
        let made = try synthesizer.synthesizeBatch(images: samples.map(\.image), foregrounds: foregrounds,
                                                   seed: config.seed ^ 0x5641_4c5f_5345_4544, batchIndex: 0)
        anomalies = made.flatMap(\.image.pixels)
        anomalyLabels = try made.flatMap { try patchLabels(mask: $0.mask, patchSize: patchSize) }
    }

    /// Clean and attacked image AUROC of `model` (evaluation mode) at ε = `epsilon` (0: clean only, the
    /// robust figure then equals the clean one).
    func measure(_ model: PatchGuardModel<Float>, epsilon: Double) throws -> ValidationRecord {
        let detector = try PatchLogitDetector(model, topK: config.eval.topK)
        let attack = AttackSpec(epsilon: epsilon, steps: config.train.validationSteps, randomStart: true,
                                target: .imageTopK)
        let n = 3 * config.data.imageSize * config.data.imageSize, Np = model.numPatches
        let chunk = model.maxBatch
        var clean: [Double] = [], attacked: [Double] = []
        var rng = SeededRNG(seed: config.seed, stream: 0x7661_6c5f_6174_6b)
        for (images, labels) in [(normals, [Float](repeating: 0, count: count * Np)), (anomalies, anomalyLabels)] {
            var start = 0
            while start < count {
                let B = min(chunk, count - start)
                let x = Array(images[(start * n)..<((start + B) * n)])
                let y = Array(labels[(start * Np)..<((start + B) * Np)])
                clean += x.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: B) }.scores.map(Double.init)
                if attack.steps > 0 && epsilon > 0 {
                    let adv = attack.run(on: detector, images: x, labels: y, batch: B, using: &rng)
                    attacked += adv.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: B) }.scores.map(Double.init)
                }
                start += B
            }
        }
        let truth = [Bool](repeating: false, count: count) + [Bool](repeating: true, count: count)
        let c = try BinaryAUROC.auroc(scores: clean, labels: truth)
        let r = attacked.isEmpty ? c : try BinaryAUROC.auroc(scores: attacked, labels: truth)
        return ValidationRecord(cleanAUROC: c, robustAUROC: r)
    }
}
