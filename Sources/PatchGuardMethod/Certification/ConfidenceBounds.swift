import Foundation

// The statistics behind certification, all in Double:
//
//   Φ(x)  = ½·erfc(−x/√2)                         standard normal CDF
//   Φ⁻¹(p)                                         Acklam's rational approximation, refined by one Halley step
//                                                  on Φ (relative error ~1e-15 on (0, 1))
//   I_x(a, b)                                      regularised incomplete beta (Lentz continued fraction)
//   Clopper–Pearson                                exact binomial interval: [B⁻¹(α/2; k, n−k+1), B⁻¹(1−α/2; k+1, n−k)]
//   Hoeffding                                      mean ± √(ln(2/α)/(2n)) for values in [0, 1]
//   empirical Bernstein (Maurer & Pontil 2009)     mean ± (√(2·V·ln(4/α)/n) + 7·ln(4/α)/(3(n−1))), V the unbiased
//                                                  sample variance, values in [0, 1]
//
// Every interval is two-sided with total miss probability ≤ α (α/2 per side), clipped to [0, 1].

/// A two-sided confidence interval for a mean in [0, 1].
public struct MeanInterval: Sendable, Equatable, Codable {
    public var lower: Double
    public var upper: Double
    public init(lower: Double, upper: Double) { self.lower = lower; self.upper = upper }
    public var width: Double { upper - lower }
    public func contains(_ v: Double) -> Bool { lower <= v && v <= upper }
}

public enum ConfidenceBounds {
    // MARK: - Normal distribution

    /// Φ(x), the standard normal CDF.
    public static func normalCDF(_ x: Double) -> Double {
        if x == .infinity { return 1 }
        if x == -.infinity { return 0 }
        return 0.5 * erfc(-x / 2.0.squareRoot())
    }

    /// Φ⁻¹(p): −∞ at 0, +∞ at 1, NaN outside [0, 1]. Acklam's approximation (relative error 1.15e-9) refined by
    /// one Halley step.
    public static func normalQuantile(_ p: Double) -> Double {
        guard p >= 0, p <= 1, !p.isNaN else { return .nan }
        if p == 0 { return -.infinity }
        if p == 1 { return .infinity }
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                 -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        var x: Double
        if p < low {
            let q = (-2 * log(p)).squareRoot()
            x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        } else if p <= 1 - low {
            let q = p - 0.5, r = q * q
            x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
                / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        } else {
            let q = (-2 * log1p(-p)).squareRoot()
            x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        // Halley step on Φ(x) − p (the upper tail is computed on 1 − p to keep its precision).
        let e = p < 0.5 ? normalCDF(x) - p : (1 - p) - normalCDF(-x)
        let u = e * (2 * Double.pi).squareRoot() * exp(x * x / 2)
        x -= u / (1 + x * u / 2)
        return x
    }

    // MARK: - Beta distribution

    /// I_x(a, b), the regularised incomplete beta function (the Beta(a, b) CDF at x), for a, b > 0.
    public static func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let lnFront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x)
        // The continued fraction converges fast for x < (a+1)/(a+b+2); otherwise use the symmetry.
        if x < (a + 1) / (a + b + 2) { return exp(lnFront) * betaContinuedFraction(x, a, b) / a }
        return 1 - exp(lnFront) * betaContinuedFraction(1 - x, b, a) / b
    }

    /// The continued fraction of I_x(a, b) by the modified Lentz method (Numerical Recipes `betacf`).
    static func betaContinuedFraction(_ x: Double, _ a: Double, _ b: Double) -> Double {
        let tiny = 1e-300, eps = 1e-15
        let qab = a + b, qap = a + 1, qam = a - 1
        var c = 1.0, d = 1 - qab * x / qap
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        for m in 1...10_000 {
            let m = Double(m), m2 = 2 * m
            var aa = m * (b - m) * x / ((qam + m2) * (a + m2))
            d = 1 + aa * d; if abs(d) < tiny { d = tiny }
            c = 1 + aa / c; if abs(c) < tiny { c = tiny }
            d = 1 / d; h *= d * c
            aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
            d = 1 + aa * d; if abs(d) < tiny { d = tiny }
            c = 1 + aa / c; if abs(c) < tiny { c = tiny }
            d = 1 / d
            let del = d * c
            h *= del
            if abs(del - 1) < eps { break }
        }
        return h
    }

    /// The q-quantile of Beta(a, b): bisection on ``regularizedIncompleteBeta(_:a:b:)`` (monotone in x) to 1e-14.
    public static func betaQuantile(_ q: Double, a: Double, b: Double) -> Double {
        if q <= 0 { return 0 }
        if q >= 1 { return 1 }
        var lo = 0.0, hi = 1.0
        for _ in 0..<100 {
            let mid = (lo + hi) / 2
            if regularizedIncompleteBeta(mid, a: a, b: b) < q { lo = mid } else { hi = mid }
            if hi - lo < 1e-14 { break }
        }
        return (lo + hi) / 2
    }

    // MARK: - Intervals

    /// The Clopper–Pearson interval for the success probability of a Bernoulli variable after `successes` of
    /// `trials`: exact, P(miss) ≤ α for every true probability (α/2 per side).
    public static func clopperPearson(successes k: Int, trials n: Int, alpha: Double) -> MeanInterval {
        precondition(n >= 1 && k >= 0 && k <= n, "Clopper–Pearson: \(k) successes of \(n) trials")
        let lower = k == 0 ? 0 : betaQuantile(alpha / 2, a: Double(k), b: Double(n - k + 1))
        let upper = k == n ? 1 : betaQuantile(1 - alpha / 2, a: Double(k + 1), b: Double(n - k))
        return MeanInterval(lower: lower, upper: upper)
    }

    /// Hoeffding's interval for the mean of `n` independent values in [0, 1]: `mean ± √(ln(2/α)/(2n))`.
    public static func hoeffding(mean: Double, count n: Int, alpha: Double) -> MeanInterval {
        let h = (log(2 / alpha) / (2 * Double(n))).squareRoot()
        return MeanInterval(lower: max(0, mean - h), upper: min(1, mean + h))
    }

    /// The empirical-Bernstein interval (Maurer & Pontil 2009, Theorem 4, each side at α/2) for the mean of `n ≥ 2`
    /// independent values in [0, 1] with unbiased sample variance `variance`.
    public static func empiricalBernstein(mean: Double, variance: Double, count n: Int, alpha: Double) -> MeanInterval {
        precondition(n >= 2, "empirical Bernstein needs at least 2 values")
        let h = empiricalBernsteinHalfWidth(variance: variance, count: n, alpha: alpha)
        return MeanInterval(lower: max(0, mean - h), upper: min(1, mean + h))
    }

    static func empiricalBernsteinHalfWidth(variance: Double, count n: Int, alpha: Double) -> Double {
        let l = log(4 / alpha), nd = Double(n)
        return (2 * max(0, variance) * l / nd).squareRoot() + 7 * l / (3 * (nd - 1))
    }

    /// Mean and unbiased variance (Welford, in Double).
    public static func meanAndVariance(_ values: [Double]) -> (mean: Double, variance: Double) {
        var mean = 0.0, m2 = 0.0
        for (i, v) in values.enumerated() {
            let d = v - mean
            mean += d / Double(i + 1)
            m2 += d * (v - mean)
        }
        return (mean, values.count > 1 ? m2 / Double(values.count - 1) : 0)
    }
}
