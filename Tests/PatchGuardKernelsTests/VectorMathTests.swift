import Foundation
import Testing
import CVectorMath
import PatchGuardCore

/// CVectorMath against Double references, on both paths (the AVX2 + FMA one where this CPU has it), lengths that
/// exercise the 8-lane tails, and the edge values (−∞ logits, overflow, NaN).
@Suite struct VectorMathTests {
    var paths: [Int32] { Array(0...pg_vecmath_avx2()) }

    @Test func expMatchesDoubleAndHandlesTheEdges() {
        var rng = SeededRNG(seed: 3)
        var x = (0..<1003).map { _ in Float(rng.uniform(-87, 88)) }
        x += [0, -0.0, 1, -1, 1e-30, -87.3, 88.5, 88.7, -87.4, -100, -.infinity, 100, .infinity, .nan]
        for path in paths {
            var out = [Float](repeating: -1, count: x.count)
            pg_exp_using(path, &out, x, x.count)
            for (v, e) in zip(x, out) {
                if v.isNaN { #expect(e.isNaN, "path \(path): exp(NaN) = \(e)"); continue }
                if v < -87.33654 { #expect(e == 0, "path \(path): exp(\(v)) = \(e)"); continue }
                // Near the top of the range 2^n overflows (as FastFloat.exp's): +∞ or a huge value, never less.
                if v > 88 { #expect(e > 1.6e38, "path \(path): exp(\(v)) = \(e)"); continue }
                let exact = Foundation.exp(Double(v))
                let tolerance = 2.5 * Double(Float(exact).ulp) + (exact < 1.2e-38 ? 1.5e-45 * 4 : 0)
                #expect(abs(Double(e) - exact) <= tolerance, "path \(path): exp(\(v)) = \(e), exact \(exact)")
            }
        }
    }

    @Test func softmaxRowsMatchDoubleForEveryTailLength() {
        var rng = SeededRNG(seed: 5)
        for path in paths {
            for n in [1, 2, 7, 8, 9, 15, 16, 17, 31, 64, 197] {
                var x = (0..<n).map { _ in Float(rng.normal() * 4) }
                if n > 3 { x[1] = -.infinity; x[2] = 30 }  // a masked logit and a dominant one
                let scale: Float = 0.35
                var out = [Float](repeating: .nan, count: n)
                pg_softmax_row_using(path, &out, x, n, scale)
                let m = x.map(Double.init).max()!
                let e = x.map { Foundation.exp(Double(scale) * (Double($0) - m)) }
                let z = e.reduce(0, +)
                for j in 0..<n {
                    #expect(abs(Double(out[j]) - e[j] / z) <= 1e-6 * max(1, e[j] / z),
                            "path \(path) n \(n) j \(j): \(out[j]) vs \(e[j] / z)")
                }
                if n > 3 { #expect(out[1] == 0) }
                // In place (out aliases x) gives the same values.
                var y = x
                y.withUnsafeMutableBufferPointer { pg_softmax_row_using(path, $0.baseAddress!, $0.baseAddress!, n, scale) }
                #expect(y == out, "path \(path) n \(n): in place differs")
            }
            // A NaN anywhere in the row makes the whole row NaN (never a finite row that hides it).
            var x = [Float](repeating: 0.5, count: 11)
            x[9] = .nan
            var out = [Float](repeating: 0, count: 11)
            pg_softmax_row_using(path, &out, x, 11, 1)
            #expect(out.allSatisfy { $0.isNaN }, "path \(path): \(out)")
        }
    }

    @Test func geluForwardAndBackwardMatchDoubleErf() {
        var rng = SeededRNG(seed: 9)
        var x = (0..<515).map { _ in Float(rng.normal() * 3) }
        x += [0, -0.0, 4, -4, 6, -6, 30, -30]
        let dOut = x.indices.map { _ in Float(rng.normal()) }
        for path in paths {
            var y = [Float](repeating: .nan, count: x.count)
            pg_gelu_forward_using(path, &y, x, x.count)
            var dX = [Float](repeating: 0.25, count: x.count)
            pg_gelu_backward_using(path, &dX, dOut, x, x.count)
            for i in x.indices {
                let v = Double(x[i])
                let cdf = 0.5 * (1 + Foundation.erf(v / 2.0.squareRoot()))
                let pdf = Foundation.exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
                #expect(abs(Double(y[i]) - v * cdf) <= 1e-6 * max(1, abs(v)), "path \(path): GELU(\(v)) = \(y[i])")
                let g = 0.25 + Double(dOut[i]) * (cdf + v * pdf)
                #expect(abs(Double(dX[i]) - g) <= 2e-6 * max(1, abs(g)), "path \(path): dGELU(\(v)) = \(dX[i]) vs \(g)")
            }
        }
    }

    @Test func siluForwardAndBackwardMatchDouble() {
        var rng = SeededRNG(seed: 13)
        var x = (0..<261).map { _ in Float(rng.normal() * 4) }
        x += [0, -0.0, 20, -20, 90, -90]
        let dOut = x.indices.map { _ in Float(rng.normal()) }
        for path in paths {
            var y = [Float](repeating: .nan, count: x.count)
            pg_silu_forward_using(path, &y, x, x.count)
            var dX = [Float](repeating: -0.5, count: x.count)
            pg_silu_backward_using(path, &dX, dOut, x, x.count)
            for i in x.indices {
                let v = Double(x[i]), s = 1 / (1 + Foundation.exp(-v))
                #expect(abs(Double(y[i]) - v * s) <= 1e-6 * max(1, abs(v)), "path \(path): SiLU(\(v)) = \(y[i])")
                let g = -0.5 + Double(dOut[i]) * s * (1 + v * (1 - s))
                #expect(abs(Double(dX[i]) - g) <= 2e-6 * max(1, abs(g)), "path \(path): dSiLU(\(v)) = \(dX[i]) vs \(g)")
            }
        }
    }

    /// LayerNorm rows, forward (y, mean, rstd) and backward (dx added into), against Double on both paths, for
    /// every tail length and a row with a large offset (x = 1000 + noise: the two-pass variance keeps it exact).
    @Test func layerNormRowsMatchDouble() {
        var rng = SeededRNG(seed: 17)
        for c in [1, 2, 7, 8, 9, 15, 16, 17, 64, 129, 384] {
            // The offset row only where c ≥ 8: with two or three values that happen to lie close together rstd is
            // large and x − mean's rounding at 1000 (ulp 6e-5) is amplified by it, in Double's reference as well.
            for offset in c >= 8 ? [0.0, 1000.0] : [0.0] {
                let x = (0..<c).map { _ in Float(offset + rng.normal()) }
                let w = (0..<c).map { _ in Float(1 + 0.3 * rng.normal()) }
                let b = (0..<c).map { _ in Float(0.2 * rng.normal()) }
                let dout = (0..<c).map { _ in Float(rng.normal()) }
                let dx0 = (0..<c).map { _ in Float(rng.normal()) }
                let xd = x.map(Double.init)
                let m = xd.reduce(0, +) / Double(c)
                let v = xd.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(c)
                let rs = 1 / (v + 1e-6).squareRoot()
                let xh = xd.map { ($0 - m) * rs }
                let g = (0..<c).map { Double(dout[$0]) * Double(w[$0]) }
                let gm = g.reduce(0, +) / Double(c)
                let gxm = (0..<c).map { g[$0] * xh[$0] }.reduce(0, +) / Double(c)
                for path in paths {
                    var y = [Float](repeating: .nan, count: c)
                    var mean: Float = .nan, rstd: Float = .nan
                    pg_layernorm_forward_row_using(path, &y, &mean, &rstd, x, w, b, c, 1e-6)
                    #expect(abs(Double(mean) - m) <= 1e-6 * (abs(m) + 1), "path \(path) c \(c): mean \(mean) vs \(m)")
                    #expect(abs(Double(rstd) - rs) <= 2e-4 * rs, "path \(path) c \(c): rstd \(rstd) vs \(rs)")
                    let yTol = offset == 0 ? 1e-5 : 2e-3  // x − mean loses log2(1000) bits of x's float rounding
                    for i in 0..<c {
                        let ref = xh[i] * Double(w[i]) + Double(b[i])
                        #expect(abs(Double(y[i]) - ref) <= yTol * (abs(ref) + 1), "path \(path) c \(c) y[\(i)]")
                    }
                    var dx = dx0
                    pg_layernorm_backward_row_using(path, &dx, dout, x, w, mean, rstd, c)
                    for i in 0..<c {
                        let ref = Double(dx0[i]) + rs * (g[i] - gm - xh[i] * gxm)
                        #expect(abs(Double(dx[i]) - ref) <= yTol * (abs(ref) + 1), "path \(path) c \(c) dx[\(i)]")
                    }
                }
            }
        }
    }

    /// The column reductions (bias, LayerScale and LayerNorm parameter gradients) give, on every path, exactly
    /// the plain loop's sums (partial sum from 0, rows in order, each product and sum rounded), for widths around
    /// the vector and tile sizes, a row stride wider than the band, and an absent accumulator.
    @Test func columnReductionsEqualThePlainLoopBitForBit() {
        var rng = SeededRNG(seed: 9)
        for path in paths {
            for (rows, width, ld) in [(1, 1, 1), (3, 7, 9), (37, 16, 16), (29, 33, 40), (5, 513, 530), (17, 1100, 1100)] {
                let a = (0..<(rows * ld)).map { _ in Float(rng.normal()) }
                let b = (0..<(rows * ld)).map { _ in Float(rng.normal() * 3) }
                let mean = (0..<rows).map { _ in Float(rng.normal()) }, rstd = (0..<rows).map { _ in Float(rng.uniform(0.5, 2)) }
                let start = (0..<width).map { _ in Float(rng.normal()) }
                var sum = start, dot = start, dw = start, db = start
                for j in 0..<width {
                    var s: Float = 0, d: Float = 0, w: Float = 0, bb: Float = 0
                    for r in 0..<rows {
                        let v = a[r * ld + j], x = b[r * ld + j]
                        s += v; d += v * x; w += v * (x - mean[r]) * rstd[r]; bb += v
                    }
                    sum[j] += s; dot[j] += d; dw[j] += w; db[j] += bb
                }
                var gotSum = start, gotDot = start, gotDW = start, gotDB = start, onlyDB = start
                pg_column_sum_add_using(path, &gotSum, a, rows, ld, width)
                pg_column_dot_add_using(path, &gotDot, a, b, rows, ld, width)
                pg_layernorm_param_grads_using(path, &gotDW, &gotDB, a, b, mean, rstd, rows, ld, width)
                pg_layernorm_param_grads_using(path, nil, &onlyDB, a, b, mean, rstd, rows, ld, width)
                let shape = "path \(path) rows \(rows) width \(width) ld \(ld)"
                #expect(gotSum == sum, "\(shape): column sums")
                #expect(gotDot == dot, "\(shape): column dot products")
                #expect(gotDW == dw && gotDB == db, "\(shape): LayerNorm parameter gradients")
                #expect(onlyDB == db, "\(shape): dbias alone")
            }
        }
    }

    @Test func bothPathsAgreeClosely() {
        guard pg_vecmath_avx2() == 1 else { return }  // one path only on this CPU: nothing to compare
        var rng = SeededRNG(seed: 11)
        let x = (0..<333).map { _ in Float(rng.normal() * 5) }
        var a = [Float](repeating: 0, count: x.count), b = a
        pg_gelu_forward_using(0, &a, x, x.count)
        pg_gelu_forward_using(1, &b, x, x.count)
        // FMA rounding only: within 2e-6 · max(1, |x|) (the error bound of either path against Double).
        for i in x.indices { #expect(abs(a[i] - b[i]) <= 2e-6 * max(1, abs(x[i])), "GELU(\(x[i])): \(a[i]) vs \(b[i])") }
    }
}
