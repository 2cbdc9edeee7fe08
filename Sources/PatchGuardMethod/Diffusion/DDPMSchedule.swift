import PatchGuardCore

/// The DDPM forward process (Ho et al. 2020) with a linear β schedule: `β_t` evenly from `betaStart` to `betaEnd`
/// over `T` steps (diffusers `DDPMScheduler(beta_schedule="linear")`: 1e-4 … 0.02, T = 1000),
/// `ᾱ_t = Π_{s ≤ t} (1 − β_s)`, and `q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I)`. Timesteps are 0-based as in diffusers.
public struct DDPMSchedule: Sendable, Equatable {
    public let steps: Int
    public let betas: [Double]
    public let alphaBars: [Double]

    public init(steps: Int = 1000, betaStart: Double = 1e-4, betaEnd: Double = 0.02) throws {
        guard steps >= 2, betaStart > 0, betaEnd < 1, betaStart <= betaEnd else {
            throw PatchGuardError.invalidArgument(
                "DDPM schedule: need T ≥ 2 and 0 < β_start ≤ β_end < 1, got T = \(steps), β = \(betaStart)…\(betaEnd)")
        }
        self.steps = steps
        betas = (0..<steps).map { betaStart + (betaEnd - betaStart) * Double($0) / Double(steps - 1) }
        var a = 1.0
        alphaBars = betas.map { a *= 1 - $0; return a }
    }

    /// `(√ᾱ_t, √(1 − ᾱ_t))`.
    public func coefficients(_ t: Int) -> (signal: Double, noise: Double) {
        (alphaBars[t].squareRoot(), (1 - alphaBars[t]).squareRoot())
    }
}
