import PatchGuardCore

/// One draw of a smoothed detector, for attacking it: `outputs(x)` = the base detector at `x + ε`, ε ∼ N(0, σ²I)
/// fresh on every call, with the image score squashed (`h = F((s − c)/t)`, ``Squash``) and the map unchanged. It is
/// stochastic, so the attacks average their gradient over ``AttackSpec/eotSamples`` draws (EOT): the averaged
/// gradient of ±h is an unbiased estimate of ∇(±g), the gradient of the smoothed score the certificate is about.
///
/// The objective's score gradient is chained through the squash (dh/ds) before the base detector sees it.
public final class GaussianNoiseDetector: AnomalyDetector {
    public let base: AnomalyDetector
    public let sigma: Float
    public let squash: Squash
    var rng: SeededRNG

    public init(_ base: AnomalyDetector, sigma: Double, squash: Squash = Squash(), seed: UInt64 = 0) {
        self.base = base; self.sigma = Float(sigma); self.squash = squash; rng = SeededRNG(seed: seed)
    }

    public var imageSize: Int { base.imageSize }
    public var mapHeight: Int { base.mapHeight }
    public var mapWidth: Int { base.mapWidth }
    public var isStochastic: Bool { true }

    func noisy(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        let n = batch * 3 * imageSize * imageSize
        var x = [Float](repeating: 0, count: n)
        x.withUnsafeMutableBufferPointer { RandomizedSmoothing.fillGaussian($0.baseAddress!, count: n, using: &rng) }
        for i in 0..<n { x[i] = images[i] + sigma * x[i] }
        return x
    }

    func squashed(_ out: DetectorOutput) -> DetectorOutput {
        DetectorOutput(maps: out.maps, scores: out.scores.map { Float(squash(Double($0))) })
    }

    public func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        squashed(noisy(images, batch: batch).withUnsafeBufferPointer { base.outputs($0.baseAddress!, batch: batch) })
    }

    /// The objective as the base detector sees it: its outputs squashed on the way in, `dScores · dh/ds` out.
    struct Chained: AttackObjective {
        let inner: AttackObjective
        let squash: Squash
        var needsOutput: Bool { true }
        func squashed(_ o: DetectorOutput) -> DetectorOutput {
            DetectorOutput(maps: o.maps, scores: o.scores.map { Float(squash(Double($0))) })
        }
        func values(_ output: DetectorOutput, batch: Int) -> [Float] { inner.values(squashed(output), batch: batch) }
        func gradient(_ output: DetectorOutput?, batch: Int) -> OutputGradient {
            guard let output else { preconditionFailure("the chained objective needs the base output") }
            var g = inner.gradient(squashed(output), batch: batch)
            if let ds = g.dScores {
                g.dScores = (0..<batch).map { ds[$0] * Float(squash.derivative(Double(output.scores[$0]))) }
            }
            return g
        }
    }

    public func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                         dImages: UnsafeMutablePointer<Float>) -> DetectorOutput {
        let x = noisy(images, batch: batch)
        let out = x.withUnsafeBufferPointer {
            base.gradient($0.baseAddress!, batch: batch, objective: Chained(inner: objective, squash: squash),
                          dImages: dImages)
        }
        return squashed(out)
    }
}
