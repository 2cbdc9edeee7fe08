import PatchGuardCore

// The detector protocol, second version (DESIGN.md §3): what every attack sees of a detector.
//
// Shapes: `B` images (B, 3, S, S) in [0,1]; anomaly map (B, M) with M = mapHeight·mapWidth at the detector's
// native resolution (the patch grid for PatchGuard, pixels for a reconstruction detector), row-major; image
// scores (B). Higher = more anomalous everywhere.

/// A detector's outputs for a batch: its native anomaly map and its image score by its own aggregation.
public struct DetectorOutput: Sendable, Equatable {
    /// (B, M) row-major, M = ``AnomalyDetector/mapHeight`` · ``AnomalyDetector/mapWidth``.
    public var maps: [Float]
    /// (B) image scores (PatchGuard: the top-k mean of the patch logits, the score the evaluation uses).
    public var scores: [Float]
    public init(maps: [Float], scores: [Float]) { self.maps = maps; self.scores = scores }
}

/// The gradient of a scalar objective `J = Σ_b J_b` on a ``DetectorOutput`` w.r.t. that output: `dMaps` (B, M)
/// and `dScores` (B); nil = zero.
public struct OutputGradient: Sendable {
    public var dMaps: [Float]?
    public var dScores: [Float]?
    public init(dMaps: [Float]? = nil, dScores: [Float]? = nil) { self.dMaps = dMaps; self.dScores = dScores }
}

/// A detector as attacks, certification and evaluation see it.
///
/// `gradient(…)` runs the forward pass at `images`, hands the outputs to `objective` (which returns its gradient
/// w.r.t. the outputs, computed from *these* outputs: a top-k selection changes from step to step) and writes
/// `dImages = ∂J/∂images`, chaining `dScores` through the detector's own image-score aggregation.
///
/// A stochastic detector (`isStochastic`, e.g. a diffusion model's noising) returns a different output on each
/// call; attacks then average gradients over samples (EOT).
public protocol AnomalyDetector: AnyObject {
    var imageSize: Int { get }
    var mapHeight: Int { get }
    var mapWidth: Int { get }
    var isStochastic: Bool { get }
    /// Outputs in evaluation mode.
    func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput
    /// Outputs at `images`, and `dImages` (B, 3, S, S, overwritten) = the gradient of `objective`'s J. When
    /// `objective` does not depend on the outputs (`needsOutput == false`), it may be called before the forward.
    func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                  dImages: UnsafeMutablePointer<Float>) -> DetectorOutput
}

/// What an attack maximises: per image `J_b(output)`, and its gradient w.r.t. the outputs.
public protocol AttackObjective {
    /// False for objectives linear in the map with constant weights (the gradient is known before the forward).
    var needsOutput: Bool { get }
    /// Per image J_b (B).
    func values(_ output: DetectorOutput, batch: Int) -> [Float]
    /// ∂(Σ_b J_b)/∂output at `output` (nil only when `needsOutput` is false).
    func gradient(_ output: DetectorOutput?, batch: Int) -> OutputGradient
}

extension AnomalyDetector {
    public var mapCount: Int { mapHeight * mapWidth }
}

/// Any ``PatchDetector`` (patch logits + input gradient of a linear function of them) as an ``AnomalyDetector``:
/// the map is the patch-logit grid (√Np × √Np) and the image score the mean of the `topK` largest logits, the same
/// top-k mean ``AnomalyScorer`` gives the evaluation. Its gradient is `1/k` on the patches selected *at the current
/// input* (``topKMeanGradient(_:k:)``), added to the objective's map gradient, then back-propagated by the detector.
public final class PatchLogitDetector: AnomalyDetector {
    public let base: PatchDetector
    public let topK: Int
    public let mapHeight: Int, mapWidth: Int

    /// Throws when `topK` is not in `1...numPatches`. A patch count that is not a square gives a 1 × Np map.
    public convenience init(_ base: PatchDetector, topK: Int) throws {
        guard topK >= 1, topK <= base.numPatches else {
            throw PatchGuardError.invalidArgument("detector: top-k = \(topK) with \(base.numPatches) patches")
        }
        self.init(unchecked: base, topK: topK)
    }

    /// `topK` clamped to `1...numPatches`.
    init(unchecked base: PatchDetector, topK: Int) {
        let g = Int(Double(base.numPatches).squareRoot().rounded())
        self.base = base; self.topK = max(1, min(topK, base.numPatches))
        (mapHeight, mapWidth) = g * g == base.numPatches ? (g, g) : (1, base.numPatches)
    }

    public var imageSize: Int { base.imageSize }
    public var isStochastic: Bool { base.isStochastic }

    func scores(_ logits: [Float], batch: Int) -> [Float] {
        let n = base.numPatches
        return logits.withUnsafeBufferPointer { p in
            (0..<batch).map { b in (try? topKMean(UnsafeBufferPointer(rebasing: p[(b * n)..<((b + 1) * n)]), k: topK)) ?? .nan }
        }
    }

    public func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        let logits = base.patchLogits(images, batch: batch)
        return DetectorOutput(maps: logits, scores: scores(logits, batch: batch))
    }

    /// The patch-logit gradient of `g`: `dMaps + dScores_b · (1/k on image b's current top-k)`.
    func dLogits(_ g: OutputGradient, logits: [Float], batch: Int) -> [Float] {
        let n = base.numPatches
        var d = g.dMaps ?? [Float](repeating: 0, count: batch * n)
        if let ds = g.dScores {
            logits.withUnsafeBufferPointer { p in
                for b in 0..<batch where ds[b] != 0 {
                    let row = UnsafeBufferPointer(rebasing: p[(b * n)..<((b + 1) * n)])
                    for i in (try? topKIndices(row, k: topK)) ?? [] { d[b * n + i] += ds[b] / Float(topK) }
                }
            }
        }
        return d
    }

    public func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                         dImages: UnsafeMutablePointer<Float>) -> DetectorOutput {
        let logits: [Float]
        if !objective.needsOutput {
            let g = objective.gradient(nil, batch: batch)
            let d = g.dMaps ?? [Float](repeating: 0, count: batch * base.numPatches)
            logits = d.withUnsafeBufferPointer { base.inputGradient(images, batch: batch, dLogits: $0.baseAddress!, dImages: dImages) }
        } else {
            logits = base.inputGradient(images, batch: batch, dImages: dImages) { [self] logits in
                let out = DetectorOutput(maps: logits, scores: scores(logits, batch: batch))
                return dLogits(objective.gradient(out, batch: batch), logits: logits, batch: batch)
            }
        }
        return DetectorOutput(maps: logits, scores: scores(logits, batch: batch))
    }
}
