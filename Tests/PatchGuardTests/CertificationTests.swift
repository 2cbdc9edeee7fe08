import Foundation
import Testing
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// A linear detector: score s(x) = w·x + b, map = [s] (1 × 1). With the probit squash h = Φ(s), its smoothed score
/// is closed-form: g(x) = E Φ(w·(x + ε) + b) = Φ((w·x + b)/√(1 + σ²‖w‖²)).
final class LinearToyDetector: AnomalyDetector {
    let imageSize: Int
    let w: [Float]
    let b: Float
    var mapHeight: Int { 1 }
    var mapWidth: Int { 1 }
    var isStochastic: Bool { false }

    init(imageSize: Int = 4, scale: Double, bias: Float = 0, seed: UInt64 = 1) {
        self.imageSize = imageSize
        var rng = SeededRNG(seed: seed)
        let n = 3 * imageSize * imageSize
        var v = (0..<n).map { _ in rng.normal() }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        v = v.map { $0 / norm * scale }
        w = v.map { Float($0) }; b = bias
    }

    var wNorm: Double { w.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
    func score(_ x: [Float]) -> Double { zip(w, x).reduce(Double(b)) { $0 + Double($1.0) * Double($1.1) } }
    /// The closed-form g at x.
    func smoothed(_ x: [Float], sigma: Double) -> Double {
        ConfidenceBounds.normalCDF(score(x) / (1 + sigma * sigma * wNorm * wNorm).squareRoot())
    }

    func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        let n = w.count
        let s = (0..<batch).map { k in Float(score(Array(UnsafeBufferPointer(start: images + k * n, count: n)))) }
        return DetectorOutput(maps: s, scores: s)
    }

    func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                  dImages: UnsafeMutablePointer<Float>) -> DetectorOutput {
        let out = outputs(images, batch: batch)
        let g = objective.gradient(out, batch: batch)
        for k in 0..<batch {
            let d = (g.dScores?[k] ?? 0) + (g.dMaps?[k] ?? 0)
            for i in 0..<w.count { dImages[k * w.count + i] = d * w[i] }
        }
        return out
    }
}

/// A detector that ignores its input: the same score for every image.
final class ConstantDetector: AnomalyDetector {
    let imageSize = 4, mapHeight = 1, mapWidth = 1
    let value: Float
    var isStochastic: Bool { false }
    init(_ value: Float) { self.value = value }
    func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        DetectorOutput(maps: [Float](repeating: value, count: batch), scores: [Float](repeating: value, count: batch))
    }
    func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                  dImages: UnsafeMutablePointer<Float>) -> DetectorOutput {
        for i in 0..<(batch * 48) { dImages[i] = 0 }
        return outputs(images, batch: batch)
    }
}

/// A 2×2 map of linear cells m_p = w_p·x (image score: their mean), each with a closed-form smoothed value under
/// the probit squash.
final class LinearMapToyDetector: AnomalyDetector {
    let cells = (0..<4).map { LinearToyDetector(scale: 1 + Double($0), bias: 0.1 * Float($0), seed: 10 + UInt64($0)) }
    var imageSize: Int { 4 }
    var mapHeight: Int { 2 }
    var mapWidth: Int { 2 }
    var isStochastic: Bool { false }
    func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        let per = cells.map { $0.outputs(images, batch: batch).scores }
        let maps = (0..<batch).flatMap { b in per.map { $0[b] } }
        return DetectorOutput(maps: maps, scores: (0..<batch).map { b in per.reduce(0) { $0 + $1[b] } / 4 })
    }
    func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                  dImages: UnsafeMutablePointer<Float>) -> DetectorOutput { preconditionFailure("not needed") }
}

@Suite struct CertificationTests {
    // MARK: - The statistics

    @Test func normalCDFAndQuantileByHand() {
        #expect(ConfidenceBounds.normalCDF(0) == 0.5)
        #expect(abs(ConfidenceBounds.normalCDF(1.959963984540054) - 0.975) < 1e-15)
        #expect(abs(ConfidenceBounds.normalCDF(-3) - 0.0013498980316301) < 1e-15)
        #expect(abs(ConfidenceBounds.normalQuantile(0.975) - 1.959963984540054) < 1e-13)
        #expect(abs(ConfidenceBounds.normalQuantile(0.001) + 3.090232306167814) < 1e-12)
        #expect(ConfidenceBounds.normalQuantile(0) == -.infinity && ConfidenceBounds.normalQuantile(1) == .infinity)
        #expect(ConfidenceBounds.normalQuantile(-0.1).isNaN)
        for p in stride(from: 1e-12, to: 1, by: 0.0137) + [1e-300, 1e-20, 1 - 1e-12] {
            let x = ConfidenceBounds.normalQuantile(p)
            #expect(abs(ConfidenceBounds.normalCDF(x) - p) <= 1e-13 * max(p, 1e-3), "Φ(Φ⁻¹(\(p))) = \(ConfidenceBounds.normalCDF(x))")
        }
    }

    @Test func incompleteBetaAndClopperPearsonByHand() {
        // I_x(1, 1) = x; I_x(a, 1) = xᵃ; I_x(1, b) = 1 − (1 − x)ᵇ.
        for x in [0.01, 0.3, 0.5, 0.77, 0.999] {
            #expect(abs(ConfidenceBounds.regularizedIncompleteBeta(x, a: 1, b: 1) - x) < 1e-13)
            #expect(abs(ConfidenceBounds.regularizedIncompleteBeta(x, a: 3.5, b: 1) - pow(x, 3.5)) < 1e-13)
            #expect(abs(ConfidenceBounds.regularizedIncompleteBeta(x, a: 1, b: 7) - (1 - pow(1 - x, 7))) < 1e-13)
        }
        // k = 0 and k = n have closed forms; 5 of 10 at α = 0.05 is the textbook [0.187086, 0.812914].
        let n = 50, alpha = 0.01
        let zero = ConfidenceBounds.clopperPearson(successes: 0, trials: n, alpha: alpha)
        #expect(zero.lower == 0 && abs(zero.upper - (1 - pow(alpha / 2, 1 / Double(n)))) < 1e-12)
        let all = ConfidenceBounds.clopperPearson(successes: n, trials: n, alpha: alpha)
        #expect(all.upper == 1 && abs(all.lower - pow(alpha / 2, 1 / Double(n))) < 1e-12)
        let half = ConfidenceBounds.clopperPearson(successes: 5, trials: 10, alpha: 0.05)
        #expect(abs(half.lower - 0.187086) < 1e-6 && abs(half.upper - 0.812914) < 1e-6)
        // Hoeffding and empirical Bernstein by hand.
        let hf = ConfidenceBounds.hoeffding(mean: 0.5, count: 200, alpha: 0.05)
        #expect(abs(hf.upper - (0.5 + (log(40.0) / 400).squareRoot())) < 1e-15)
        let eb = ConfidenceBounds.empiricalBernstein(mean: 0.5, variance: 0.01, count: 200, alpha: 0.05)
        #expect(abs(eb.upper - (0.5 + (2 * 0.01 * log(80.0) / 200).squareRoot() + 7 * log(80.0) / (3 * 199))) < 1e-15)
    }

    @Test func lipschitzWideningByHand() {
        // Φ⁻¹(0.5) = 0: at r/σ = 1.959964 the interval [0.5, 0.5] widens to [0.025, 0.975].
        let c = RandomizedSmoothing.certified(MeanInterval(lower: 0.5, upper: 0.5), radius: 1.959963984540054 * 0.25,
                                              sigma: 0.25)
        #expect(abs(c.lower - 0.025) < 1e-12 && abs(c.upper - 0.975) < 1e-12)
        // r = 0 leaves it unchanged; the ends 0 and 1 never move.
        let i = MeanInterval(lower: 0.2, upper: 0.7)
        #expect(RandomizedSmoothing.certified(i, radius: 0, sigma: 0.1) == i)
        let ends = RandomizedSmoothing.certified(MeanInterval(lower: 0, upper: 1), radius: 3, sigma: 0.1)
        #expect(ends == MeanInterval(lower: 0, upper: 1))
    }

    // MARK: - Coverage on the closed-form toy

    /// Over many seeds and images, the interval contains the true g(x) and the certified interval at radius r
    /// contains g at the worst point of the ball (x ± r·w/‖w‖, where the closed form is extreme) at rate ≥ 1 − α.
    func coverage(scale: Double, n0: Int, expect method: SmoothingInterval?) throws {
        let sigma = 0.25, alpha = 0.1, trials = 300, r = 0.2
        let toy = LinearToyDetector(scale: scale, bias: 0.3)
        let settings = SmoothingSettings(sigma: sigma, n0: n0, samples: 200, alpha: alpha, batchSize: 16,
                                         squash: Squash(kind: .probit))
        let smoothing = try RandomizedSmoothing(detector: toy, settings: settings)
        var covered = 0, certifiedCovered = 0, methods = [SmoothingInterval: Int]()
        var meanError = 0.0
        let unit = toy.w.map { Double($0) / toy.wNorm }
        for t in 0..<trials {
            var xr = SeededRNG(seed: 1000 + UInt64(t))
            let x = (0..<48).map { _ in Float(xr.uniform(0, 1)) }
            var rng = SeededRNG(seed: 7, stream: UInt64(t))
            let result = try smoothing.certify(x, using: &rng)
            let truth = toy.smoothed(x, sigma: sigma)
            methods[result.method, default: 0] += 1
            meanError += abs(result.estimate - truth) / Double(trials)
            if result.interval.contains(truth) { covered += 1 }
            let c = result.certified(radius: r)
            let up = zip(x, unit).map { Float(Double($0) + r * $1) }, down = zip(x, unit).map { Float(Double($0) - r * $1) }
            if c.contains(toy.smoothed(up, sigma: sigma)) && c.contains(toy.smoothed(down, sigma: sigma)) {
                certifiedCovered += 1
            }
        }
        // 1 − α = 0.9; with 300 trials the binomial sd is 0.017, so 0.85 is 3 sd of slack.
        #expect(Double(covered) / Double(trials) >= 0.85, "coverage \(covered)/\(trials)")
        #expect(Double(certifiedCovered) / Double(trials) >= 0.85, "certified coverage \(certifiedCovered)/\(trials)")
        #expect(meanError < 0.05, "mean |estimate − g| = \(meanError)")
        if let method { #expect(methods[method] == trials, "\(methods)") }
    }

    @Test func clopperPearsonOnTheBernoulliTrickCovers() throws {
        try coverage(scale: 4, n0: 0, expect: .clopperPearson)
    }

    @Test func theLowVarianceCaseSelectsEmpiricalBernsteinAndCovers() throws {
        try coverage(scale: 0.2, n0: 32, expect: .empiricalBernstein)
    }

    @Test func mixedSelectionCovers() throws {
        try coverage(scale: 1.5, n0: 32, expect: nil)
    }

    /// Every map cell gets its own interval at α/M: all M cells of an image hold jointly at rate ≥ 1 − α
    /// (Bonferroni), and the image's own result does not change when the cells are certified too.
    @Test func mapCellsHoldJointlyAndLeaveTheImageResultAlone() throws {
        let toy = LinearMapToyDetector()
        let sigma = 0.25, alpha = 0.1, trials = 200
        let smoothing = try RandomizedSmoothing(detector: toy, settings: SmoothingSettings(
            sigma: sigma, n0: 16, samples: 150, alpha: alpha, batchSize: 32, squash: Squash(kind: .probit)))
        var joint = 0
        for t in 0..<trials {
            var xr = SeededRNG(seed: 500 + UInt64(t))
            let x = (0..<48).map { _ in Float(xr.uniform(0, 1)) }
            var rng = SeededRNG(seed: 2, stream: UInt64(t))
            var cellRNG: SeededRNG? = SeededRNG(seed: 3, stream: UInt64(t))
            let (image, cells) = try smoothing.certify(x, using: &rng, cellRNG: &cellRNG)
            #expect(cells.count == 4)
            if zip(cells, toy.cells).allSatisfy({ $0.interval.contains($1.smoothed(x, sigma: sigma)) }) { joint += 1 }
            if t < 3 {
                var again = SeededRNG(seed: 2, stream: UInt64(t))
                #expect(try smoothing.certify(x, using: &again) == image)
            }
        }
        #expect(Double(joint) / Double(trials) >= 0.86, "joint coverage \(joint)/\(trials)")
    }

    @Test func drawsAreSeededAndBatchSizeFree() throws {
        let toy = LinearToyDetector(scale: 2)
        let x = [Float](repeating: 0.4, count: 48)
        func run(batch: Int) throws -> SmoothedScore {
            var rng = SeededRNG(seed: 3, stream: 9)
            return try RandomizedSmoothing(detector: toy, settings: SmoothingSettings(
                sigma: 0.12, n0: 10, samples: 50, alpha: 0.01, batchSize: batch)).certify(x, using: &rng)
        }
        let a = try run(batch: 7), b = try run(batch: 7), c = try run(batch: 64)
        #expect(a == b)
        #expect(abs(a.estimate - c.estimate) < 1e-6 && a.method == c.method)
    }

    @Test func settingsAreChecked() {
        func problem(_ s: SmoothingSettings) -> String? { s.problem(key: "certify") }
        #expect(problem(SmoothingSettings(sigma: 0))?.contains("σ must be") == true)
        #expect(problem(SmoothingSettings(sigma: -.infinity))?.contains("σ must be") == true)
        #expect(problem(SmoothingSettings(sigma: 0.1, samples: 1))?.contains("certify.samples") == true)
        #expect(problem(SmoothingSettings(sigma: 0.1, alpha: 1))?.contains("certify.alpha") == true)
        #expect(problem(SmoothingSettings(sigma: 0.1, alpha: 0))?.contains("certify.alpha") == true)
        #expect(problem(SmoothingSettings(sigma: 0.1, n0: -1))?.contains("certify.n0") == true)
        #expect(problem(SmoothingSettings(sigma: 0.1, batchSize: 0))?.contains("certify.batch_size") == true)
        #expect(problem(SmoothingSettings(sigma: 0.1, squash: Squash(scale: 0)))?.contains("squash_scale") == true)
        #expect(throws: PatchGuardError.self) {
            try RandomizedSmoothing(detector: ConstantDetector(0), settings: SmoothingSettings(sigma: 0))
        }
    }

    // MARK: - A detector that ignores its input

    /// g is the same constant everywhere, so whatever δ does the true smoothed score stays in the certified interval
    /// at every radius; the estimate is exact (no variance) and the certified AUROC does not depend on r.
    @Test func aConstantDetectorIsCertifiedAtEveryRadius() throws {
        let detector = ConstantDetector(0.7)
        let truth = Squash()(Double(Float(0.7)))
        let smoothing = try RandomizedSmoothing(detector: detector, settings: SmoothingSettings(
            sigma: 0.25, n0: 16, samples: 300, alpha: 0.001, batchSize: 32))
        var scores = [SmoothedScore]()
        for i in 0..<6 {
            var rng = SeededRNG(seed: 1, stream: UInt64(i))
            let x = [Float](repeating: Float(i) / 6, count: 48)
            let s = try smoothing.certify(x, using: &rng)
            #expect(abs(s.estimate - truth) < 1e-12)
            #expect(s.method == .empiricalBernstein, "zero variance: Bernstein is the narrower")
            for r in [0, 0.05, 0.5, 5, 50, 5e3] { #expect(s.certified(radius: r).contains(truth), "r = \(r)") }
            scores.append(s)
        }
        let labels = [false, false, false, true, true, true]
        let radii = [0, 0.1, 1, 100.0]
        let aurocs = try radii.map { try CertifiedAUROC.auroc(scores, labels: labels, radius: $0) }
        #expect(aurocs.allSatisfy { $0 == aurocs[0] }, "\(aurocs)")
        // Its smoothed (point-estimate) AUROC is chance, as its unsmoothed one: every pair is a tie.
        #expect(try CertifiedAUROC.smoothedAUROC(scores, labels: labels) == 0.5)
    }

    // MARK: - Certified AUROC

    @Test func certifiedAUROCNeverRisesWithRadiusAndStartsAtTheBound() throws {
        let toy = LinearToyDetector(scale: 3, bias: -0.2, seed: 4)
        let smoothing = try RandomizedSmoothing(detector: toy, settings: SmoothingSettings(
            sigma: 0.12, n0: 16, samples: 200, alpha: 0.01, batchSize: 50, squash: Squash(kind: .probit)))
        var scores = [SmoothedScore](), labels = [Bool]()
        for i in 0..<24 {
            var xr = SeededRNG(seed: 50 + UInt64(i))
            let defective = i % 3 == 0
            var x = (0..<48).map { _ in Float(xr.uniform(0.2, 0.6)) }
            // Defective images are moved along w so the detector separates them (not perfectly).
            if defective { for j in 0..<48 { x[j] += 0.12 * toy.w[j] / Float(toy.wNorm) * 3 } }
            var rng = SeededRNG(seed: 8, stream: UInt64(i))
            scores.append(try smoothing.certify(x, using: &rng)); labels.append(defective)
        }
        let radii = stride(from: 0.0, through: 0.6, by: 0.02).map { $0 }
        let curve = try radii.map { try CertifiedAUROC.auroc(scores, labels: labels, radius: $0) }
        for k in 1..<curve.count { #expect(curve[k] <= curve[k - 1], "r \(radii[k]): \(curve[k]) > \(curve[k - 1])") }
        // At r = 0: the AUROC of (upper bound of each normal, lower bound of each defective), computed directly.
        let direct = try BinaryAUROC.auroc(scores: zip(scores, labels).map { $1 ? $0.interval.lower : $0.interval.upper },
                                           labels: labels)
        #expect(curve[0] == direct)
        #expect(curve[0] <= (try CertifiedAUROC.smoothedAUROC(scores, labels: labels)))
        #expect(curve[0] > 0.5 && curve.last! < curve[0], "\(curve.first!) … \(curve.last!)")
    }
}

/// `certify.squash_fit = train_normals`: per σ the mean and spread of the noisy normals' scores.
@Suite struct SquashFitTests {
    @Test func fittedSquashIsTheNoisyNormalsMeanAndSpread() throws {
        // s(x + ε) = w·x + b + w·ε: mean w·x + b, standard deviation σ‖w‖.
        let detector = LinearToyDetector(scale: 2, bias: 0.3)
        var rng = SeededRNG(seed: 4)
        let x = (0..<48).map { _ in Float(rng.uniform(0, 1)) }
        let normals = [[Float]](repeating: x, count: 400)
        let fitted = try Certifier.fitSquash(detector: detector, normals: normals, sigmas: [0.1, 0.4], kind: .probit,
                                             seed: 1, batchSize: 64)
        #expect(fitted.count == 2 && fitted.allSatisfy { $0.kind == .probit })
        for (q, sigma) in zip(fitted, [0.1, 0.4]) {
            let sd = sigma * detector.wNorm
            #expect(abs(q.center - detector.score(x)) < 4 * sd / 20)  // 4 standard errors of the mean
            #expect(abs(q.scale / sd - 1) < 0.15)
        }
        // Seeded: the same fit twice; a different seed a different one.
        #expect(try Certifier.fitSquash(detector: detector, normals: normals, sigmas: [0.1, 0.4], kind: .probit,
                                        seed: 1, batchSize: 7) == fitted)
        #expect(try Certifier.fitSquash(detector: detector, normals: normals, sigmas: [0.1], kind: .probit,
                                        seed: 2)[0] != fitted[0])
        // A constant score has no spread: scale 1.
        let flat = try Certifier.fitSquash(detector: ConstantDetector(0.7), normals: [[Float]](repeating: x, count: 3),
                                           sigmas: [0.25], kind: .sigmoid, seed: 0)
        #expect(flat[0] == Squash(kind: .sigmoid, center: Double(Float(0.7)), scale: 1))
    }

    @Test func aCertifierUsesTheFittedSquashPerSigma() throws {
        let detector = LinearToyDetector(scale: 1)
        let samples = (0..<6).map { i -> LoadedSample in
            var rng = SeededRNG(seed: UInt64(i))
            let image = Image(width: 4, height: 4, channels: 3, pixels: (0..<48).map { _ in Float(rng.uniform(0, 1)) })
            return LoadedSample(image: image, mask: Image(width: 4, height: 4, channels: 1, value: 0),
                                label: i % 2, defectType: i % 2 == 1 ? "x" : "good", imagePath: "/t/\(i).png")
        }
        var config = CertifyConfig()
        config.sigmas = [0.1, 0.2]; config.n0 = 8; config.samples = 32; config.mapCells = false; config.squash = .probit
        let squashes = [Squash(kind: .probit, center: 0.5, scale: 2), Squash(kind: .probit, center: -1, scale: 3)]
        #expect(throws: PatchGuardError.self) {
            _ = try Certifier(detector: detector, config: config, seed: 0, showProgress: false, squashes: [squashes[0]])
        }
        let result = try Certifier(detector: detector, config: config, seed: 0, showProgress: false, squashes: squashes)
            .certify(samples, category: "toy")
        #expect(result.report.squash == "σ=0.1: probit((s − 0.5)/2); σ=0.2: probit((s − -1)/3)")
        // The estimate of g at σ = 0.2 is that of Φ((s + 1)/3): the closed form is Φ((w·x + b + 1)/√(9 + σ²‖w‖²)).
        for img in result.images[1] {
            let x = samples[img.index].image.pixels
            let exact = ConfidenceBounds.normalCDF((detector.score(x) + 1) / (9 + 0.04 * detector.wNorm * detector.wNorm).squareRoot())
            #expect(img.smoothed.interval.lower - 1e-12 <= exact && exact <= img.smoothed.interval.upper + 1e-12,
                    "\(exact) outside [\(img.smoothed.interval.lower), \(img.smoothed.interval.upper)]")
        }
    }
}
