import PatchGuardCore

/// The reconstruction-error anomaly map of AdvRAD ("Robustness for free"): with `r = x̂ − x` (B, C, S, S),
/// for each scale `s ∈ {1, ½, ¼, ⅛}`: `r_s = avgpool_{1/s}(r)` (mean of 1/s × 1/s blocks), `e_s = mean_c r_s²`
/// (B, S·s, S·s), upsampled bilinearly to S × S (half-pixel centres, edge-clamped: PyTorch `interpolate(…,
/// mode="bilinear", align_corners=False)`); the map is the 3×3 mean filter (zero padding, divisor 9: PyTorch
/// `avg_pool2d(3, 1, 1)`) of `¼ Σ_s up(e_s)`. Pooling before squaring = comparing the downscaled images.
///
/// Shape legend: `B` images, `C` channels, `S` side (divisible by the largest pooling factor). No cache beyond
/// `r`; backward *adds* `∂(Σ dMap ⊙ map)/∂r` into `dR`. Generic (Double for gradient checks, Float in use).
public struct MultiscaleError: Sendable {
    public let side: Int, channels: Int
    /// Pooling factors (1, 2, 4, 8 by default).
    public let factors: [Int]

    public init(side: Int, channels: Int = 3, factors: [Int] = [1, 2, 4, 8]) throws {
        guard let f = factors.max(), factors.allSatisfy({ $0 >= 1 }), side % f == 0 else {
            throw PatchGuardError.invalidArgument("multiscale map: side \(side) must be divisible by every factor \(factors)")
        }
        self.side = side; self.channels = channels; self.factors = factors
    }

    /// Bilinear taps of one output coordinate when upsampling `n` cells by `f` (align_corners = false).
    static func taps(_ y: Int, f: Int, n: Int) -> (Int, Int, Double) {
        let src = max((Double(y) + 0.5) / Double(f) - 0.5, 0)
        let i0 = min(Int(src), n - 1), i1 = min(i0 + 1, n - 1)
        return (i0, i1, src - Double(i0))
    }

    /// map (B, S, S) from r (B, C, S, S).
    public func forward<T: NNScalar>(_ map: UnsafeMutablePointer<T>, _ r: UnsafePointer<T>, batch B: Int) {
        let S = side, C = channels
        var acc = [Double](repeating: 0, count: S * S)
        for b in 0..<B {
            for i in 0..<(S * S) { acc[i] = 0 }
            for f in factors {
                let n = S / f
                var e = [Double](repeating: 0, count: n * n)
                for c in 0..<C {
                    let plane = r + (b * C + c) * S * S
                    for by in 0..<n {
                        for bx in 0..<n {
                            var s = 0.0
                            for y in 0..<f { for x in 0..<f { s += Double(plane[(by * f + y) * S + bx * f + x]) } }
                            let m = s / Double(f * f)
                            e[by * n + bx] += m * m / Double(C)
                        }
                    }
                }
                for y in 0..<S {
                    let (y0, y1, wy) = Self.taps(y, f: f, n: n)
                    for x in 0..<S {
                        let (x0, x1, wx) = Self.taps(x, f: f, n: n)
                        let top = e[y0 * n + x0] * (1 - wx) + e[y0 * n + x1] * wx
                        let bottom = e[y1 * n + x0] * (1 - wx) + e[y1 * n + x1] * wx
                        acc[y * S + x] += (top * (1 - wy) + bottom * wy) / Double(factors.count)
                    }
                }
            }
            let out = map + b * S * S
            for y in 0..<S {
                for x in 0..<S {
                    var s = 0.0
                    for dy in -1...1 { for dx in -1...1 {
                        let yy = y + dy, xx = x + dx
                        if yy >= 0 && yy < S && xx >= 0 && xx < S { s += acc[yy * S + xx] }
                    } }
                    out[y * S + x] = T(s / 9)
                }
            }
        }
    }

    /// `dR (B, C, S, S) += ∂(Σ dMap ⊙ map)/∂r`, recomputing the pooled residuals from `r`.
    public func backward<T: NNScalar>(_ dR: UnsafeMutablePointer<T>, _ dMap: UnsafePointer<T>, _ r: UnsafePointer<T>,
                                      batch B: Int) {
        let S = side, C = channels
        var dAcc = [Double](repeating: 0, count: S * S)
        for b in 0..<B {
            let g = dMap + b * S * S
            for y in 0..<S {
                for x in 0..<S {
                    var s = 0.0
                    for dy in -1...1 { for dx in -1...1 {
                        let yy = y + dy, xx = x + dx
                        if yy >= 0 && yy < S && xx >= 0 && xx < S { s += Double(g[yy * S + xx]) }
                    } }
                    dAcc[y * S + x] = s / 9 / Double(factors.count)
                }
            }
            for f in factors {
                let n = S / f
                var dE = [Double](repeating: 0, count: n * n)
                for y in 0..<S {
                    let (y0, y1, wy) = Self.taps(y, f: f, n: n)
                    for x in 0..<S {
                        let (x0, x1, wx) = Self.taps(x, f: f, n: n)
                        let d = dAcc[y * S + x]
                        dE[y0 * n + x0] += d * (1 - wy) * (1 - wx); dE[y0 * n + x1] += d * (1 - wy) * wx
                        dE[y1 * n + x0] += d * wy * (1 - wx); dE[y1 * n + x1] += d * wy * wx
                    }
                }
                for c in 0..<C {
                    let plane = r + (b * C + c) * S * S, dPlane = dR + (b * C + c) * S * S
                    for by in 0..<n {
                        for bx in 0..<n {
                            var s = 0.0
                            for y in 0..<f { for x in 0..<f { s += Double(plane[(by * f + y) * S + bx * f + x]) } }
                            let m = s / Double(f * f)
                            // e += m²/C  ⇒  ∂e/∂r_pixel = 2m/(C·f²)
                            let gp = T(dE[by * n + bx] * 2 * m / Double(C) / Double(f * f))
                            for y in 0..<f { for x in 0..<f { dPlane[(by * f + y) * S + bx * f + x] += gp } }
                        }
                    }
                }
            }
        }
    }
}
