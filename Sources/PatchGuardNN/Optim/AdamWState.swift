import PatchGuardCore

/// AdamW state for one parameter arena, kept outside the model (the trainer owns it, checkpoints save it): both
/// moments in arenas with the parameters' layout (same names, so a checkpoint writes them as
/// `optimizer.m.<name>` / `optimizer.v.<name>`), the hyper-parameters and the step count. The update itself is the
/// backend's ``Kernels/adamWUpdate(_:_:_:_:count:lr:beta1:beta2:eps:weightDecay:step:)`` over the whole arena.
public final class AdamWState<T: NNScalar> {
    /// Hyper-parameters and `step` (steps taken so far).
    public var hyper: AdamW
    public let m: Arena<T>   // like the parameters
    public let v: Arena<T>   // like the parameters

    public init(parameters: Arena<T>, weightDecay: Double, allocator: any BufferAllocator = HostAllocator.shared) {
        hyper = AdamW(weightDecay: weightDecay)
        m = Arena(sameLayoutAs: parameters, allocator: allocator)
        v = Arena(sameLayoutAs: parameters, allocator: allocator)
    }

    public var step: Int {
        get { hyper.step }
        set { hyper.step = newValue }
    }

    /// One AdamW step of `parameters` from `gradients` (both with this state's layout).
    public func update(parameters: Arena<T>, gradients: Arena<T>, lr: Double, kernels: any Kernels<T>) {
        precondition(parameters.totalCount == m.totalCount && gradients.totalCount == m.totalCount,
                     "AdamW state layout does not match the parameters")
        hyper.step += 1
        kernels.adamWUpdate(parameters.storage.data, m.storage.data, v.storage.data, gradients.storage.data,
                            count: parameters.totalCount, lr: lr, beta1: hyper.beta1, beta2: hyper.beta2,
                            eps: hyper.eps, weightDecay: hyper.weightDecay, step: hyper.step)
    }
}
