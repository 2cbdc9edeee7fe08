import Foundation
import Testing
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// A ``PatchDetector`` that adds fresh noise to its input on every call (a stand-in for a stochastic detector),
/// counting its gradient calls.
final class NoisyDetector: PatchDetector {
    let base = EvalBrightnessDetector()
    var rng = SeededRNG(seed: 5)
    var gradientCalls = 0
    var imageSize: Int { base.imageSize }
    var numPatches: Int { base.numPatches }
    var isStochastic: Bool { true }
    func noisy(_ x: UnsafePointer<Float>, _ n: Int) -> [Float] {
        (0..<n).map { x[$0] + Float(rng.uniform(-0.01, 0.01)) }
    }
    func patchLogits(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        noisy(images, batch * 3 * imageSize * imageSize).withUnsafeBufferPointer { base.patchLogits($0.baseAddress!, batch: batch) }
    }
    func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dLogits: UnsafePointer<Float>,
                       dImages: UnsafeMutablePointer<Float>) -> [Float] {
        gradientCalls += 1
        return noisy(images, batch * 3 * imageSize * imageSize).withUnsafeBufferPointer {
            base.inputGradient($0.baseAddress!, batch: batch, dLogits: dLogits, dImages: dImages)
        }
    }
}

/// ``ToyDetector`` (PGDTests: 3·tanh(w·patch), 8×8 images, 2×2 grid of 4×4 patches) with a bias, so its landscape
/// is nonlinear and different seeds give different models.
@Suite struct AttackFrameworkTests {
    // MARK: - Hand-computed values

    @Test func l2ProjectionByHand() {
        // δ = (0.3, 0.4): ‖δ‖ = 0.5 > ε = 0.25 → δ·0.5 = (0.15, 0.2).
        var x: [Float] = [0.8, 0.9]
        let x0: [Float] = [0.5, 0.5]
        BallProjection.l2(&x, clean: x0, count: 2, epsilon: 0.25)
        #expect(abs(x[0] - 0.65) < 1e-6 && abs(x[1] - 0.7) < 1e-6)
        // Inside the ball: unchanged.
        var inside: [Float] = [0.8, 0.9]
        BallProjection.l2(&inside, clean: x0, count: 2, epsilon: 1)
        #expect(inside == [0.8, 0.9])
        // Projected, then clamped to [0, 1]: δ = (0.6, 0) → (0.3, 0) → 1.2 clamps to 1.
        var edge: [Float] = [1.5, 0.1]
        BallProjection.l2(&edge, clean: [0.9, 0.1], count: 2, epsilon: 0.3)
        #expect(edge == [1, 0.1])
        // L∞: per pixel.
        var box: [Float] = [0.9, 0.0, 0.52]
        BallProjection.linf(&box, clean: [0.5, 0.05, 0.5], count: 3, epsilon: 0.1)
        #expect(abs(box[0] - 0.6) < 1e-6 && box[1] == 0 && box[2] == 0.52)
    }

    @Test func l2StepIsTheNormalisedGradient() {
        // g = (3, 4, 0): g/‖g‖ = (0.6, 0.8, 0); α = 0.1 from x0 = 0.5 → (0.56, 0.58, 0.5), inside ε = 1.
        let spec = AttackSpec(epsilon: 1, steps: 1, alpha: 0.1, norm: .l2)
        var x: [Float] = [0.5, 0.5, 0.5]
        spec.step(&x, [3, 4, 0], [0.5, 0.5, 0.5], [0.1], 1)
        #expect(abs(x[0] - 0.56) < 1e-6 && abs(x[1] - 0.58) < 1e-6 && x[2] == 0.5)
        // With ε = 0.05 the step of length 0.1 is cut to 0.05: (0.53, 0.54).
        var y: [Float] = [0.5, 0.5, 0.5]
        AttackSpec(epsilon: 0.05, steps: 1, alpha: 0.1, norm: .l2).step(&y, [3, 4, 0], [0.5, 0.5, 0.5], [0.1], 1)
        #expect(abs(y[0] - 0.53) < 1e-6 && abs(y[1] - 0.54) < 1e-6)
    }

    @Test func apgdScheduleByHand() {
        // N = 100: p₁ = 22, windows shrink by 3 to at least 6: 22, 19, 16, 13, 10, 7, 6, 6.
        let s = APGDSchedule(steps: 100)
        #expect(s.firstWindow == 22 && s.decrement == 3 && s.minWindow == 6)
        #expect(s.checkpoints == [22, 41, 57, 70, 80, 87, 93, 99])
        // N = 10: 2, then windows of max(2 − 1, 1) = 1.
        #expect(APGDSchedule(steps: 10).checkpoints == [2, 3, 4, 5, 6, 7, 8, 9, 10])
        // N = 1000: 220, 190, 160, 130, 100, 70, 60, 60.
        #expect(APGDSchedule(steps: 1000).checkpoints == [220, 410, 570, 700, 800, 870, 930, 990])
        #expect(APGDSchedule.momentum == 0.75 && AttackSpec(name: .apgd, epsilon: 0.1, steps: 5).alpha == 0.2)
    }

    @Test func apgdHalvingRuleByHand() {
        // k = 4 steps; halve when the objective rose in ≤ 0.75·4 = 3 of them.
        let rising: [Float] = [0, 1, 2, 3, 4]                  // 4 rises: not stalled
        #expect(!APGDSchedule.shouldHalve(window: rising, best: 4, bestAtLastCheck: 3, halvedAtLastCheck: false))
        #expect(APGDSchedule.shouldHalve(window: [0, 1, 0, 1, 0], best: 1, bestAtLastCheck: 0, halvedAtLastCheck: true))
        #expect(APGDSchedule.shouldHalve(window: [0, 1, 2, 3, 2], best: 3, bestAtLastCheck: 0, halvedAtLastCheck: true))
        // Rising, but the best did not improve since the last checkpoint and the step was not halved there.
        #expect(APGDSchedule.shouldHalve(window: rising, best: 4, bestAtLastCheck: 4, halvedAtLastCheck: false))
        #expect(!APGDSchedule.shouldHalve(window: rising, best: 4, bestAtLastCheck: 4, halvedAtLastCheck: true))
    }

    @Test func topKGradientIsOneOverKOnTheSelection() throws {
        #expect(try topKMeanGradient([1, 5, 3, 4], k: 2) == [0, 0.5, 0, 0.5])
        // Through the adapter: ∂(±score)/∂x against central differences on ToyDetector (4 patches, top-2).
        let toy = ToyDetector(seed: 3)
        let d = try PatchLogitDetector(toy, topK: 2)
        var rng = SeededRNG(seed: 4)
        let x = (0..<(2 * 192)).map { _ in Float(rng.uniform(0.2, 0.8)) }
        let labels: [Float] = [0, 0, 0, 0, 0, 1, 0, 0]       // image 0 normal (+score), image 1 defective (−score)
        let objective = TargetObjective(target: .imageTopK, labels: labels, mapCount: 4)
        var g = [Float](repeating: 0, count: x.count)
        let out = x.withUnsafeBufferPointer { xp in
            g.withUnsafeMutableBufferPointer { d.gradient(xp.baseAddress!, batch: 2, objective: objective, dImages: $0.baseAddress!) }
        }
        #expect(objective.values(out, batch: 2) == [out.scores[0], -out.scores[1]])
        func j(_ x: [Float]) -> Double {
            let o = x.withUnsafeBufferPointer { d.outputs($0.baseAddress!, batch: 2) }
            return objective.values(o, batch: 2).reduce(0.0) { $0 + Double($1) }
        }
        for i in stride(from: 0, to: x.count, by: 37) {
            var p = x, m = x
            p[i] += 1e-3; m[i] -= 1e-3
            let fd = (j(p) - j(m)) / 2e-3
            #expect(abs(fd - Double(g[i])) < 2e-3 * max(1, abs(fd)), "pixel \(i): fd \(fd) vs \(g[i])")
        }
    }

    /// The first version's PGD loop, verbatim in effect: the default job's numbers must not move.
    @Test func legacyPGDIsBitForBitTheSame() {
        let toy = ToyDetector(seed: 9)
        var rng0 = SeededRNG(seed: 1)
        let x = (0..<(3 * 192)).map { _ in Float(rng0.uniform()) }
        let labels: [Float] = [0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0]
        for (target, random) in [(PGDTarget.patches, false), (.image, true)] {
            let spec = AttackSpec(epsilon: 8.0 / 255, steps: 7, randomStart: random, target: target)
            var rngA = SeededRNG(seed: 2), rngB = SeededRNG(seed: 2)
            let new = spec.perturb(toy, images: x, labels: labels, batch: 3, using: &rngA)
            // Reference (the code before this change).
            var r = x
            let eps = Float(spec.epsilon), a = Float(spec.alpha)
            if random { for i in r.indices { r[i] = min(1, max(0, r[i] + Float(rngB.uniform(-Double(eps), Double(eps))))) } }
            let dl = labels.withUnsafeBufferPointer { pgdObjectiveGradient(labels: $0.baseAddress!, batch: 3, patches: 4, target: target) }
            var grad = [Float](repeating: 0, count: r.count)
            for _ in 0..<spec.steps {
                r.withUnsafeBufferPointer { rp in grad.withUnsafeMutableBufferPointer { gp in dl.withUnsafeBufferPointer { dp in
                    _ = toy.inputGradient(rp.baseAddress!, batch: 3, dLogits: dp.baseAddress!, dImages: gp.baseAddress!) } } }
                for i in r.indices {
                    let s: Float = grad[i] > 0 ? 1 : (grad[i] < 0 ? -1 : 0)
                    r[i] = min(min(1, x[i] + eps), max(max(0, x[i] - eps), r[i] + a * s))
                }
            }
            #expect(new == r, "\(target)")
        }
    }

    // MARK: - Attacks stay in their threat model

    @Test(arguments: [AttackName.pgd, .apgd], [AttackNorm.linf, .l2])
    func staysInTheBallAndTheBox(name: AttackName, norm: AttackNorm) {
        let toy = ToyDetector(seed: 1)
        var rng0 = SeededRNG(seed: 2)
        let x = (0..<(3 * 192)).map { _ in Float(rng0.uniform()) }
        let labels: [Float] = [0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0]
        let eps = norm == .linf ? 8.0 / 255 : 0.5
        var rng = SeededRNG(seed: 3)
        let spec = AttackSpec(name: name, epsilon: eps, steps: 12, randomStart: true, target: .imageTopK, norm: norm, restarts: 2)
        let adv = spec.run(on: PatchLogitDetector(unchecked: toy, topK: 2), images: x, labels: labels, batch: 3, using: &rng)
        #expect(adv.allSatisfy { $0 >= 0 && $0 <= 1 })
        for b in 0..<3 {
            let d = (0..<192).map { Double(adv[b * 192 + $0] - x[b * 192 + $0]) }
            let size = norm == .linf ? d.map(abs).max()! : d.reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(size <= eps + 1e-5, "image \(b): ‖δ‖ = \(size)")
        }
    }

    @Test func eotAveragesOnlyForStochasticDetectors() throws {
        let noisy = NoisyDetector()
        let d = try PatchLogitDetector(noisy, topK: 3)
        let samples = evalTestSet(normal: 1, anomalous: 1)
        let x = samples.flatMap { $0.image.pixels }
        let labels = [Float](repeating: 0, count: 2 * noisy.numPatches)
        var rng = SeededRNG(seed: 1)
        _ = AttackSpec(epsilon: 0.03, steps: 3, eotSamples: 4).run(on: d, images: x, labels: labels, batch: 2, using: &rng)
        #expect(noisy.gradientCalls == 12)
        let plain = EvalBrightnessDetector()
        _ = AttackSpec(epsilon: 0.03, steps: 3, eotSamples: 4).run(on: try PatchLogitDetector(plain, topK: 3), images: x,
                                                                    labels: labels, batch: 2, using: &rng)
        #expect(plain.gradientImages == 3 * 2)                // deterministic: one sample per step
    }

    // MARK: - Guards against gradient masking (toy detectors)

    func evaluate(_ detector: PatchDetector, _ samples: [LoadedSample], _ attacks: [AttackSpec],
                  patchSize: Int = 4, topK: Int = 3) throws -> EvaluationResult {
        try Evaluator(detector: detector,
                      settings: EvaluationSettings(patchSize: patchSize, scoring: ScoringConfig(topK: topK, sigma: 1, radius: 2),
                                                   batchSize: 4, attacks: attacks, seed: 3, keepMaps: false,
                                                   showProgress: false))
            .evaluate(samples, category: "toy")
    }

    /// More steps never leave a higher attacked image AUROC (tolerance 0.02), for PGD and APGD, both norms.
    @Test(arguments: [AttackName.pgd, .apgd], [AttackNorm.linf, .l2])
    func moreStepsNeverHelpTheDefender(name: AttackName, norm: AttackNorm) throws {
        let samples = evalTestSet(normal: 8, anomalous: 8, seed: 21)
        let eps = norm == .linf ? 12.0 / 255 : 0.8
        let steps = [1, 5, 20, 60]
        let result = try evaluate(EvalBrightnessDetector(), samples,
                                  steps.map { AttackSpec(name: name, epsilon: eps, steps: $0, target: .imageTopK, norm: norm) })
        let auroc = try result.report.attacks.map { try #require($0.metrics.imageAUROC) }
        let clean = try #require(result.report.clean.imageAUROC)
        #expect(auroc[0] <= clean + 1e-9)
        for i in 1..<auroc.count { #expect(auroc[i] <= auroc[i - 1] + 0.02, "\(steps[i]) steps: \(auroc)") }
        #expect(auroc.last! < clean - 0.1, "the attack should bite: \(clean) → \(auroc)")
    }

    /// An unbounded budget takes the image AUROC to 0: every normal image can be made more anomalous than every
    /// defective one.
    @Test(arguments: [AttackName.pgd, .apgd], [AttackNorm.linf, .l2])
    func unboundedBudgetTakesImageAUROCToZero(name: AttackName, norm: AttackNorm) throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, seed: 4)
        let eps = norm == .linf ? 1.0 : 100.0
        let result = try evaluate(EvalBrightnessDetector(), samples,
                                  [AttackSpec(name: name, epsilon: eps, steps: 30, target: .imageTopK, norm: norm)])
        #expect(try #require(result.report.attacks[0].metrics.imageAUROC) == 0)
        #expect(try #require(result.report.worstCase[0].metrics.imageAUROC) == 0)
    }

    /// APGD is at least as strong as PGD at the same budget and step count (attacked AUROC and mean objective),
    /// on the nonlinear toy detector.
    @Test(arguments: [AttackNorm.linf, .l2])
    func apgdIsAtLeastAsStrongAsPGD(norm: AttackNorm) throws {
        let samples = evalTestSet(normal: 10, anomalous: 10, size: 8, seed: 8)
        let eps = norm == .linf ? 8.0 / 255 : 0.5
        let toy = ToyDetector(seed: 12)
        let result = try evaluate(toy, samples, [AttackSpec(name: .pgd, epsilon: eps, steps: 50, target: .imageTopK, norm: norm),
                                                 AttackSpec(name: .apgd, epsilon: eps, steps: 50, target: .imageTopK, norm: norm)],
                                  topK: 2)
        let pgd = try #require(result.report.attacks[0].metrics.imageAUROC)
        let apgd = try #require(result.report.attacks[1].metrics.imageAUROC)
        #expect(apgd <= pgd + 0.01, "APGD \(apgd) vs PGD \(pgd)")
        // Per-image objective (±top-k score), averaged.
        let x = samples.flatMap { $0.image.pixels }
        let labels = samples.flatMap { $0.label == 1 ? [Float](repeating: 1, count: 4) : [Float](repeating: 0, count: 4) }
        let d = try PatchLogitDetector(toy, topK: 2)
        let objective = TargetObjective(target: .imageTopK, labels: labels, mapCount: 4)
        func mean(_ spec: AttackSpec) -> Float {
            var rng = SeededRNG(seed: 1)
            let adv = spec.run(on: d, images: x, labels: labels, batch: samples.count, using: &rng)
            let v = objective.values(adv.withUnsafeBufferPointer { d.outputs($0.baseAddress!, batch: samples.count) },
                                     batch: samples.count)
            return v.reduce(0, +) / Float(v.count)
        }
        let pgdValue = mean(AttackSpec(name: .pgd, epsilon: eps, steps: 50, target: .imageTopK, norm: norm))
        let apgdValue = mean(AttackSpec(name: .apgd, epsilon: eps, steps: 50, target: .imageTopK, norm: norm))
        #expect(apgdValue >= pgdValue - 1e-3, "APGD \(apgdValue) vs PGD \(pgdValue)")
    }

    /// A transfer attack (crafted on another model) and a query-only random search with as many queries are never
    /// stronger than the white-box attack: if they were, the white-box gradients would be wrong (masked).
    @Test(arguments: [AttackNorm.linf, .l2])
    func blackBoxAndTransferAreNeverStrongerThanWhiteBox(norm: AttackNorm) throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, size: 8, seed: 30)
        let x = samples.flatMap { $0.image.pixels }
        let B = samples.count
        let labels = samples.flatMap { $0.label == 1 ? [Float](repeating: 1, count: 4) : [Float](repeating: 0, count: 4) }
        let target = try PatchLogitDetector(ToyDetector(seed: 40), topK: 2)
        let surrogate = try PatchLogitDetector(ToyDetector(seed: 41), topK: 2)
        let eps = norm == .linf ? 8.0 / 255 : 0.5
        let spec = AttackSpec(name: .apgd, epsilon: eps, steps: 40, target: .imageTopK, norm: norm)
        let objective = TargetObjective(target: .imageTopK, labels: labels, mapCount: 4)
        func value(_ images: [Float]) -> [Float] {
            objective.values(images.withUnsafeBufferPointer { target.outputs($0.baseAddress!, batch: B) }, batch: B)
        }
        var rng = SeededRNG(seed: 2)
        let white = value(spec.run(on: target, images: x, labels: labels, batch: B, using: &rng))
        let transfer = value(spec.run(on: surrogate, images: x, labels: labels, batch: B, using: &rng))
        // Random search: 41 random points of the ball (as many queries as APGD's gradient calls), best per image.
        var best = value(x)
        var noise = SeededRNG(seed: 3)
        for _ in 0..<41 {
            let candidate = spec.randomStart(x, B, &noise)
            let v = value(candidate.map { $0 })
            for b in 0..<B { best[b] = max(best[b], v[b]) }
        }
        for b in 0..<B {
            #expect(transfer[b] <= white[b] + 1e-3, "image \(b): transfer \(transfer[b]) > white-box \(white[b])")
            #expect(best[b] <= white[b] + 1e-3, "image \(b): random search \(best[b]) > white-box \(white[b])")
        }
    }

    // MARK: - Worst case and suites

    @Test func worstCaseIsNoBetterThanAnyAttackAtItsBudget() throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, seed: 13)
        let eps = 8.0 / 255
        let attacks = [AttackSpec(epsilon: eps, steps: 5), AttackSpec(epsilon: eps, steps: 5, target: .imageTopK),
                       AttackSpec(name: .apgd, epsilon: eps, steps: 5, target: .patchesSEA),
                       AttackSpec(epsilon: 0.3, steps: 5, target: .imageTopK, norm: .l2)]
        let result = try evaluate(EvalBrightnessDetector(), samples, attacks)
        let rows = result.report.worstCase
        #expect(rows.count == 2 && rows[0].norm == .linf && rows[0].epsilon == eps && rows[1].norm == .l2)
        #expect(rows[0].attacks.count == 3 && rows[1].attacks == [attacks[3].label])
        let w = try #require(rows[0].metrics.imageAUROC)
        for a in result.report.attacks.prefix(3) { #expect(w <= (try #require(a.metrics.imageAUROC)) + 1e-12) }
        #expect(w <= (try #require(result.report.clean.imageAUROC)))
        #expect(result.report.table().contains("worst case L∞ 8/255") && result.report.table().contains("worst case L2 0.3"))
        #expect(result.report.attacks.allSatisfy { ($0.imageStepsPerSecond ?? 0) > 0 })
    }

    /// An attack at 2/255 is also an attack at 8/255 (its ball lies inside): the 8/255 worst case covers it, so a
    /// weak attack at the larger budget cannot report more robustness than the smaller budget's already refuted;
    /// the 2/255 row does not take the 8/255 attack, and another norm's attacks stay apart.
    @Test func worstCaseAtALargerBudgetCoversTheSmallerBudgetsAttacks() throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, seed: 17)
        let strong = AttackSpec(epsilon: 2.0 / 255, steps: 10, target: .imageTopK)
        let weak = AttackSpec(epsilon: 8.0 / 255, steps: 1, alpha: 0.1 / 255, target: .imageTopK)
        let l2 = AttackSpec(epsilon: 0.01, steps: 5, target: .imageTopK, norm: .l2)
        let result = try evaluate(EvalBrightnessDetector(), samples, [weak, strong, l2])
        let rows = result.report.worstCase
        #expect(rows.count == 3 && rows.map(\.epsilon) == [8.0 / 255, 2.0 / 255, 0.01])
        #expect(rows[0].attacks == [weak.label, strong.label] && rows[1].attacks == [strong.label])
        #expect(rows[2].attacks == [l2.label])
        let weakAUROC = try #require(result.report.attacks[0].metrics.imageAUROC)
        let strongAUROC = try #require(result.report.attacks[1].metrics.imageAUROC)
        let worst8 = try #require(rows[0].metrics.imageAUROC), worst2 = try #require(rows[1].metrics.imageAUROC)
        #expect(strongAUROC < weakAUROC - 0.05, "the test needs a weak 8/255 attack: \(weakAUROC) vs \(strongAUROC)")
        #expect(worst8 <= strongAUROC + 1e-12 && worst8 <= worst2 + 1e-12)
        #expect(worst2 == strongAUROC)
    }

    @Test func suiteExpandsAndTheCommandLineBuildsBudgets() throws {
        let suite = AttackSpec(name: .suite, epsilon: 0.2, steps: 100, norm: .l2, restarts: 2).expanded()
        #expect(suite.map(\.name) == [.apgd, .apgd, .apgd, .pgd])
        #expect(suite.map(\.target) == [.imageTopK, .patchesSEA, .patches, .imageTopK])
        #expect(suite.allSatisfy { $0.norm == .l2 && $0.epsilon == 0.2 && $0.restarts == 2 && $0.steps == 100 })
        let config = try JobConfig.load(path: nil, overrides: [
            #"eval.attacks=[{"name": "suite", "steps": 4, "epsilon": 0.2, "norm": "l2"}, {"name": "apgd", "target": "image_topk", "restarts": 3}]"#])
        #expect(config.eval.attacks[1] == AttackSpec(name: .apgd, target: .imageTopK, restarts: 3))
        let settings = try EvaluationSettings(eval: config.eval, patchSize: 4)
        #expect(settings.attacks.count == 5 && settings.attacks[4].restarts == 3)
        let cli = AttackOverrides(attack: .suite, epsilons: [8.0 / 255],
                                  budgets: [.init(norm: .l2, epsilon: 0.2)]).attacks(config: config)
        #expect(cli.count == 8 && cli.allSatisfy { $0.steps == 100 })
        #expect(cli.prefix(4).allSatisfy { $0.norm == .linf } && cli.suffix(4).allSatisfy { $0.norm == .l2 })
        let apgd = AttackOverrides(attack: .apgd, steps: 7, targets: [.imageTopK, .patchesSEA], norm: .l2,
                                   restarts: 2).attacks(config: config)
        #expect(apgd.map(\.target) == [.imageTopK, .patchesSEA] && apgd.allSatisfy { $0.norm == .l2 && $0.restarts == 2 })
        // Invalid attack settings are config errors naming the key.
        for bad in [#"{"restarts": 0}"#, #"{"eot_samples": 0}"#, #"{"epsilon": 2}"#, #"{"alpha": -1}"#] {
            #expect(throws: PatchGuardError.self) { _ = try JobConfig.load(path: nil, overrides: ["eval.attacks=[\(bad)]"]) }
        }
        #expect(throws: PatchGuardError.self) { _ = try JobConfig.load(path: nil, overrides: ["eval.max_images=-1"]) }
        // An L2 budget above 1 is fine.
        #expect(try JobConfig.load(path: nil, overrides: [#"eval.attacks=[{"epsilon": 3, "norm": "l2"}]"#]).eval.attacks[0].epsilon == 3)
        #expect(EvaluationJob.evenlySpaced(count: 10, limit: 4) == [0, 2, 5, 7])
    }

    // MARK: - A small PatchGuard model

    /// The same guards on a tiny PatchGuard model (ViT 16 px, 4×4 patches, 2 blocks; a few training steps on the
    /// toy set so its scores mean something): more steps do not help the defender, APGD ≥ PGD, transfer ≤ white-box,
    /// and ε = 1 takes the image AUROC to 0.
    @Test func guardsOnASmallPatchGuardModel() throws {
        func model(seed: UInt64) throws -> PatchGuardModel<Float> {
            var config = JobConfig()
            config.data.imageSize = 16
            config.model.discriminator = DiscriminatorConfig(layers: 1, heads: 2, hidden: 16, dropout: 0)
            config.train.regLayers = [2]; config.train.regWeights = [0.01]
            let backbone = ViTConfig(imageSize: 16, patchSize: 4, dim: 16, depth: 2, heads: 2, mlpRatio: 2)
            var rng = SeededRNG(seed: seed)
            let m = try PatchGuardModel<Float>(config: config, maxBatch: 8, backbone: backbone, using: &rng)
            let opt = PatchGuardOptimizerState(model: m, weightDecay: 0)
            let train = evalTestSet(normal: 8, anomalous: 8, seed: seed + 100)
            let x = train.flatMap { $0.image.pixels }
            let y = try train.flatMap { try patchLabels(mask: $0.mask, patchSize: 4) }
            for _ in 0..<30 {
                for lo in stride(from: 0, to: 16, by: 8) {
                    m.zeroGradients()
                    var drop = SeededRNG(seed: 1)
                    _ = m.trainingPass(images: Array(x[(lo * 768)..<((lo + 8) * 768)]), labels: Array(y[(lo * 16)..<((lo + 8) * 16)]),
                                       batch: 8, using: &drop)
                    opt.step(model: m, lr: 3e-3)
                }
            }
            return m
        }
        let m = try model(seed: 1)
        let samples = evalTestSet(normal: 8, anomalous: 8, seed: 55)
        let eps = 4.0 / 255
        let result = try evaluate(m, samples, [
            AttackSpec(epsilon: eps, steps: 2, target: .imageTopK), AttackSpec(epsilon: eps, steps: 20, target: .imageTopK),
            AttackSpec(name: .apgd, epsilon: eps, steps: 20, target: .imageTopK),
            AttackSpec(epsilon: 1, steps: 20, target: .imageTopK)])
        let a = try result.report.attacks.map { try #require($0.metrics.imageAUROC) }
        let clean = try #require(result.report.clean.imageAUROC)
        #expect(clean > 0.7, "the tiny model should have learnt something: \(clean)")
        #expect(a[0] <= clean + 1e-9 && a[1] <= a[0] + 0.02 && a[2] <= a[1] + 0.02, "\(clean) → \(a)")
        #expect(a[3] == 0, "ε = 1 must break it: \(a[3])")
        // Transfer from a second model never beats the white-box attack on the objective.
        let x = samples.flatMap { $0.image.pixels }
        let labels = try samples.flatMap { try patchLabels(mask: $0.mask, patchSize: 4) }
        let target = try PatchLogitDetector(m, topK: 3), surrogate = try PatchLogitDetector(try model(seed: 2), topK: 3)
        let objective = TargetObjective(target: .imageTopK, labels: labels, mapCount: 16)
        func value(_ images: [Float]) -> [Float] {
            objective.values(images.withUnsafeBufferPointer { target.outputs($0.baseAddress!, batch: 16) }, batch: 16)
        }
        let spec = AttackSpec(name: .apgd, epsilon: eps, steps: 20, target: .imageTopK)
        var rng = SeededRNG(seed: 9)
        let white = value(spec.run(on: target, images: x, labels: labels, batch: 16, using: &rng))
        let transfer = value(spec.run(on: surrogate, images: x, labels: labels, batch: 16, using: &rng))
        let cleanValue = value(x)
        for b in 0..<16 {
            #expect(transfer[b] <= white[b] + 1e-3, "image \(b): transfer \(transfer[b]) > white-box \(white[b])")
            #expect(white[b] >= cleanValue[b] - 1e-4)
        }
    }
}
