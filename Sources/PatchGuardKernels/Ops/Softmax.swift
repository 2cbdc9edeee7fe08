import CVectorMath
import PatchGuardCore

/// Row-wise softmax, `y[r, j] = e^{x[r, j] − max_r} / Σ_k e^{x[r, k] − max_r}`.
///
/// Shape legend: `R` rows, `L` row length. No cache besides the output `y` itself.
/// Backward *adds*: `dX += y ⊙ (dY − ⟨dY, y⟩)` per row.
/// `Float` rows use ``FastFloat/exp(_:)`` (vectorised, ~1 ulp) and SIMD reductions; `Double` stays exact.
public enum Softmax {
    /// - Parameters: out: (R, L); x: (R, L). `out` may alias `x` (in-place).
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                            rows: Int, length: Int) {
        parallelFor(rows, minChunk: 8) { r in
            forwardRow(out + r * length, x + r * length, length: length, scale: 1)
        }
    }

    /// - Parameters: dX: (R, L) added into; dOut: (R, L); y: (R, L) the forward output.
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>,
                                             _ y: UnsafePointer<T>, rows: Int, length: Int) {
        parallelFor(rows, minChunk: 8) { r in
            let yr = y + r * length, gr = dOut + r * length, dr = dX + r * length
            let dot = Self.dot(yr, gr, length)
            for j in 0..<length { dr[j] += yr[j] * (gr[j] - dot) }
        }
    }

    /// One row: `out = softmax(scale·x)`; `out` may alias `x`.
    @inlinable
    public static func forwardRow<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                               length: Int, scale: T) {
        if T.self == Float.self {
            // CVectorMath: 8-lane AVX2 + FMA where the CPU has it (a row with a NaN gives NaN everywhere).
            pg_softmax_row(UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self),
                           UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), length, Float(scale))
            return
        }
        var mx = -T.infinity
        for j in 0..<length { mx = max(mx, x[j]) }
        var sum: T = 0
        for j in 0..<length {
            let e = T.exp(scale * (x[j] - mx))
            out[j] = e
            sum += e
        }
        let inv = 1 / sum
        for j in 0..<length { out[j] *= inv }
    }

    /// `Σ a[j]·b[j]`: SIMD for `Float`, a plain loop otherwise.
    @inlinable @inline(__always)
    public static func dot<T: NNScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
        if T.self == Float.self {
            return T(FastFloat.dot(UnsafeRawPointer(a).assumingMemoryBound(to: Float.self),
                                   UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), n))
        }
        var s: T = 0
        for j in 0..<n { s += a[j] * b[j] }
        return s
    }
}
