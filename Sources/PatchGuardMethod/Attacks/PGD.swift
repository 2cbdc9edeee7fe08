import PatchGuardCore

// Gradient attacks on any ``AnomalyDetector`` (the detector protocol, second version), per image of a batch:
//
//   PGD, L∞   xᵗ⁺¹ = clamp( Π∞( xᵗ + α·sign(gᵗ) ), 0, 1 )          Π∞: clip to [x⁰ − ε, x⁰ + ε]  (Madry et al.)
//   PGD, L2   xᵗ⁺¹ = clamp( x⁰ + Π₂( xᵗ + α·gᵗ/‖gᵗ‖₂ − x⁰ ), 0, 1 )  Π₂(δ) = δ·min(1, ε/‖δ‖₂)
//   APGD      the same steps with AutoAttack's schedule (``APGDSchedule``): initial step 2ε, momentum 0.75,
//             halving and restart from the best point at the checkpoints; returns the best iterate.
//
// gᵗ = ∇ₓ J(xᵗ) for the target's objective (``TargetObjective``), computed from the current outputs; averaged
// over `eotSamples` calls when the detector is stochastic (EOT). `x⁰` is the clean image; PGD starts at x⁰ or, with
// a random start (and always for restarts after the first, and for APGD), at a random point of the ball: uniform
// in the L∞ cube, a Gaussian direction scaled to ε in L2. Clamping after the L2 projection moves each pixel towards
// x⁰ ∈ [0,1], so the result stays in the ball. ε and α are used in Float.

/// The projections onto the threat model's ball intersected with [0,1], on one image's `count` values.
public enum BallProjection {
    /// `x ← clamp(min(max(x, x⁰ − ε), x⁰ + ε), 0, 1)`.
    public static func linf(_ x: UnsafeMutablePointer<Float>, clean x0: UnsafePointer<Float>, count: Int, epsilon: Float) {
        for i in 0..<count {
            let lo = max(0, x0[i] - epsilon), hi = min(1, x0[i] + epsilon)
            x[i] = min(hi, max(lo, x[i]))
        }
    }

    /// `x ← clamp(x⁰ + δ·min(1, ε/‖δ‖₂), 0, 1)` with `δ = x − x⁰` (‖δ‖₂ accumulated in Double).
    public static func l2(_ x: UnsafeMutablePointer<Float>, clean x0: UnsafePointer<Float>, count: Int, epsilon: Float) {
        var s = 0.0
        for i in 0..<count { let d = Double(x[i] - x0[i]); s += d * d }
        let norm = s.squareRoot()
        let scale = norm > Double(epsilon) ? Float(Double(epsilon) / norm) : 1
        for i in 0..<count { x[i] = min(1, max(0, x0[i] + (x[i] - x0[i]) * scale)) }
    }
}

extension AttackSpec {
    /// Gradient calls (each one forward + backward per image, times the EOT samples of a stochastic detector)
    /// the attack makes: PGD `steps` per restart, APGD `steps + 1` (the start point's gradient too).
    public var stepsPerImage: Int {
        steps == 0 ? 0 : (name == .apgd ? steps + 1 : steps) * restarts
    }

    /// The attacked images (B, 3, S, S) for clean `images` and map-resolution `labels` (B, M) of `detector`
    /// (1 = anomalous; an image is defective when any cell is). `onStep` is called after every gradient step.
    /// A ``AttackName/suite`` must be ``expanded()`` first. Deterministic for a given `rng` state.
    public func run(on detector: AnomalyDetector, images: [Float], labels: [Float], batch B: Int,
                    using rng: inout SeededRNG, onStep: ((Int) -> Void)? = nil) -> [Float] {
        precondition(name != .suite, "a suite runs as its expanded() attacks")
        precondition(labels.count == B * detector.mapCount, "labels must be (B, M) at the detector's map resolution")
        precondition(images.count == B * 3 * detector.imageSize * detector.imageSize, "images must be (B, 3, S, S)")
        guard steps > 0, Float(epsilon) > 0, B > 0 else { return images }
        let objective = TargetObjective(target: target, labels: labels, mapCount: detector.mapCount)
        var done = 0
        let tick: () -> Void = { done += 1; onStep?(done) }
        if restarts == 1 {
            return single(detector, objective, images, B, random: randomStart || name == .apgd, &rng, tick).x
        }
        let n = images.count / B
        var best = images, bestValue = [Float](repeating: -.infinity, count: B)
        for r in 0..<restarts {
            let (x, v) = single(detector, objective, images, B, random: randomStart || r > 0 || name == .apgd, &rng, tick)
            for b in 0..<B where v[b] > bestValue[b] {
                bestValue[b] = v[b]
                best.replaceSubrange((b * n)..<((b + 1) * n), with: x[(b * n)..<((b + 1) * n)])
            }
        }
        return best
    }

    /// PGD on a ``PatchDetector`` with patch labels (B, Np): the image score is the top-3 mean
    /// (``PatchLogitDetector``). The training job's and the first version's entry point.
    public func perturb(_ detector: PatchDetector, images: [Float], labels: [Float], batch B: Int,
                        using rng: inout SeededRNG, onStep: ((Int) -> Void)? = nil) -> [Float] {
        precondition(labels.count == B * detector.numPatches, "labels must be (B, Np)")
        return run(on: PatchLogitDetector(unchecked: detector, topK: 3), images: images, labels: labels, batch: B,
                   using: &rng, onStep: onStep)
    }

    /// The mean gradient and objective over the EOT samples (one sample for a deterministic detector).
    func gradient(_ detector: AnomalyDetector, _ objective: TargetObjective, _ x: [Float], _ B: Int,
                  into g: inout [Float]) -> [Float] {
        let samples = detector.isStochastic ? eotSamples : 1
        var values = [Float](repeating: 0, count: B)
        var tmp = samples > 1 ? [Float](repeating: 0, count: g.count) : []
        for s in 0..<samples {
            let out: DetectorOutput = x.withUnsafeBufferPointer { xp in
                if s == 0 {
                    return g.withUnsafeMutableBufferPointer {
                        detector.gradient(xp.baseAddress!, batch: B, objective: objective, dImages: $0.baseAddress!)
                    }
                }
                return tmp.withUnsafeMutableBufferPointer {
                    detector.gradient(xp.baseAddress!, batch: B, objective: objective, dImages: $0.baseAddress!)
                }
            }
            if s > 0 { for i in g.indices { g[i] += tmp[i] } }
            let v = objective.values(out, batch: B)
            for b in 0..<B { values[b] += v[b] }
        }
        if samples > 1 {
            let inv = 1 / Float(samples)
            for i in g.indices { g[i] *= inv }
            for b in 0..<B { values[b] *= inv }
        }
        return values
    }

    func randomStart(_ x0: [Float], _ B: Int, _ rng: inout SeededRNG) -> [Float] {
        var x = x0
        let eps = Float(epsilon)
        switch norm {
        case .linf:
            for i in 0..<x.count { x[i] = min(1, max(0, x[i] + Float(rng.uniform(-Double(eps), Double(eps))))) }
        case .l2:
            let n = x0.count / B
            for b in 0..<B {
                var d = (0..<n).map { _ in Float(rng.normal()) }
                let norm = Float(d.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
                for i in 0..<n { d[i] *= norm > 0 ? eps / norm : 0; x[b * n + i] = min(1, max(0, x0[b * n + i] + d[i])) }
            }
        }
        return x
    }

    /// `x ← P(x + η_b·dir(g))`, dir = sign (L∞) or g/‖g‖₂ (L2), P the ball-and-box projection around `x0`.
    func step(_ x: inout [Float], _ g: [Float], _ x0: [Float], _ eta: [Float], _ B: Int) {
        let n = x.count / B
        for b in 0..<B {
            let o = b * n
            switch norm {
            case .linf:
                for i in o..<(o + n) {
                    let s: Float = g[i] > 0 ? 1 : (g[i] < 0 ? -1 : 0)
                    x[i] += eta[b] * s
                }
            case .l2:
                var s = 0.0
                for i in o..<(o + n) { s += Double(g[i]) * Double(g[i]) }
                let gn = Float(s.squareRoot())
                if gn > 0 { for i in o..<(o + n) { x[i] += eta[b] * g[i] / gn } }
            }
        }
        project(&x, x0, B)
    }

    /// Each image of `x` onto its ball around `x0` and [0,1] (``BallProjection``).
    func project(_ x: inout [Float], _ x0: [Float], _ B: Int) {
        let n = x.count / B, eps = Float(epsilon)
        x.withUnsafeMutableBufferPointer { xp in
            x0.withUnsafeBufferPointer { cp in
                for b in 0..<B {
                    if norm == .linf {
                        BallProjection.linf(xp.baseAddress! + b * n, clean: cp.baseAddress! + b * n, count: n, epsilon: eps)
                    } else {
                        BallProjection.l2(xp.baseAddress! + b * n, clean: cp.baseAddress! + b * n, count: n, epsilon: eps)
                    }
                }
            }
        }
    }

    /// One run (one restart): the attacked images and their objective (per image).
    func single(_ detector: AnomalyDetector, _ objective: TargetObjective, _ x0: [Float], _ B: Int, random: Bool,
                _ rng: inout SeededRNG, _ tick: () -> Void) -> (x: [Float], value: [Float]) {
        var x = random ? randomStart(x0, B, &rng) : x0
        var g = [Float](repeating: 0, count: x.count)
        if name == .pgd {
            let eta = [Float](repeating: Float(alpha), count: B)
            for _ in 0..<steps {
                _ = gradient(detector, objective, x, B, into: &g)
                step(&x, g, x0, eta, B)
                tick()
            }
            if restarts == 1 { return (x, []) }
            let out = x.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: B) }
            return (x, objective.values(out, batch: B))
        }
        return apgd(detector, objective, x0, B, start: &x, grad: &g, tick)
    }

    /// APGD (AutoAttack's `attack_single_run`, without its misclassification bookkeeping): per image its own step
    /// size, best point, best gradient and checkpoint state.
    func apgd(_ detector: AnomalyDetector, _ objective: TargetObjective, _ x0: [Float], _ B: Int,
              start x: inout [Float], grad g: inout [Float], _ tick: () -> Void) -> (x: [Float], value: [Float]) {
        let n = x.count / B
        let schedule = APGDSchedule(steps: steps)
        var v = gradient(detector, objective, x, B, into: &g)
        tick()
        var xBest = x, gBest = g, vBest = v
        var losses = [v]                              // losses[0]: the start point; losses[i + 1]: after step i
        var eta = [Float](repeating: Float(2 * epsilon), count: B)
        var xPrev = x
        var window = schedule.firstWindow, sinceCheck = 0
        var bestAtLastCheck = vBest, halvedAtLastCheck = [Bool](repeating: true, count: B)
        let m = APGDSchedule.momentum
        for i in 0..<steps {
            let a: Float = i > 0 ? m : 1
            var z = x
            step(&z, g, x0, eta, B)
            var next = x
            for j in 0..<next.count { next[j] = x[j] + a * (z[j] - x[j]) + (1 - a) * (x[j] - xPrev[j]) }
            project(&next, x0, B)
            xPrev = x
            x = next
            v = gradient(detector, objective, x, B, into: &g)
            tick()
            losses.append(v)
            for b in 0..<B where v[b] > vBest[b] {
                vBest[b] = v[b]
                xBest.replaceSubrange((b * n)..<((b + 1) * n), with: x[(b * n)..<((b + 1) * n)])
                gBest.replaceSubrange((b * n)..<((b + 1) * n), with: g[(b * n)..<((b + 1) * n)])
            }
            sinceCheck += 1
            if sinceCheck == window {
                for b in 0..<B {
                    let w = losses[(losses.count - 1 - window)...].map { $0[b] }
                    let halve = APGDSchedule.shouldHalve(window: w, best: vBest[b], bestAtLastCheck: bestAtLastCheck[b],
                                                         halvedAtLastCheck: halvedAtLastCheck[b])
                    halvedAtLastCheck[b] = halve
                    bestAtLastCheck[b] = vBest[b]
                    if halve {
                        eta[b] /= 2
                        x.replaceSubrange((b * n)..<((b + 1) * n), with: xBest[(b * n)..<((b + 1) * n)])
                        g.replaceSubrange((b * n)..<((b + 1) * n), with: gBest[(b * n)..<((b + 1) * n)])
                    }
                }
                sinceCheck = 0
                window = schedule.nextWindow(after: window)
            }
        }
        return (xBest, vBest)
    }
}
