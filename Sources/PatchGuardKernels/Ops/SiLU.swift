import PatchGuardCore

/// SiLU (swish), `y = x·σ(x)` (PyTorch `nn.SiLU`, diffusers' `act_fn="silu"`).
///
/// Shape legend: `n` elements (element-wise). No cache: backward recomputes from `x`.
/// Backward *adds*: `dX += dOut·σ(x)·(1 + x·(1 − σ(x)))`. `Float` uses ``FastFloat/exp(_:)`` (vectorised);
/// `Double` the libm `exp` (gradient checks).
public enum SiLU {
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            if T.self == Float.self {
                let o = UnsafeMutableRawPointer(out + lo).assumingMemoryBound(to: Float.self)
                let xi = UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self)
                for i in 0..<(hi - lo) { let v = xi[i]; o[i] = v / (1 + FastFloat.exp(-v)) }
                return
            }
            for i in lo..<hi { let v = x[i]; out[i] = v / (1 + T.exp(-v)) }
        }
    }

    /// - Parameters: dX: (n) added into; dOut: (n); x: (n) the forward input.
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            if T.self == Float.self {
                let d = UnsafeMutableRawPointer(dX + lo).assumingMemoryBound(to: Float.self)
                let g = UnsafeRawPointer(dOut + lo).assumingMemoryBound(to: Float.self)
                let xi = UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self)
                for i in 0..<(hi - lo) {
                    let v = xi[i], s = 1 / (1 + FastFloat.exp(-v))
                    d[i] += g[i] * s * (1 + v * (1 - s))
                }
                return
            }
            for i in lo..<hi {
                let v = x[i], s = 1 / (1 + T.exp(-v))
                dX[i] += dOut[i] * s * (1 + v * (1 - s))
            }
        }
    }
}
