import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// Projected gradient descent under an L∞ budget (Madry et al.), on any ``PatchDetector``:
///
///     x⁰ = x (+ U(−ε, ε) with random start, clamped to [0,1])
///     xᵗ⁺¹ = clamp( Π_ε( xᵗ + α·sign(∇ₓ J(xᵗ)) ), 0, 1 )
///
/// `J` is ``pgdObjectiveGradient(labels:batch:patches:target:)``'s objective (``PGDTarget``: normal patches up
/// and anomalous down, or normal images up and defective ones down),
/// `Π_ε` projects onto ‖x − x⁰_clean‖∞ ≤ ε, and α defaults to 2.5·ε/steps (as in the PatchGuard code).
public struct PGDAttack: Sendable, Equatable {
    public var epsilon: Float
    public var steps: Int
    public var alpha: Float
    public var randomStart: Bool
    public var target: PGDTarget

    /// `alpha` ≤ 0 selects 2.5·ε/steps.
    public init(epsilon: Double, steps: Int, alpha: Double = 0, randomStart: Bool = false,
                target: PGDTarget = .patches) {
        self.target = target
        self.epsilon = Float(epsilon)
        self.steps = steps
        self.alpha = alpha > 0 ? Float(alpha) : (steps > 0 ? Float(2.5 * epsilon / Double(steps)) : 0)
        self.randomStart = randomStart
    }

    /// The attacked images (B, 3, S, S) for clean `images` and patch `labels` (B, Np). `onStep` is called after
    /// every step (progress bars).
    public func perturb(_ detector: PatchDetector, images: [Float], labels: [Float], batch B: Int,
                        using rng: inout SeededRNG, onStep: ((Int) -> Void)? = nil) -> [Float] {
        let count = images.count
        precondition(labels.count == B * detector.numPatches, "labels must be (B, Np)")
        guard steps > 0, epsilon > 0 else { return images }
        var x = images
        if randomStart {
            for i in 0..<count { x[i] = min(1, max(0, x[i] + Float(rng.uniform(-Double(epsilon), Double(epsilon))))) }
        }
        let dLogits = labels.withUnsafeBufferPointer {
            pgdObjectiveGradient(labels: $0.baseAddress!, batch: B, patches: detector.numPatches, target: target)
        }
        var grad = [Float](repeating: 0, count: count)
        for step in 0..<steps {
            x.withUnsafeBufferPointer { xp in
                grad.withUnsafeMutableBufferPointer { gp in
                    dLogits.withUnsafeBufferPointer { dp in
                        _ = detector.inputGradient(xp.baseAddress!, batch: B, dLogits: dp.baseAddress!,
                                                   dImages: gp.baseAddress!)
                    }
                }
            }
            let eps = epsilon, a = alpha
            for i in 0..<count {
                let g = grad[i]
                let s: Float = g > 0 ? 1 : (g < 0 ? -1 : 0)
                let lo = max(0, images[i] - eps), hi = min(1, images[i] + eps)
                x[i] = min(hi, max(lo, x[i] + a * s))
            }
            onStep?(step + 1)
        }
        return x
    }
}
