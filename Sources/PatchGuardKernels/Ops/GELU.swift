import CVectorMath
import PatchGuardCore

/// Exact GELU, `y = x·Φ(x) = ½x(1 + erf(x/√2))` (PyTorch `nn.GELU()` default, not the tanh approximation).
///
/// Shape legend: `n` elements (any shape, element-wise). No cache: backward recomputes from `x`.
/// Backward *adds*: `dX += dOut·(Φ(x) + x·φ(x))`, `φ(x) = e^{−x²/2}/√(2π)`.
///
/// `Double` uses the exact libm `erf`/`exp` (gradient checks); `Float` uses CVectorMath's `pg_gelu_*` (the
/// ``FastFloat`` formulas, Φ to ≤ 2e-7 absolute, 8-lane AVX2 + FMA where the CPU has it).
public enum GELU {
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, count: Int) {
        let chunk = 4096
        parallelFor((count + chunk - 1) / chunk) { ci in
            let lo = ci * chunk, hi = min(count, lo + chunk)
            if T.self == Float.self {
                pg_gelu_forward(UnsafeMutableRawPointer(out + lo).assumingMemoryBound(to: Float.self),
                                UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self), hi - lo)
                return
            }
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
            if T.self == Float.self {
                pg_gelu_backward(UnsafeMutableRawPointer(dX + lo).assumingMemoryBound(to: Float.self),
                                 UnsafeRawPointer(dOut + lo).assumingMemoryBound(to: Float.self),
                                 UnsafeRawPointer(x + lo).assumingMemoryBound(to: Float.self), hi - lo)
                return
            }
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

/// Branch-free `Float` elementary functions that LLVM vectorises inside plain loops (no libm calls).
///
/// - ``exp(_:)``: Cody–Waite reduction `x = n·ln2 + r`, |r| ≤ ln2/2, Cephes minimax polynomial for `e^r`, `2^n` by
///   exponent bits; ~1 ulp on [−87.3, 88.7], exactly 0 below −87.3 (so `exp(−∞) = 0`), clamped above.
/// - ``erf(_:)`` / ``normalCDF(_:)``: a rational minimax fit (no `exp`), absolute error ≤ 4e-7 — GELU's output
///   `x·Φ(x)` is then within ~1e-6 absolute of the exact value for every x.
public enum FastFloat {
    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float {
        let lo: Float = -87.33654, hi: Float = 88.72283
        let xc = Swift.min(Swift.max(x, lo), hi)
        // n = round(x·log2 e) with the 1.5·2²³ trick (vectorisable, no float→int conversion).
        let magic: Float = 12582912
        let t = xc * 1.44269504088896341 + magic
        let n = t - magic
        var r = xc - n * 0.693359375
        r = r + n * 2.12194440e-4
        let z = r * r
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * z + r + 1
        let ni = Int32(bitPattern: t.bitPattern &- magic.bitPattern)
        let scale = Float(bitPattern: UInt32(bitPattern: (ni &+ 127) &<< 23))
        let y = er * scale
        return x < lo ? 0 : y
    }

    /// `Φ(x) = P(N(0,1) ≤ x) = ½(1 + erf(x/√2))`, absolute error ≤ 2e-7.
    @inlinable @inline(__always)
    public static func normalCDF(_ x: Float) -> Float { 0.5 + 0.5 * erf(x * 0.70710678118654752) }

    /// `erf(x)`: the odd/even rational minimax fit `x·P(x²)/Q(x²)` on x clamped to [−4, 4] (Eigen's
    /// `generic_fast_erf_float`; erf(±4) rounds to ±1 in Float), absolute error ≤ 4e-7; one division, no `exp`.
    @inlinable @inline(__always)
    public static func erf(_ a: Float) -> Float {
        let x = Swift.min(Swift.max(a, -4), 4)
        let x2 = x * x
        var p: Float = -2.72614225801306e-10
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 - 2.10102402082508e-06
        p = p * x2 - 5.69250639462346e-05
        p = p * x2 - 7.34990630326855e-04
        p = p * x2 - 2.95459980854025e-03
        p = p * x2 - 1.60960333262415e-02
        p = p * x
        var q: Float = -1.45660718464996e-05
        q = q * x2 - 2.13374055278905e-04
        q = q * x2 - 1.68282697438203e-03
        q = q * x2 - 7.37332916720468e-03
        q = q * x2 - 1.42647390514189e-02
        return p / q
    }

    /// `Σ p[0..<n]` with 16-wide SIMD accumulators.
    @inlinable @inline(__always)
    public static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 16 <= n {
            acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var s = acc.sum()
        while i < n { s += p[i]; i += 1 }
        return s
    }

    /// `Σ a[i]·b[i]` with 16-wide SIMD accumulators.
    @inlinable @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 16 <= n {
            acc += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// `max p[0..<n]` (n ≥ 1), eight independent lanes.
    @inlinable @inline(__always)
    public static func max(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
        var i = 0
        while i + 8 <= n {
            m0 = p[i] > m0 ? p[i] : m0; m1 = p[i + 1] > m1 ? p[i + 1] : m1
            m2 = p[i + 2] > m2 ? p[i + 2] : m2; m3 = p[i + 3] > m3 ? p[i + 3] : m3
            m4 = p[i + 4] > m4 ? p[i + 4] : m4; m5 = p[i + 5] > m5 ? p[i + 5] : m5
            m6 = p[i + 6] > m6 ? p[i + 6] : m6; m7 = p[i + 7] > m7 ? p[i + 7] : m7
            i += 8
        }
        var m = Swift.max(Swift.max(Swift.max(m0, m1), Swift.max(m2, m3)), Swift.max(Swift.max(m4, m5), Swift.max(m6, m7)))
        while i < n { m = Swift.max(m, p[i]); i += 1 }
        return m
    }
}
