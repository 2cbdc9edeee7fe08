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
/// probabilities, exactly as the official `Loss.reg`: `F.kl_div(log(A + 1e-8), U, reduction="mean")`:
/// `R = mean over (B, NH, Np, Np) of U·(log U − log(A + ε))`, ε = ``logEpsilon`` = 1e-8, `U = 1/Np`,
/// `A = probs[:, :, s:, s:]` (the first `s` prefix tokens — class and register tokens — dropped, *not*
/// renormalised). Lower R = attention closer to uniform = higher attention degree. The mean over every element is
/// KL(U ‖ A_row)/Np averaged over rows (`reduction="mean"`, not `"batchmean"`), as the official code has it.
///
/// Shape legend: `B` batch, `NH` heads, `N = s + Np` tokens. The ε caps an entry's term at U·(log U + 18.4) and
/// makes its gradient through the softmax vanish (`A/(A + ε) → 0`) below ~1e-8: a probability that underflowed no
/// longer counts up to U·(log U + 69) as with the clamp at 1e-30 used before (our only departure from the
/// official loss, found by OfficialDiscriminatorParityTests).
/// Backward *adds* `dProbs[.., i, j] += −w·U/((A + ε)·count)` on the patch block; prefix rows/columns get nothing.
public enum AttentionKL {
    /// ε in `log(A + ε)`, the official code's.
    public static let logEpsilon = 1e-8

    @inlinable
    public static func forward<T: NNScalar>(_ probs: UnsafePointer<T>, batch B: Int, heads NH: Int, tokens N: Int,
                                            prefix s: Int) -> Double {
        let np = N - s
        let u = 1 / Double(np), logU = Double.log(u)
        var total = 0.0
        for bh in 0..<(B * NH) {
            let base = probs + bh * N * N
            for i in s..<N {
                for j in s..<N { total += u * (logU - Double.log(Double(base[i * N + j]) + logEpsilon)) }
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
        let coef = T(-weight / Double(np) / Double(B * NH * np * np)), eps = T(logEpsilon)
        for bh in 0..<(B * NH) {
            let p = probs + bh * N * N, d = dProbs + bh * N * N
            for i in s..<N {
                for j in s..<N { d[i * N + j] += coef / (p[i * N + j] + eps) }
            }
        }
    }
}
