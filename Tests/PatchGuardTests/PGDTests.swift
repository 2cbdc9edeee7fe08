import Foundation
import Testing
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// A small nonlinear detector with an exact input gradient: logit_p = 3·tanh(w_p · x_patch(p)) for 4×4 patches
/// of an 8×8 RGB image.
final class ToyDetector: PatchDetector {
    let imageSize = 8
    let numPatches = 4
    var w: [Float]                     // (Np, 3·4·4)
    init(seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        w = (0..<(4 * 48)).map { _ in Float(rng.normal() * 0.3) }
    }
    func pixelIndex(_ p: Int, _ k: Int) -> Int {
        let c = k / 16, dy = (k % 16) / 4, dx = k % 4
        let py = p / 2, px = p % 2
        return (c * 8 + py * 4 + dy) * 8 + px * 4 + dx
    }
    func pre(_ x: UnsafePointer<Float>, _ b: Int, _ p: Int) -> Float {
        var s: Float = 0
        for k in 0..<48 { s += w[p * 48 + k] * x[b * 192 + pixelIndex(p, k)] }
        return s
    }
    func patchLogits(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        (0..<(batch * 4)).map { 3 * tanh(pre(images, $0 / 4, $0 % 4)) }
    }
    func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dLogits: UnsafePointer<Float>,
                       dImages: UnsafeMutablePointer<Float>) -> [Float] {
        dImages.update(repeating: 0, count: batch * 192)
        for b in 0..<batch {
            for p in 0..<4 {
                let t = tanh(pre(images, b, p))
                let g = dLogits[b * 4 + p] * 3 * (1 - t * t)
                for k in 0..<48 { dImages[b * 192 + pixelIndex(p, k)] += g * w[p * 48 + k] }
            }
        }
        return patchLogits(images, batch: batch)
    }
}

@Suite struct PGDTests {
    let labels: [Float] = [0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0]   // 3 images: normal, two anomalous patches, one

    func images(_ seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<(3 * 192)).map { _ in Float(rng.uniform()) }
    }

    func objective(_ d: ToyDetector, _ x: [Float]) -> [Float] {
        let logits = x.withUnsafeBufferPointer { d.patchLogits($0.baseAddress!, batch: 3) }
        return labels.withUnsafeBufferPointer { pgdObjective(logits: logits, labels: $0.baseAddress!, batch: 3, patches: 4) }
    }

    @Test(arguments: [false, true])
    func staysInBudgetAndRange(randomStart: Bool) {
        let d = ToyDetector(seed: 1), x = images(2)
        let eps = 8.0 / 255.0
        var rng = SeededRNG(seed: 3)
        let adv = PGDAttack(epsilon: eps, steps: 10, randomStart: randomStart)
            .perturb(d, images: x, labels: labels, batch: 3, using: &rng)
        #expect(zip(adv, x).allSatisfy { abs($0 - $1) <= Float(eps) + 1e-7 })
        #expect(adv.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(adv != x)
    }

    @Test func beatsRandomNoiseOfTheSameBudget() {
        let d = ToyDetector(seed: 4), x = images(5)
        let eps: Float = 8 / 255
        var rng = SeededRNG(seed: 6)
        let adv = PGDAttack(epsilon: Double(eps), steps: 10).perturb(d, images: x, labels: labels, batch: 3, using: &rng)
        let clean = objective(d, x), attacked = objective(d, adv)
        // Random sign noise of the same L∞ size (the strongest "random" perturbation in the budget).
        var noiseRNG = SeededRNG(seed: 7)
        let noisy = x.map { min(1, max(0, $0 + (noiseRNG.uniform() < 0.5 ? -eps : eps))) }
        let random = objective(d, noisy)
        for b in 0..<3 {
            #expect(attacked[b] > clean[b], "image \(b): attack did not raise the objective")
            #expect(attacked[b] - clean[b] > 3 * abs(random[b] - clean[b]),
                    "image \(b): attack gain \(attacked[b] - clean[b]) vs random \(random[b] - clean[b])")
        }
    }

    @Test func objectiveGradientWeights() {
        let g = labels.withUnsafeBufferPointer { pgdObjectiveGradient(labels: $0.baseAddress!, batch: 3, patches: 4) }
        #expect(g[0..<4].allSatisfy { $0 == 0.25 })                 // all normal: mean over 4
        #expect(Array(g[4..<8]) == [0.5, -0.5, -0.5, 0.5])           // 2 normal, 2 anomalous
        let third: Float = 1.0 / 3
        let expected: [Float] = [-1, third, third, third]
        #expect(Array(g[8..<12]) == expected)
    }

    /// The image-score target: every patch of a normal image up, every patch of a defective image down, by the
    /// mean; the attack moves the top-k image score the way that hurts detection, more than sign noise does.
    @Test func imageTargetMovesTheImageScore() {
        let g = labels.withUnsafeBufferPointer {
            pgdObjectiveGradient(labels: $0.baseAddress!, batch: 3, patches: 4, target: .image)
        }
        #expect(g[0..<4].allSatisfy { $0 == 0.25 } && g[4..<12].allSatisfy { $0 == -0.25 })
        let d = ToyDetector(seed: 8), x = images(9)
        let eps: Float = 8 / 255
        var rng = SeededRNG(seed: 10)
        let attack = PGDAttack(epsilon: Double(eps), steps: 10, target: .image)
        #expect(attack.target == .image && PGDAttack(epsilon: 0.1, steps: 1).target == .patches)
        let adv = attack.perturb(d, images: x, labels: labels, batch: 3, using: &rng)
        #expect(zip(adv, x).allSatisfy { abs($0 - $1) <= eps + 1e-7 })
        func score(_ images: [Float]) -> [Float] {      // top-2 mean of the 4 patch logits
            let l = images.withUnsafeBufferPointer { d.patchLogits($0.baseAddress!, batch: 3) }
            return (0..<3).map { b in Array(l[(b * 4)..<(b * 4 + 4)]).sorted(by: >).prefix(2).reduce(0, +) / 2 }
        }
        var noiseRNG = SeededRNG(seed: 11)
        let noisy = x.map { min(1, max(0, $0 + (noiseRNG.uniform() < 0.5 ? -eps : eps))) }
        let clean = score(x), attacked = score(adv), random = score(noisy)
        #expect(attacked[0] > clean[0] + 3 * abs(random[0] - clean[0]))          // normal image: score up
        for b in 1..<3 { #expect(attacked[b] < clean[b] - 3 * abs(random[b] - clean[b])) }   // defective: down
    }

    @Test func defaultStepSize() {
        #expect(abs(Float(PGDAttack(epsilon: 8.0 / 255, steps: 10).alpha) - Float(2.5 * 8 / 255 / 10)) < 1e-9)
        #expect(PGDAttack(epsilon: 0.1, steps: 5, alpha: 0.01).alpha == 0.01)
    }
}

/// Scoring (`patchLogits`) runs the backbone forward-only (no backward caches): its logits equal bit for bit the
/// ones the input-gradient pass (a caching forward) returns, and a gradient pass after a scoring pass is unchanged.
@Suite struct ForwardOnlyScoringTests {
    @Test func scoringMatchesTheGradientPassAndLeavesItIntact() throws {
        let c = try SmallModelCase(depth: 3, seed: 19)
        let first = c.gradientPass()
        let scored = c.images.withUnsafeBufferPointer { c.model.patchLogits($0.baseAddress!, batch: c.batch) }
        #expect(!c.model.vit.cachesStored)
        #expect(scored == first.logits)
        let second = c.gradientPass()
        #expect(second.logits == first.logits && second.grad == first.grad)
    }
}
