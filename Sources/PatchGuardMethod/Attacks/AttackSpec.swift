import PatchGuardCore

/// Attack families; only L∞ PGD exists. JSON spelling: `"pgd"`.
public enum AttackName: String, ConfigEnum {
    case pgd
}

/// One attack, from the config (`eval.attacks[i]`, or the training attack `attack.*`) or the command line
/// (`--attack/--steps/--epsilon/--alpha/--random-start/--target`) to the evaluator, PGD and the report row.
///
/// The step size is stored as given (``stepSize``, `0` = default) so that a config that changes `steps` but not
/// `alpha` gets the default for its own step count; ``alpha`` resolves it, and is the only place that computes
/// the default 2.5·ε/steps (as in the PatchGuard code).
///
/// JSON (`eval.attacks[i]`): `{"name": "pgd", "steps": 10, "epsilon": 0.0313…, "alpha": 0, "target": "patches"}`.
/// `random_start` is not a key of `eval.attacks` (the command line's `--random-start` sets it); the training
/// attack's `attack.random_start` does set it.
public struct AttackSpec: Codable, Equatable, Sendable {
    public var name: AttackName = .pgd
    /// PGD steps (0 = no attack: the images are returned unchanged).
    public var steps = 10
    /// L∞ budget in [0,1] pixel units.
    public var epsilon = 8.0 / 255.0
    /// Step size as configured; ≤ 0 selects the default (see ``alpha``). JSON key `alpha`.
    public var stepSize = 0.0
    /// Start from a uniform random point in the ε-ball.
    public var randomStart = false
    /// What is attacked: the pixel map through the ground-truth patch labels (the paper) or the image score.
    public var target: PGDTarget = .patches

    public init(name: AttackName = .pgd, epsilon: Double = 8.0 / 255.0, steps: Int = 10, alpha: Double = 0,
                randomStart: Bool = false, target: PGDTarget = .patches) {
        self.name = name; self.steps = steps; self.epsilon = epsilon; self.stepSize = alpha
        self.randomStart = randomStart; self.target = target
    }

    /// The step size PGD uses: ``stepSize`` when it is positive, else 2.5·ε/steps (0 without steps).
    public var alpha: Double {
        stepSize > 0 ? stepSize : (steps > 0 ? 2.5 * epsilon / Double(steps) : 0)
    }

    /// Throws ``PatchGuardError/invalidArgument(_:)`` naming `key` (e.g. `eval.attacks.0`) on negative steps,
    /// ε outside [0, 1] or a non-finite step size.
    public func validate(key: String = "attack") throws {
        if let problem = problem(key: key) { throw PatchGuardError.invalidArgument(problem) }
    }

    /// What ``validate(key:)`` would throw about, or nil.
    public func problem(key: String) -> String? {
        if steps < 0 { return "\(key).steps must be ≥ 0, got \(steps)" }
        if !(epsilon.isFinite && epsilon >= 0 && epsilon <= 1) { return "\(key).epsilon must be in [0, 1], got \(epsilon)" }
        if !stepSize.isFinite { return "\(key).alpha must be finite" }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case name, steps, epsilon, stepSize = "alpha", target
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AttackSpec()
        name = try c.decodeIfPresent(AttackName.self, forKey: .name) ?? d.name
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
        epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? d.epsilon
        stepSize = try c.decodeIfPresent(Double.self, forKey: .stepSize) ?? d.stepSize
        target = try c.decodeIfPresent(PGDTarget.self, forKey: .target) ?? d.target
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(steps, forKey: .steps)
        try c.encode(epsilon, forKey: .epsilon)
        try c.encode(stepSize, forKey: .stepSize)
        try c.encode(target, forKey: .target)
    }
}

/// The old name of ``AttackSpec`` (the training job still spells it so); the same type.
public typealias PGDAttack = AttackSpec
