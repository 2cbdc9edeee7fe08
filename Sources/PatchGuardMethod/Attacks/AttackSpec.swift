import PatchGuardCore

/// Attack families. JSON spelling: `"pgd"`, `"apgd"`, `"suite"`.
public enum AttackName: String, ConfigEnum {
    /// Projected gradient descent (Madry et al.): fixed step α, last iterate.
    case pgd
    /// Auto-PGD (Croce & Hein 2020, AutoAttack): step 2ε halved on stalls, momentum 0.75, best iterate.
    case apgd
    /// Several attacks at one budget (``AttackSpec/expanded()``); the evaluator runs them one by one and reports
    /// the worst case per image.
    case suite
}

/// The threat model's norm. JSON spelling: `"linf"`, `"l2"`.
public enum AttackNorm: String, ConfigEnum {
    /// ‖δ‖∞ ≤ ε: sign steps, projection = clipping each pixel to [x − ε, x + ε].
    case linf
    /// ‖δ‖₂ ≤ ε per image (over all 3·S² values): normalised-gradient steps, projection δ·min(1, ε/‖δ‖₂).
    case l2

    /// `"L∞"`, `"L2"`.
    public var display: String { self == .linf ? "L∞" : "L2" }
}

/// One attack, from the config (`eval.attacks[i]`, or the training attack `attack.*`) or the command line
/// (`--attack/--steps/--epsilon/--alpha/--random-start/--target/--restarts/--eot-samples`) to the evaluator,
/// the attack code (``run(on:images:labels:batch:using:onStep:)``) and the report row.
///
/// The step size is stored as given (``stepSize``, `0` = default) so that a config that changes `steps` but not
/// `alpha` gets the default for its own step count; ``alpha`` resolves it, and is the only place that computes
/// the default 2.5·ε/steps (as in the PatchGuard code; APGD's initial step is 2ε).
///
/// JSON (`eval.attacks[i]`): `{"name": "pgd", "steps": 10, "epsilon": 0.0313…, "alpha": 0, "target": "patches",
/// "norm": "linf", "restarts": 1, "eot_samples": 1}`; every key is optional (defaults as here).
/// `random_start` is not a key of `eval.attacks` (the command line's `--random-start` sets it; restarts after the
/// first always start at random); the training attack's `attack.random_start` does set it.
public struct AttackSpec: Codable, Equatable, Sendable {
    public var name: AttackName = .pgd
    /// Steps per restart (0 = no attack: the images are returned unchanged).
    public var steps = 10
    /// Budget in [0,1] pixel units, in ``norm``.
    public var epsilon = 8.0 / 255.0
    /// Step size as configured; ≤ 0 selects the default (see ``alpha``). JSON key `alpha`.
    public var stepSize = 0.0
    /// Start from a uniform random point in the ε-ball (restarts after the first always do).
    public var randomStart = false
    /// What is attacked (``PGDTarget``).
    public var target: PGDTarget = .patches
    public var norm: AttackNorm = .linf
    /// Independent runs; per image the one with the highest objective is kept. JSON `restarts`.
    public var restarts = 1
    /// Gradient samples averaged per step when the detector is stochastic (EOT); ignored otherwise.
    public var eotSamples = 1

    public init(name: AttackName = .pgd, epsilon: Double = 8.0 / 255.0, steps: Int = 10, alpha: Double = 0,
                randomStart: Bool = false, target: PGDTarget = .patches, norm: AttackNorm = .linf,
                restarts: Int = 1, eotSamples: Int = 1) {
        self.name = name; self.steps = steps; self.epsilon = epsilon; self.stepSize = alpha
        self.randomStart = randomStart; self.target = target; self.norm = norm
        self.restarts = restarts; self.eotSamples = eotSamples
    }

    /// The step size: for PGD ``stepSize`` when it is positive, else 2.5·ε/steps (0 without steps); for APGD
    /// the initial step 2ε (AutoAttack's; ``stepSize`` is not used).
    public var alpha: Double {
        if name == .apgd { return steps > 0 ? 2 * epsilon : 0 }
        return stepSize > 0 ? stepSize : (steps > 0 ? 2.5 * epsilon / Double(steps) : 0)
    }

    /// The attacks a ``AttackName/suite`` entry stands for, at its norm, ε, steps and restarts: APGD on the exact
    /// image score, APGD on the unflipped map cells, APGD on the paper's patch-label objective and PGD (random
    /// start) on the exact image score. Any other attack is itself.
    public func expanded() -> [AttackSpec] {
        guard name == .suite else { return [self] }
        func make(_ n: AttackName, _ t: PGDTarget, random: Bool = false) -> AttackSpec {
            AttackSpec(name: n, epsilon: epsilon, steps: steps, alpha: stepSize, randomStart: random || randomStart,
                       target: t, norm: norm, restarts: restarts, eotSamples: eotSamples)
        }
        return [make(.apgd, .imageTopK), make(.apgd, .patchesSEA), make(.apgd, .patches),
                make(.pgd, .imageTopK, random: true)]
    }

    /// Throws ``PatchGuardError/invalidArgument(_:)`` naming `key` (e.g. `eval.attacks.0`) on negative steps,
    /// an L∞ ε outside [0, 1], a negative or non-finite ε or step size, or fewer than 1 restart or EOT sample.
    public func validate(key: String = "attack") throws {
        if let problem = problem(key: key) { throw PatchGuardError.invalidArgument(problem) }
    }

    /// What ``validate(key:)`` would throw about, or nil.
    public func problem(key: String) -> String? {
        if steps < 0 { return "\(key).steps must be ≥ 0, got \(steps)" }
        switch norm {
        case .linf:
            if !(epsilon.isFinite && epsilon >= 0 && epsilon <= 1) { return "\(key).epsilon must be in [0, 1], got \(epsilon)" }
        case .l2:
            if !(epsilon.isFinite && epsilon >= 0) { return "\(key).epsilon must be finite and ≥ 0 (L2), got \(epsilon)" }
        }
        if !stepSize.isFinite { return "\(key).alpha must be finite" }
        if stepSize < 0 { return "\(key).alpha must be ≥ 0 (0 = the default 2.5·ε/steps), got \(stepSize)" }
        if restarts < 1 { return "\(key).restarts must be ≥ 1, got \(restarts)" }
        if eotSamples < 1 { return "\(key).eot_samples must be ≥ 1, got \(eotSamples)" }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case name, steps, epsilon, stepSize = "alpha", target, norm, restarts, eotSamples = "eot_samples"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AttackSpec()
        name = try c.decodeIfPresent(AttackName.self, forKey: .name) ?? d.name
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
        epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? d.epsilon
        stepSize = try c.decodeIfPresent(Double.self, forKey: .stepSize) ?? d.stepSize
        target = try c.decodeIfPresent(PGDTarget.self, forKey: .target) ?? d.target
        norm = try c.decodeIfPresent(AttackNorm.self, forKey: .norm) ?? d.norm
        restarts = try c.decodeIfPresent(Int.self, forKey: .restarts) ?? d.restarts
        eotSamples = try c.decodeIfPresent(Int.self, forKey: .eotSamples) ?? d.eotSamples
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(steps, forKey: .steps)
        try c.encode(epsilon, forKey: .epsilon)
        try c.encode(stepSize, forKey: .stepSize)
        try c.encode(target, forKey: .target)
        try c.encode(norm, forKey: .norm)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(eotSamples, forKey: .eotSamples)
    }
}

/// The old name of ``AttackSpec`` (the training job still spells it so); the same type.
public typealias PGDAttack = AttackSpec
