import Foundation
import PatchGuardCore

/// The AdamW update (decoupled weight decay, as `torch.optim.AdamW`) over one flat parameter buffer:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `θ ← θ·(1 − lr·wd) − lr·m̂/(√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`,
/// `v̂ = v/(1−β₂ᵗ)`, `t` = `step` (already advanced: the first update has `step == 1`).
///
/// Shape legend: `n` elements; parameters, gradients and both moments share one arena layout.
public enum AdamWUpdate {
    /// - Parameters: params, m, v: (n) updated in place; grads: (n).
    @inlinable
    public static func apply<T: NNScalar>(_ params: UnsafeMutablePointer<T>, _ m: UnsafeMutablePointer<T>,
                                          _ v: UnsafeMutablePointer<T>, _ grads: UnsafePointer<T>, count: Int,
                                          lr: Double, beta1: Double, beta2: Double, eps: Double,
                                          weightDecay: Double, step: Int) {
        let b1 = T(beta1), b2 = T(beta2), e = T(eps)
        let c1 = T(1 / (1 - pow(beta1, Double(step)))), c2 = T(1 / (1 - pow(beta2, Double(step))))
        let lrT = T(lr), decay = T(1 - lr * weightDecay)
        let chunk = 8192
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            for i in lo..<hi {
                let g = grads[i]
                let mi = b1 * m[i] + (1 - b1) * g
                let vi = b2 * v[i] + (1 - b2) * g * g
                m[i] = mi; v[i] = vi
                params[i] = params[i] * decay - lrT * (mi * c1) / ((vi * c2).squareRoot() + e)
            }
        }
    }
}
