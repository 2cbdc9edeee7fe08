import CVectorMath
import PatchGuardCore

/// Fully connected layer, `y = x·Wᵀ + b` (PyTorch `nn.Linear` layout: weight is (OC, IC)).
///
/// Shape legend: `R` rows (B·N tokens, or B), `IC` input features, `OC` output features.
///
/// Backward *adds* into every gradient buffer (`dX`, `dWeight`, `dBias`); gradients are zeroed once per step by
/// the caller. Pass `nil` for a gradient that is not wanted (e.g. `dWeight`/`dBias` when parameter gradients are
/// skipped, `dX` for the first layer). All products go through `matmul` (OpenBLAS); the bias loops run on
/// `parallelFor`.
public enum Linear {
    /// `out[r, o] = Σᵢ x[r, i]·weight[o, i] + bias[o]`.
    /// - Parameters:
    ///   - out: (R, OC)
    ///   - x: (R, IC)
    ///   - weight: (OC, IC)
    ///   - bias: (OC) or nil
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                            _ weight: UnsafePointer<T>, _ bias: UnsafePointer<T>?,
                                            rows: Int, inFeatures: Int, outFeatures: Int) {
        let r = rows, ic = inFeatures, oc = outFeatures
        if let bias {
            parallelFor(r, minChunk: 64) { i in (out + i * oc).update(from: bias, count: oc) }
            matmul(out, x, weight, m: r, n: oc, k: ic, transB: true, beta: 1)
        } else {
            matmul(out, x, weight, m: r, n: oc, k: ic, transB: true)
        }
    }

    /// Gradients of ``forward(_:_:_:_:rows:inFeatures:outFeatures:)``:
    /// `dX += dOut·W`, `dWeight += dOutᵀ·x`, `dBias += Σ_r dOut[r, ·]`.
    /// - Parameters:
    ///   - dX: (R, IC) or nil
    ///   - dWeight: (OC, IC) or nil
    ///   - dBias: (OC) or nil
    ///   - dOut: (R, OC)
    ///   - x: (R, IC)
    ///   - weight: (OC, IC)
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>?, _ dWeight: UnsafeMutablePointer<T>?,
                                             _ dBias: UnsafeMutablePointer<T>?, _ dOut: UnsafePointer<T>,
                                             _ x: UnsafePointer<T>, _ weight: UnsafePointer<T>,
                                             rows: Int, inFeatures: Int, outFeatures: Int) {
        let r = rows, ic = inFeatures, oc = outFeatures
        if let dX { matmul(dX, dOut, weight, m: r, n: ic, k: oc, beta: 1) }
        if let dWeight { matmul(dWeight, dOut, x, m: oc, n: ic, k: r, transA: true, beta: 1) }
        if let dBias { columnSumAdd(dBias, dOut, rows: r, cols: oc) }
    }

    /// `acc[j] += Σ_r m[r, j]` for a row-major (rows, cols) matrix, parallel over column blocks. `Float` runs
    /// CVectorMath's `pg_column_sum_add` (one contiguous sweep per block, vectorised over columns; the same sums
    /// bit for bit as the loop below, which `Double` runs).
    @inlinable
    public static func columnSumAdd<T: NNScalar>(_ acc: UnsafeMutablePointer<T>, _ m: UnsafePointer<T>,
                                                 rows: Int, cols: Int) {
        if T.self == Float.self {
            ColumnBands.forEach(cols) { lo, width in
                pg_column_sum_add(UnsafeMutableRawPointer(acc + lo).assumingMemoryBound(to: Float.self),
                                  UnsafeRawPointer(m + lo).assumingMemoryBound(to: Float.self), rows, cols, width)
            }
            return
        }
        let block = 64
        let blocks = (cols + block - 1) / block
        parallelFor(blocks) { bi in
            let lo = bi * block, hi = min(cols, lo + block)
            var local = [T](repeating: 0, count: hi - lo)
            local.withUnsafeMutableBufferPointer { l in
                for r in 0..<rows {
                    let row = m + r * cols + lo
                    for j in 0..<(hi - lo) { l[j] += row[j] }
                }
                for j in 0..<(hi - lo) { acc[lo + j] += l[j] }
            }
        }
    }
}

/// The column bands a column reduction (`pg_column_sum_add` and its kin) is split into for ``parallelFor(_:minChunk:_:)``:
/// at least 256 columns each (a band is one contiguous sweep over the rows; narrower ones would read the matrix as
/// many short strided pieces), at most one per thread.
@usableFromInline
enum ColumnBands {
    @inlinable
    static func forEach(_ cols: Int, _ body: (_ lo: Int, _ width: Int) -> Void) {
        let bands = max(1, min(Parallel.threads, cols / 256))
        parallelFor(bands) { b in
            let lo = cols * b / bands, hi = cols * (b + 1) / bands
            if hi > lo { body(lo, hi - lo) }
        }
    }
}
