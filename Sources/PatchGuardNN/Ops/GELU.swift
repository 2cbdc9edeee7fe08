import PatchGuardCore

/// Exact GELU, `y = x·Φ(x) = ½x(1 + erf(x/√2))` (PyTorch `nn.GELU()` default, not the tanh approximation).
///
/// Shape legend: `n` elements (any shape, element-wise). No cache: backward recomputes from `x`.
/// Backward *adds*: `dX += dOut·(Φ(x) + x·φ(x))`, `φ(x) = e^{−x²/2}/√(2π)`.
public enum GELU {
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            let invSqrt2 = 1 / T(2).squareRoot()
            for i in lo..<hi {
                let v = x[i]
                out[i] = T(0.5) * v * (1 + T.erf(v * invSqrt2))
            }
        }
    }

    /// - Parameters: dX: (n) added into; dOut: (n); x: (n) the forward input.
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            let invSqrt2 = 1 / T(2).squareRoot()
            let invSqrt2Pi = 1 / (2 * T.pi).squareRoot()
            for i in lo..<hi {
                let v = x[i]
                let cdf = T(0.5) * (1 + T.erf(v * invSqrt2))
                let pdf = T.exp(T(-0.5) * v * v) * invSqrt2Pi
                dX[i] += dOut[i] * (cdf + v * pdf)
            }
        }
    }
}
