import PatchGuardCore

/// Inverted dropout: `out = x ⊙ mask`, where `mask[i]` is 0 with probability `p` and `1/(1−p)` otherwise.
///
/// Shape legend: `n` elements (any shape). The cache is the mask itself (n), drawn from a seeded generator so a
/// training step is reproducible. Backward *adds*: `dX += dOut ⊙ mask`.
public enum Dropout {
    /// Draws a mask (n) for probability `p` (p = 0 gives all ones).
    @inlinable
    public static func drawMask<T: NNScalar>(_ mask: UnsafeMutablePointer<T>, count n: Int, p: Double,
                                             using rng: inout SeededRNG) {
        let keep = T(1 / (1 - p))
        for i in 0..<n { mask[i] = p > 0 && rng.uniform() < p ? 0 : keep }
    }

    /// - Parameters: out: (n); mask: (n) from `drawMask`; x: (n). `out` may alias `x`.
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ mask: UnsafePointer<T>,
                                            _ x: UnsafePointer<T>, count n: Int) {
        for i in 0..<n { out[i] = x[i] * mask[i] }
    }

    /// - Parameters: dX: (n) added into; dOut: (n); mask: (n).
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>,
                                             _ mask: UnsafePointer<T>, count n: Int) {
        for i in 0..<n { dX[i] += dOut[i] * mask[i] }
    }
}
