import PatchGuardCore
import Testing

/// Helpers for gradient checks: central differences in Double against the production kernels.

public func randomTensor(_ shape: [Int], _ rng: inout SeededRNG, std: Double = 1, mean: Double = 0) -> Tensor<Double> {
    let t = Tensor<Double>(shape: shape)
    rng.fillNormal(t.buffer, mean: mean, std: std)
    return t
}

public func uniformTensor(_ shape: [Int], _ rng: inout SeededRNG, lo: Double, hi: Double) -> Tensor<Double> {
    let t = Tensor<Double>(shape: shape)
    rng.fillUniform(t.buffer, lo: lo, hi: hi)
    return t
}

/// `Σ rᵢ·yᵢ` over `count` elements.
public func weightedSum(_ r: UnsafePointer<Double>, _ y: UnsafePointer<Double>, count: Int) -> Double {
    var s = 0.0
    for i in 0..<count { s += r[i] * y[i] }
    return s
}

public func weightedSum(_ r: Tensor<Double>, _ y: Tensor<Double>) -> Double {
    weightedSum(r.data, y.data, count: r.count)
}

/// Compares `analytic` (the backward's gradient w.r.t. the `count` values at `x`) with central differences of
/// `loss()`, on at most `maxSamples` evenly spread elements. Fails (with the first few offenders) when
/// `|a − n| > tol·max(|a|, |n|) + atol`, `atol = tol·1e-3·max|analytic|` (guards elements whose gradient is ~0).
public func expectGradient(_ name: String, at x: UnsafeMutablePointer<Double>, count: Int,
                    analytic: UnsafePointer<Double>, loss: () -> Double,
                    step: Double = 1e-5, tol: Double = 1e-6, maxSamples: Int = 2000,
                    sourceLocation: SourceLocation = #_sourceLocation) {
    var scale = 0.0
    for i in 0..<count { scale = max(scale, abs(analytic[i])) }
    #expect(scale > 0, "\(name): analytic gradient is identically zero", sourceLocation: sourceLocation)
    let atol = tol * 1e-3 * scale
    let stride = max(1, count / maxSamples)
    var failures: [String] = []
    var worst = 0.0
    var i = 0
    while i < count {
        let saved = x[i]
        x[i] = saved + step
        let lp = loss()
        x[i] = saved - step
        let lm = loss()
        x[i] = saved
        let numeric = (lp - lm) / (2 * step)
        let a = analytic[i]
        let err = abs(a - numeric)
        let bound = tol * max(abs(a), abs(numeric)) + atol
        worst = max(worst, err / (max(abs(a), abs(numeric)) + atol))
        if err > bound && failures.count < 5 { failures.append("[\(i)] analytic \(a) numeric \(numeric)") }
        i += stride
    }
    #expect(failures.isEmpty, "\(name): gradient mismatch (worst rel \(worst)): \(failures.joined(separator: "; "))",
            sourceLocation: sourceLocation)
}

public func expectGradient(_ name: String, of x: Tensor<Double>, analytic: Tensor<Double>, loss: () -> Double,
                    step: Double = 1e-5, tol: Double = 1e-6, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(x.count == analytic.count, "\(name): sizes differ", sourceLocation: sourceLocation)
    expectGradient(name, at: x.data, count: x.count, analytic: analytic.data, loss: loss, step: step, tol: tol,
                   sourceLocation: sourceLocation)
}

/// A gradient buffer pre-filled with random values, so a test can check that backward *adds* (subtract `prior`).
public struct AccumulatingGrad {
    public let grad: Tensor<Double>
    public let prior: Tensor<Double>
    public init(_ shape: [Int], _ rng: inout SeededRNG) {
        prior = randomTensor(shape, &rng)
        grad = prior.copy()
    }
    /// What backward added.
    public var added: Tensor<Double> {
        let t = grad.copy()
        for i in 0..<t.count { t[i] -= prior[i] }
        return t
    }
}

public func maxAbsDiff<T: NNScalar, U: NNScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<U>, count: Int) -> Double {
    var m = 0.0
    for i in 0..<count { m = max(m, abs(Double(a[i]) - Double(b[i]))) }
    return m
}
