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
/// and anomalous down, i.e. the pixel map, or normal images up and defective ones down, i.e. the image score),
/// `Π_ε` projects onto ‖x − x⁰_clean‖∞ ≤ ε, and α is ``AttackSpec/alpha`` (default 2.5·ε/steps). ε and α are
/// used in Float.
extension AttackSpec {
    /// The attacked images (B, 3, S, S) for clean `images` and patch `labels` (B, Np). `onStep` is called after
    /// every step (progress bars).
    public func perturb(_ detector: PatchDetector, images: [Float], labels: [Float], batch B: Int,
                        using rng: inout SeededRNG, onStep: ((Int) -> Void)? = nil) -> [Float] {
        let count = images.count
        precondition(labels.count == B * detector.numPatches, "labels must be (B, Np)")
        guard steps > 0, Float(epsilon) > 0 else { return images }
        var x = images
        if randomStart {
            for i in 0..<count { x[i] = min(1, max(0, x[i] + Float(rng.uniform(-Double(Float(epsilon)), Double(Float(epsilon)))))) }
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
            let eps = Float(epsilon), a = Float(alpha)
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
