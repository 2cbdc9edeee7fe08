import CVectorMath
import PatchGuardCore

/// SiLU (swish), `y = x·σ(x)` (PyTorch `nn.SiLU`, diffusers' `act_fn="silu"`).
///
/// Shape legend: `n` elements (element-wise). No cache: backward recomputes from `x`.
/// Backward *adds*: `dX += dOut·σ(x)·(1 + x·(1 − σ(x)))`. `Float` uses CVectorMath's `pg_silu_*` (``FastFloat``'s
/// exp, 8-lane AVX2 + FMA where the CPU has it);
/// `Double` the libm `exp` (gradient checks).
public enum SiLU {
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            if T.self == Float.self {
                pg_silu_forward(UnsafeMutableRawPointer(out + lo).assumingMemoryBound(to: Float.self),
                                UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self), hi - lo)
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
                pg_silu_backward(UnsafeMutableRawPointer(dX + lo).assumingMemoryBound(to: Float.self),
                                 UnsafeRawPointer(dOut + lo).assumingMemoryBound(to: Float.self),
                                 UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self), hi - lo)
                return
            }
            for i in lo..<hi {
                let v = x[i], s = 1 / (1 + T.exp(-v))
                dX[i] += dOut[i] * s * (1 + v * (1 - s))
            }
        }
    }
}
