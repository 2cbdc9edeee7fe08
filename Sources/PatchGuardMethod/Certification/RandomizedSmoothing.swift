import Foundation
import PatchGuardCore

// Randomized smoothing of a detector's image score (Cohen et al. 2019; bounded scores: Salman et al. 2019).
//
//   h(x)     = F((s(x) − c)/t) ∈ [0, 1]      the detector's image score s squashed by a fixed increasing F
//                                              (``ScoreSquash``: logistic or Φ; centre c, scale t)
//   g(x)     = E_{ε∼N(0, σ²I)} h(x + ε)        the smoothed score; the certificate is about g
//   Φ⁻¹∘g is 1/σ-Lipschitz in x (Salman et al. 2019, Lemma 2, for any measurable h: ℝᵈ → [0, 1]), so for ‖δ‖₂ ≤ r
//            Φ(Φ⁻¹(g(x)) − r/σ) ≤ g(x + δ) ≤ Φ(Φ⁻¹(g(x)) + r/σ),
//   and with a confidence interval g(x) ∈ [g_lo, g_hi] (probability ≥ 1 − α over the noise)
//            g(x + δ) ∈ [Φ(Φ⁻¹(g_lo) − r/σ), Φ(Φ⁻¹(g_hi) + r/σ)]   for every ‖δ‖₂ ≤ r, simultaneously.
//
// The interval for g(x) (``RandomizedSmoothing/certify(_:using:onBatch:)``): per image, n₀ pilot draws choose
// the interval's kind and n fresh draws compute it, so the choice is independent of the estimate and the
// coverage is that of the chosen interval, ≥ 1 − α:
//   - Clopper–Pearson on the Bernoulli trick: with uᵢ ∼ U(0, 1) independent of the noise, bᵢ = 1{uᵢ < hᵢ} is
//     Bernoulli with mean exactly g(x), so the exact binomial interval of Σbᵢ out of n covers g(x). (Clopper–
//     Pearson on the raw [0,1] values would not be valid: it is for Bernoulli variables.)
//   - empirical Bernstein (Maurer & Pontil 2009) on the hᵢ themselves: valid for any [0,1]-valued variable and
//     much tighter when hᵢ varies little under the noise.
//   The pilot's mean and variance predict both widths at n; the narrower kind is used.
//
// Map cells (``RandomizedSmoothing/certify(_:using:cellRNG:onBatch:)``): every cell p of the detector's native map
// gets the same treatment with h_p = F((m_p − c)/t), each interval at α/M (Bonferroni over the M cells, so all
// cells of one image hold jointly with probability ≥ 1 − α); the cells' uniforms come from their own generator.
//
// The noisy copies are not clamped to [0, 1]: the lemma holds for h on all of ℝᵈ, and clamping would bias the
// noise at the borders of the pixel range. Everything is seeded: an image's draws come from the generator the
// caller passes (one stream per image and σ), in a fixed order (each copy's noise, then its uniform; pilot copies
// first), so a result does not depend on the batch size except through the detector's own batched arithmetic.
// AUROC is invariant to the squash for the *unsmoothed* score (F is increasing); for the smoothed score it is not
// (E F(s) depends on F), so F is part of what is certified and the report states it.

/// The fixed increasing map of a detector's score to [0, 1]. JSON spelling: `"sigmoid"`, `"probit"`.
public enum ScoreSquash: String, ConfigEnum {
    /// `1/(1 + e^{−z})`: for PatchGuard the score is a top-k mean of logits, so sigmoid(score) is the mean
    /// patch probability's natural scale.
    case sigmoid
    /// `Φ(z)`: makes a linear score's smoothed value closed-form (E Φ(a + w·ε) = Φ(a/√(1 + σ²‖w‖²))).
    case probit
}

/// ``ScoreSquash`` with its centre and scale: `h = F((s − center)/scale)`.
public struct Squash: Sendable, Equatable, Codable {
    public var kind: ScoreSquash
    public var center: Double
    public var scale: Double
    public init(kind: ScoreSquash = .sigmoid, center: Double = 0, scale: Double = 1) {
        self.kind = kind; self.center = center; self.scale = scale
    }

    public func callAsFunction(_ s: Double) -> Double {
        let z = (s - center) / scale
        switch kind {
        case .sigmoid: return 1 / (1 + exp(-z))
        case .probit: return ConfidenceBounds.normalCDF(z)
        }
    }

    /// dh/ds.
    public func derivative(_ s: Double) -> Double {
        let z = (s - center) / scale
        switch kind {
        case .sigmoid: let p = 1 / (1 + exp(-z)); return p * (1 - p) / scale
        case .probit: return exp(-z * z / 2) / (2 * Double.pi).squareRoot() / scale
        }
    }

    /// `"sigmoid((s − 0)/1)"`.
    public var description: String {
        "\(kind.rawValue)((s − \(Self.short(center)))/\(Self.short(scale)))"
    }
    static func short(_ v: Double) -> String { String(format: "%g", v) }
}

/// How an image is smoothed and bounded.
public struct SmoothingSettings: Sendable, Equatable {
    /// Noise standard deviation σ (pixel units of the [0,1] image).
    public var sigma: Double
    /// Pilot draws that choose the interval's kind (0: always Clopper–Pearson on the Bernoulli trick).
    public var n0: Int
    /// Draws for the estimate and the interval.
    public var samples: Int
    /// The interval misses g(x) with probability ≤ α.
    public var alpha: Double
    /// Noisy copies per detector call.
    public var batchSize: Int
    public var squash: Squash

    public init(sigma: Double, n0: Int = 64, samples: Int = 500, alpha: Double = 0.001, batchSize: Int = 32,
                squash: Squash = Squash()) {
        self.sigma = sigma; self.n0 = n0; self.samples = samples; self.alpha = alpha
        self.batchSize = batchSize; self.squash = squash
    }

    /// Throws ``PatchGuardError/invalidArgument(_:)`` naming the setting: σ ≤ 0 or not finite, n₀ < 0,
    /// samples < 2, α outside (0, 1), batch size < 1, squash scale ≤ 0.
    public func validate() throws {
        if let p = problem(key: "certify") { throw PatchGuardError.invalidArgument(p) }
    }

    public func problem(key: String) -> String? {
        if !(sigma.isFinite && sigma > 0) { return "\(key).sigmas: σ must be a finite number > 0, got \(sigma)" }
        return Self.problem(sharedKey: key, n0: n0, samples: samples, alpha: alpha, batchSize: batchSize, squash: squash)
    }

    /// The checks shared with the config section (everything but σ).
    public static func problem(sharedKey key: String, n0: Int, samples: Int, alpha: Double, batchSize: Int,
                               squash: Squash) -> String? {
        if n0 < 0 { return "\(key).n0 must be ≥ 0, got \(n0)" }
        if samples < 2 { return "\(key).samples must be ≥ 2, got \(samples)" }
        if !(alpha > 0 && alpha < 1) { return "\(key).alpha must be in (0, 1), got \(alpha)" }
        if batchSize < 1 { return "\(key).batch_size must be ≥ 1, got \(batchSize)" }
        if !(squash.scale.isFinite && squash.scale > 0) { return "\(key).squash_scale must be finite and > 0, got \(squash.scale)" }
        if !squash.center.isFinite { return "\(key).squash_center must be finite, got \(squash.center)" }
        return nil
    }
}

/// Which interval bounds g(x). JSON: `"clopper_pearson"`, `"empirical_bernstein"`.
public enum SmoothingInterval: String, ConfigEnum {
    /// Clopper–Pearson on 1{u < h} (the Bernoulli trick).
    case clopperPearson = "clopper_pearson"
    /// Maurer–Pontil empirical Bernstein on h.
    case empiricalBernstein = "empirical_bernstein"
}

/// One image's smoothed score and its interval; ``certified(radius:)`` widens it to a radius.
public struct SmoothedScore: Sendable, Equatable, Codable {
    public var sigma: Double
    /// Mean of h over the n estimation draws (the point estimate of g(x)).
    public var estimate: Double
    /// Mean of h over the pilot draws (nil without pilot draws).
    public var pilot: Double?
    /// g(x) ∈ [lower, upper] with probability ≥ 1 − α.
    public var interval: MeanInterval
    public var method: SmoothingInterval

    public init(sigma: Double, estimate: Double, pilot: Double?, interval: MeanInterval, method: SmoothingInterval) {
        self.sigma = sigma; self.estimate = estimate; self.pilot = pilot; self.interval = interval; self.method = method
    }

    /// `[Φ(Φ⁻¹(g_lo) − r/σ), Φ(Φ⁻¹(g_hi) + r/σ)]`: contains g(x + δ) for every ‖δ‖₂ ≤ r whenever
    /// ``interval`` contains g(x).
    public func certified(radius r: Double) -> MeanInterval {
        RandomizedSmoothing.certified(interval, radius: r, sigma: sigma)
    }
}

/// Smooths any ``AnomalyDetector``'s image score under Gaussian noise and bounds it (see the file header).
public struct RandomizedSmoothing {
    public let detector: AnomalyDetector
    public let settings: SmoothingSettings

    public init(detector: AnomalyDetector, settings: SmoothingSettings) throws {
        try settings.validate()
        self.detector = detector; self.settings = settings
    }

    /// An interval for g(x) widened to radius r (the Lipschitz bound of Φ⁻¹∘g).
    public static func certified(_ interval: MeanInterval, radius r: Double, sigma: Double) -> MeanInterval {
        let shift = r / sigma
        let lo = ConfidenceBounds.normalCDF(ConfidenceBounds.normalQuantile(interval.lower) - shift)
        let hi = ConfidenceBounds.normalCDF(ConfidenceBounds.normalQuantile(interval.upper) + shift)
        return MeanInterval(lower: min(lo, interval.lower), upper: max(hi, interval.upper))
    }

    /// Detector calls an image costs: ⌈n₀/B⌉ + ⌈n/B⌉.
    public var callsPerImage: Int {
        let b = settings.batchSize
        return (settings.n0 + b - 1) / b + (settings.samples + b - 1) / b
    }

    /// `count` draws for one image `x` (3·S·S values): h(x + ε) of the image score with its uniform for the
    /// Bernoulli trick, and, when `cellRNG` is given, h of every map cell (count × M, row-major) with uniforms from
    /// `cellRNG` (a separate generator, so the image's draws are the same with or without the map).
    /// `onBatch(k)` after each detector call of k copies.
    public func draw(_ x: [Float], count: Int, using rng: inout SeededRNG, cellRNG: inout SeededRNG?,
                     onBatch: ((Int) -> Void)? = nil) -> Draws {
        let n = x.count, sigma = Float(settings.sigma), m = detector.mapCount
        var d = Draws()
        d.h.reserveCapacity(count); d.u.reserveCapacity(count)
        if cellRNG != nil { d.cells.reserveCapacity(count * m); d.cellU.reserveCapacity(count * m) }
        var buffer = [Float](repeating: 0, count: min(count, settings.batchSize) * n)
        var done = 0
        while done < count {
            let b = min(settings.batchSize, count - done)
            buffer.withUnsafeMutableBufferPointer { p in
                for k in 0..<b {
                    let row = p.baseAddress! + k * n
                    Self.fillGaussian(row, count: n, using: &rng)
                    for i in 0..<n { row[i] = x[i] + sigma * row[i] }
                    d.u.append(rng.uniform())
                }
            }
            let out = buffer.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: b) }
            for k in 0..<b { d.h.append(settings.squash(Double(out.scores[k]))) }
            if cellRNG != nil {
                for v in out.maps.prefix(b * m) {
                    d.cells.append(settings.squash(Double(v)))
                    d.cellU.append(cellRNG!.uniform())
                }
            }
            done += b
            onBatch?(b)
        }
        return d
    }

    /// What ``draw(_:count:using:cellRNG:onBatch:)`` returns.
    public struct Draws {
        /// (count) h of the image score, and its uniforms.
        public var h: [Double] = [], u: [Double] = []
        /// (count, M) h of the map cells, and their uniforms (empty without a cell generator).
        public var cells: [Double] = [], cellU: [Double] = []
    }

    /// The interval kind the pilot values choose for n estimation draws at level α: the one with the narrower
    /// predicted width (Clopper–Pearson at the pilot mean, empirical Bernstein at the pilot variance).
    public static func choose(pilot: [Double], samples n: Int, alpha: Double) -> SmoothingInterval {
        guard !pilot.isEmpty else { return .clopperPearson }
        let (m, v) = ConfidenceBounds.meanAndVariance(pilot)
        let k = Int((m * Double(n)).rounded())
        let cp = ConfidenceBounds.clopperPearson(successes: min(n, max(0, k)), trials: n, alpha: alpha).width
        let eb = 2 * ConfidenceBounds.empiricalBernsteinHalfWidth(variance: v, count: n, alpha: alpha)
        return eb < cp ? .empiricalBernstein : .clopperPearson
    }

    /// The `method` interval at level α from the estimation values `h` and their uniforms `u`.
    public static func interval(_ method: SmoothingInterval, h: [Double], u: [Double], alpha: Double) -> MeanInterval {
        switch method {
        case .clopperPearson:
            let k = zip(u, h).reduce(0) { $0 + ($1.0 < $1.1 ? 1 : 0) }
            return ConfidenceBounds.clopperPearson(successes: k, trials: h.count, alpha: alpha)
        case .empiricalBernstein:
            let (mean, variance) = ConfidenceBounds.meanAndVariance(h)
            return ConfidenceBounds.empiricalBernstein(mean: mean, variance: variance, count: h.count, alpha: alpha)
        }
    }

    /// The smoothed score of one image (3·S·S values in [0,1]) and its 1 − α interval (file header). Draw order:
    /// n₀ pilot copies, then n estimation copies, each copy its noise then its uniform.
    /// Throws ``PatchGuardError/numeric(_:)`` when the detector returns a non-finite score.
    public func certify(_ x: [Float], using rng: inout SeededRNG,
                        onBatch: ((Int) -> Void)? = nil) throws -> SmoothedScore {
        var none: SeededRNG? = nil
        return try certify(x, using: &rng, cellRNG: &none, onBatch: onBatch).image
    }

    /// ``certify(_:using:onBatch:)`` and, with `cellRNG`, every map cell's smoothed value g_p(x) = E h(map_p(x + ε))
    /// with its own interval at level α/M (Bonferroni: all M cells of the image hold jointly with probability
    /// ≥ 1 − α), chosen per cell by the same pilot rule. Each g_p is a smoothed [0,1]-valued function, so each
    /// cell's certified interval at radius r follows from the same Lipschitz bound. The image's draws and result
    /// do not depend on `cellRNG`.
    public func certify(_ x: [Float], using rng: inout SeededRNG, cellRNG: inout SeededRNG?,
                        onBatch: ((Int) -> Void)? = nil) throws -> (image: SmoothedScore, cells: [SmoothedScore]) {
        let s = detector.imageSize, m = detector.mapCount
        precondition(x.count == 3 * s * s, "an image is 3·S·S values")
        let alpha = settings.alpha, n = settings.samples, n0 = settings.n0
        let pilot = n0 > 0 ? draw(x, count: n0, using: &rng, cellRNG: &cellRNG, onBatch: onBatch) : Draws()
        try Self.checkFinite(pilot.h); try Self.checkFinite(pilot.cells)
        let est = draw(x, count: n, using: &rng, cellRNG: &cellRNG, onBatch: onBatch)
        try Self.checkFinite(est.h); try Self.checkFinite(est.cells)
        let method = Self.choose(pilot: pilot.h, samples: n, alpha: alpha)
        let image = SmoothedScore(sigma: settings.sigma, estimate: ConfidenceBounds.meanAndVariance(est.h).mean,
                                  pilot: n0 > 0 ? ConfidenceBounds.meanAndVariance(pilot.h).mean : nil,
                                  interval: Self.interval(method, h: est.h, u: est.u, alpha: alpha), method: method)
        guard cellRNG != nil else { return (image, []) }
        let cellAlpha = alpha / Double(m)
        let cells = (0..<m).map { p -> SmoothedScore in
            let pilotValues = n0 > 0 ? (0..<n0).map { pilot.cells[$0 * m + p] } : []
            let h = (0..<n).map { est.cells[$0 * m + p] }, u = (0..<n).map { est.cellU[$0 * m + p] }
            let kind = Self.choose(pilot: pilotValues, samples: n, alpha: cellAlpha)
            return SmoothedScore(sigma: settings.sigma, estimate: ConfidenceBounds.meanAndVariance(h).mean,
                                 pilot: n0 > 0 ? ConfidenceBounds.meanAndVariance(pilotValues).mean : nil,
                                 interval: Self.interval(kind, h: h, u: u, alpha: cellAlpha), method: kind)
        }
        return (image, cells)
    }

    static func checkFinite(_ h: [Double]) throws {
        if let bad = h.first(where: { !$0.isFinite }) {
            throw PatchGuardError.numeric("randomized smoothing: the detector returned a non-finite score (h = \(bad))")
        }
    }

    /// Standard normals into `p`, both values of each Box–Muller pair used (half the transcendental calls of
    /// ``SeededRNG/normal()``).
    public static func fillGaussian(_ p: UnsafeMutablePointer<Float>, count: Int, using rng: inout SeededRNG) {
        var i = 0
        while i < count {
            var u1 = rng.uniform()
            while u1 <= .leastNormalMagnitude { u1 = rng.uniform() }
            let u2 = rng.uniform()
            let r = (-2 * log(u1)).squareRoot(), t = 2 * Double.pi * u2
            p[i] = Float(r * cos(t))
            if i + 1 < count { p[i + 1] = Float(r * sin(t)) }
            i += 2
        }
    }
}
