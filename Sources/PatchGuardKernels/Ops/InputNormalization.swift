import PatchGuardCore

/// Per-channel input normalisation, the model's first op: `y[b, c, ·] = (x[b, c, ·] − mean[c]) / std[c]`.
///
/// Images live in [0, 1] everywhere outside the model (attacks, clamps, pseudo-anomalies); this op maps them to
/// the network's input statistics (ImageNet by default) so gradients reach the [0, 1] image.
///
/// Shape legend: `B` batch, `CI` image channels (3), `HW` pixels per channel. No cache, no parameters.
/// Backward *adds*: `dX += dOut / std[c]`.
public enum InputNormalization {
    public static let imagenetMean: [Double] = [0.485, 0.456, 0.406]
    public static let imagenetStd: [Double] = [0.229, 0.224, 0.225]

    /// - Parameters: out: (B, CI, HW); x: (B, CI, HW); mean, std: (CI).
    @inlinable
    public static func forward<T: NNScalar>(_ out: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>,
                                            batch B: Int, pixels HW: Int,
                                            mean: [Double] = imagenetMean, std: [Double] = imagenetStd) {
        let ci = mean.count
        parallelFor(B * ci) { plane in
            let c = plane % ci
            let m = T(mean[c]), inv = 1 / T(std[c])
            let o = out + plane * HW, xi = x + plane * HW
            for i in 0..<HW { o[i] = (xi[i] - m) * inv }
        }
    }

    /// - Parameters: dX: (B, CI, HW) added into; dOut: (B, CI, HW).
    @inlinable
    public static func backward<T: NNScalar>(_ dX: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>,
                                             batch B: Int, pixels HW: Int, std: [Double] = imagenetStd) {
        let ci = std.count
        parallelFor(B * ci) { plane in
            let inv = 1 / T(std[plane % ci])
            let d = dX + plane * HW, g = dOut + plane * HW
            for i in 0..<HW { d[i] += g[i] * inv }
        }
    }
}
