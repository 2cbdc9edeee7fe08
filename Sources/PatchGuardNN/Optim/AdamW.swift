import PatchGuardCore

/// AdamW (decoupled weight decay, as `torch.optim.AdamW`):
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `θ ← θ − lr·wd·θ − lr·m̂/(√v̂ + ε)` with bias-corrected `m̂ = m/(1−β₁ᵗ)`,
/// `v̂ = v/(1−β₂ᵗ)`. One loop over a parameter arena: parameters, gradients and both moments share its layout.
/// Hyper-parameters and step count; the update itself is the ``Kernels/adamWUpdate(_:_:_:_:count:lr:beta1:beta2:eps:weightDecay:step:)``
/// kernel (``AdamWUpdate``), and the moments live in ``AdamWState`` outside the model.
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
        AdamWUpdate.apply(params, m, v, grads, count: count, lr: lr, beta1: beta1, beta2: beta2, eps: eps,
                          weightDecay: weightDecay, step: step)
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
