/// AutoAttack's step-size schedule for APGD (Croce & Hein 2020, `autopgd_base.py`), for `steps` = N iterations:
///
/// - the first checkpoint comes after `p₁ = max(⌊0.22·N⌋, 1)` steps, each later one `0.03·N` steps sooner than
///   the last (`max(⌊0.03·N⌋, 1)`), but never less than `max(⌊0.06·N⌋, 1)` steps after it;
/// - at a checkpoint that closes a window of `k` steps, an image's step is halved (and it restarts from its best
///   point) when the objective rose in at most `ρ·k` of those steps (ρ = 0.75), or when the step was not halved at
///   the last checkpoint and the best objective has not improved since.
///
/// N = 100: checkpoints after steps 22, 41, 57, 70, 80, 87, 93, 99.
public struct APGDSchedule: Sendable, Equatable {
    public let steps: Int
    /// Momentum: x ← P(x + a·(z − x) + (1 − a)·(x − x_prev)) with a = 0.75 (1 on the first step).
    public static let momentum: Float = 0.75
    /// ρ: the fraction of rising steps below which the window is called stalled.
    public static let rho: Double = 0.75

    public init(steps: Int) { self.steps = steps }

    public var firstWindow: Int { max(Int(0.22 * Double(steps)), 1) }
    public var decrement: Int { max(Int(0.03 * Double(steps)), 1) }
    public var minWindow: Int { max(Int(0.06 * Double(steps)), 1) }

    /// The window that follows one of length `k`.
    public func nextWindow(after k: Int) -> Int { max(k - decrement, minWindow) }

    /// Step counts (1-based) after which the step sizes are checked.
    public var checkpoints: [Int] {
        var out = [Int](), k = firstWindow, at = k
        while at <= steps { out.append(at); k = nextWindow(after: k); at += k }
        return out
    }

    /// Whether one image's step is halved at a checkpoint.
    ///
    /// - Parameters:
    ///   - window: the objective before the window and after each of its `k` steps (`k + 1` values, oldest first).
    ///   - best: the best objective so far; `bestAtLastCheck`: the best at the previous checkpoint (the start
    ///     point's objective at the first); `halvedAtLastCheck`: whether the step was halved there (true at the
    ///     first checkpoint, as in AutoAttack).
    public static func shouldHalve(window: [Float], best: Float, bestAtLastCheck: Float,
                                   halvedAtLastCheck: Bool) -> Bool {
        let k = window.count - 1
        var rises = 0
        for i in 0..<k where window[i + 1] > window[i] { rises += 1 }
        let oscillating = Double(rises) <= Double(k) * rho
        let noImprovement = !halvedAtLastCheck && bestAtLastCheck >= best
        return oscillating || noImprovement
    }
}
