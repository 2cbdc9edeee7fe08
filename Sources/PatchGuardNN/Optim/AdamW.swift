import PatchGuardCore

/// AdamW (decoupled weight decay, as `torch.optim.AdamW`):
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `θ ← θ − lr·wd·θ − lr·m̂/(√v̂ + ε)` with bias-corrected `m̂ = m/(1−β₁ᵗ)`,
/// `v̂ = v/(1−β₂ᵗ)`. One loop over a parameter arena: parameters, gradients and both moments share its layout.
public struct AdamW: Codable, Equatable, Sendable {
    public var beta1 = 0.9
    public var beta2 = 0.999
    public var eps = 1e-8
    public var weightDecay = 0.01
    /// Steps taken so far (t in the bias correction).
    public var step = 0

    public init(weightDecay: Double = 0.01) { self.weightDecay = weightDecay }

    /// Updates `params` in place from `grads` (same count), advancing `m` and `v`.
    @_specialize(exported: true, where T == Float)
    @_specialize(exported: true, where T == Double)
    public mutating func update<T: NNScalar>(params: UnsafeMutablePointer<T>, grads: UnsafePointer<T>,
                                             m: UnsafeMutablePointer<T>, v: UnsafeMutablePointer<T>,
                                             count: Int, lr: Double) {
        step += 1
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

/// Cosine annealing per epoch, as `CosineAnnealingLR(T_max = epochs, eta_min = lr·minFactor)`:
/// `lr(e) = η_min + (lr − η_min)·(1 + cos(π·e/E))/2` for epoch `e` in `0..<E`.
public func cosineLearningRate(base: Double, minFactor: Double, epoch: Int, epochs: Int) -> Double {
    let etaMin = base * minFactor
    guard epochs > 0 else { return base }
    return etaMin + (base - etaMin) * (1 + cos(Double.pi * Double(epoch) / Double(epochs))) / 2
}

import Foundation
