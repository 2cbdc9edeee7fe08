import PatchGuardCore

/// Per-patch binary cross-entropy with logits, summed over patches and averaged over images:
/// `L = (1/B) Σ_b Σ_p [max(x,0) − x·y + log(1 + e^{−|x|})]` (the numerically stable form of BCE-with-logits).
///
/// Shape legend: `B` images, `Np` patches. Labels are 0 (normal) or 1 (anomalous) — any value in [0,1] works.
/// Backward *adds* `dLogits += w·(σ(x) − y)/B`, `w` the gradient of the total loss w.r.t. this term.
public enum PatchBCE {
    /// - Parameters: logits: (B, Np); labels: (B, Np). Returns the loss.
    @inlinable
    public static func forward<T: NNScalar>(_ logits: UnsafePointer<T>, _ labels: UnsafePointer<T>,
                                            batch B: Int, patches Np: Int) -> Double {
        var total = 0.0
        for i in 0..<(B * Np) {
            let x = Double(logits[i]), y = Double(labels[i])
            total += max(x, 0) - x * y + Double.log(1 + Double.exp(-abs(x)))
        }
        return total / Double(B)
    }

    /// - Parameters: dLogits: (B, Np) added into; logits, labels: (B, Np); weight: upstream gradient.
    @inlinable
    public static func backward<T: NNScalar>(_ dLogits: UnsafeMutablePointer<T>, _ logits: UnsafePointer<T>,
                                             _ labels: UnsafePointer<T>, batch B: Int, patches Np: Int,
                                             weight: T = 1) {
        let scale = weight / T(B)
        for i in 0..<(B * Np) {
            let sig = 1 / (1 + T.exp(-logits[i]))
            dLogits[i] += scale * (sig - labels[i])
        }
    }
}

/// PatchGuard's attention regulariser for one layer: `KL(U ‖ A)` on the patch-to-patch block of the attention
/// probabilities, exactly as PyTorch's `F.kl_div(A.log(), U, reduction="mean")`:
/// `R = mean over (B, NH, Np, Np) of U·(log U − log A)`, with `U = 1/Np`, `A = probs[:, :, s:, s:]` (the first
/// `s` prefix tokens — class and register tokens — dropped, *not* renormalised). Lower R = attention closer to
/// uniform = higher attention degree.
///
/// Shape legend: `B` batch, `NH` heads, `N = s + Np` tokens. `A` is clamped below at 1e-30 before the log (Float
/// underflow would otherwise give an infinite loss; a probability that small contributes ≤ U·69 to the sum).
/// Backward *adds* `dProbs[.., i, j] += −w·U/(A·count)` on the patch block; prefix rows/columns get nothing.
public enum AttentionKL {
    @inlinable
    public static func forward<T: NNScalar>(_ probs: UnsafePointer<T>, batch B: Int, heads NH: Int, tokens N: Int,
                                            prefix s: Int) -> Double {
        let np = N - s
        let u = 1 / Double(np), logU = Double.log(u)
        var total = 0.0
        for bh in 0..<(B * NH) {
            let base = probs + bh * N * N
            for i in s..<N {
                for j in s..<N { total += u * (logU - Double.log(max(Double(base[i * N + j]), 1e-30))) }
            }
        }
        return total / Double(B * NH * np * np)
    }

    /// - Parameters: dProbs: (B, NH, N, N) added into; probs: (B, NH, N, N); weight: the layer's weight.
    @inlinable
    public static func backward<T: NNScalar>(_ dProbs: UnsafeMutablePointer<T>, _ probs: UnsafePointer<T>,
                                             batch B: Int, heads NH: Int, tokens N: Int, prefix s: Int,
                                             weight: Double) {
        let np = N - s
        let coef = T(-weight / Double(np) / Double(B * NH * np * np))
        for bh in 0..<(B * NH) {
            let p = probs + bh * N * N, d = dProbs + bh * N * N
            for i in s..<N {
                for j in s..<N { d[i * N + j] += coef / max(p[i * N + j], T(1e-30)) }
            }
        }
    }
}
