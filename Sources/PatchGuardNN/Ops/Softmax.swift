import PatchGuardCore

/// Row-wise softmax, `y[r, j] = e^{x[r, j] − max_r} / Σ_k e^{x[r, k] − max_r}`.
///
/// Shape legend: `R` rows, `L` row length. No cache besides the output `y` itself.
/// Backward *adds*: `dX += y ⊙ (dY − ⟨dY, y⟩)` per row.
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
            var dot: T = 0
            for j in 0..<length { dot += yr[j] * gr[j] }
            for j in 0..<length { dr[j] += yr[j] * (gr[j] - dot) }
        }
    }

    /// One row: `out = softmax(scale·x)`; `out` may alias `x`.
    @inlinable
    public static func forwardRow<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                               length: Int, scale: T) {
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
}
