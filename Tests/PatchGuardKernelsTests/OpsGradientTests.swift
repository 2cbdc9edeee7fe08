import PatchGuardCore
@testable import PatchGuardKernels
import Testing
import GradCheckSupport

/// Per-op gradient checks: production kernels at Double, central differences, tiny irregular shapes
/// (B = 2, N = 5, C = 12, NH = 3, P = 4), loss `L = Σ r·y` with fixed random `r`. Gradient buffers start with
/// random values so each check also proves that backward adds.
@Suite("Op gradients")
struct OpsGradientTests {
    let B = 2, N = 5, C = 12, NH = 3

    @Test func linear() {
        var rng = SeededRNG(seed: 1)
        let rows = B * N, ic = C, oc = 7
        let x = randomTensor([rows, ic], &rng), w = randomTensor([oc, ic], &rng), b = randomTensor([oc], &rng)
        let y = Tensor<Double>(shape: [rows, oc]), r = randomTensor([rows, oc], &rng)
        func loss() -> Double {
            Linear.forward(y.data, x.data, w.data, b.data, rows: rows, inFeatures: ic, outFeatures: oc)
            return weightedSum(r, y)
        }
        _ = loss()
        let dX = AccumulatingGrad([rows, ic], &rng), dW = AccumulatingGrad([oc, ic], &rng)
        let dB = AccumulatingGrad([oc], &rng)
        Linear.backward(dX.grad.data, dW.grad.data, dB.grad.data, r.data, x.data, w.data,
                        rows: rows, inFeatures: ic, outFeatures: oc)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
        expectGradient("dWeight", of: w, analytic: dW.added, loss: loss)
        expectGradient("dBias", of: b, analytic: dB.added, loss: loss)
        // Against the naive product.
        let ref = Tensor<Double>(shape: [rows, oc])
        naiveMatmul(ref.data, x.data, w.data, m: rows, n: oc, k: ic, transB: true)
        for i in 0..<rows { for o in 0..<oc { ref[i * oc + o] += b[o] } }
        _ = loss()
        #expect(maxAbsDiff(y.data, ref.data, count: y.count) < 1e-12)
    }

    @Test func layerNorm() {
        var rng = SeededRNG(seed: 2)
        let rows = B * N
        let x = randomTensor([rows, C], &rng, std: 2, mean: 0.5), w = randomTensor([C], &rng, mean: 1)
        let b = randomTensor([C], &rng)
        let y = Tensor<Double>(shape: [rows, C]), mean = Tensor<Double>(shape: [rows]), rstd = Tensor<Double>(shape: [rows])
        let r = randomTensor([rows, C], &rng)
        func loss() -> Double {
            LayerNorm.forward(y.data, mean.data, rstd.data, x.data, w.data, b.data, rows: rows, channels: C, eps: 1e-6)
            return weightedSum(r, y)
        }
        _ = loss()
        // Normalised rows: mean 0, variance 1 before the affine part (check with w = 1, b = 0 semantics).
        for row in 0..<rows {
            var s = 0.0
            for i in 0..<C { s += (y[row * C + i] - b[i]) / w[i] }
            #expect(abs(s) < 1e-9)
        }
        let dX = AccumulatingGrad([rows, C], &rng), dW = AccumulatingGrad([C], &rng), dB = AccumulatingGrad([C], &rng)
        LayerNorm.backward(dX.grad.data, dW.grad.data, dB.grad.data, r.data, x.data, w.data, mean.data, rstd.data,
                           rows: rows, channels: C)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
        expectGradient("dWeight", of: w, analytic: dW.added, loss: loss)
        expectGradient("dBias", of: b, analytic: dB.added, loss: loss)
    }

    @Test func gelu() {
        var rng = SeededRNG(seed: 3)
        let n = B * N * C
        let x = randomTensor([n], &rng, std: 2), y = Tensor<Double>(shape: [n]), r = randomTensor([n], &rng)
        func loss() -> Double { GELU.forward(y.data, x.data, count: n); return weightedSum(r, y) }
        _ = loss()
        // Exact-erf values (not the tanh approximation): GELU(1) = 0.8413447460685429, GELU(-0.5) = -0.15426876936299347.
        let probe = Tensor<Double>(shape: [2], values: [1, -0.5]), out = Tensor<Double>(shape: [2])
        GELU.forward(out.data, probe.data, count: 2)
        #expect(abs(out[0] - 0.8413447460685429) < 1e-15 && abs(out[1] + 0.15426876936299347) < 1e-15)
        let dX = AccumulatingGrad([n], &rng)
        GELU.backward(dX.grad.data, r.data, x.data, count: n)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
    }

    @Test func softmax() {
        var rng = SeededRNG(seed: 4)
        let rows = B * NH, len = N
        let x = randomTensor([rows, len], &rng, std: 2), y = Tensor<Double>(shape: [rows, len])
        let r = randomTensor([rows, len], &rng)
        func loss() -> Double { Softmax.forward(y.data, x.data, rows: rows, length: len); return weightedSum(r, y) }
        _ = loss()
        for row in 0..<rows {
            var s = 0.0
            for j in 0..<len { s += y[row * len + j] }
            #expect(abs(s - 1) < 1e-12)
        }
        let dX = AccumulatingGrad([rows, len], &rng)
        Softmax.backward(dX.grad.data, r.data, y.data, rows: rows, length: len)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
    }

    @Test func attention() {
        var rng = SeededRNG(seed: 5)
        let qkv = randomTensor([B, N, 3 * C], &rng)
        let out = Tensor<Double>(shape: [B, N, C]), probs = Tensor<Double>(shape: [B, NH, N, N])
        let r = randomTensor([B, N, C], &rng), rP = randomTensor([B, NH, N, N], &rng)
        // The loss reads both the output and the probabilities (the dProbs path).
        func loss() -> Double {
            Attention.forward(out.data, probs.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH)
            return weightedSum(r, out) + weightedSum(rP, probs)
        }
        _ = loss()
        let refOut = Tensor<Double>(shape: [B, N, C]), refP = Tensor<Double>(shape: [B, NH, N, N])
        Attention.naiveForward(refOut.data, refP.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH)
        #expect(maxAbsDiff(out.data, refOut.data, count: out.count) < 1e-12)
        #expect(maxAbsDiff(probs.data, refP.data, count: probs.count) < 1e-12)
        let dQKV = AccumulatingGrad([B, N, 3 * C], &rng), scratch = Tensor<Double>(shape: [B, NH, N, N])
        Attention.backward(dQKV.grad.data, scratch.data, r.data, rP.data, qkv.data, probs.data,
                           batch: B, tokens: N, channels: C, heads: NH)
        expectGradient("dQKV (output + probabilities)", of: qkv, analytic: dQKV.added, loss: loss)

        // Without the extra dProbs input, only the output path.
        func lossOut() -> Double {
            Attention.forward(out.data, probs.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH)
            return weightedSum(r, out)
        }
        _ = lossOut()
        let dQKV2 = AccumulatingGrad([B, N, 3 * C], &rng)
        Attention.backward(dQKV2.grad.data, scratch.data, r.data, nil, qkv.data, probs.data,
                           batch: B, tokens: N, channels: C, heads: NH)
        expectGradient("dQKV (output only)", of: qkv, analytic: dQKV2.added, loss: lossOut)
    }

    /// Attention dropout (`nn.MultiheadAttention(dropout=p)`): values mixed by `P ⊙ mask`, `probs` undropped.
    @Test(arguments: [true, false]) func attentionWithDropout(withProbsGradient: Bool) {
        var rng = SeededRNG(seed: 15)
        let qkv = randomTensor([B, N, 3 * C], &rng)
        let out = Tensor<Double>(shape: [B, N, C]), probs = Tensor<Double>(shape: [B, NH, N, N])
        let dropped = Tensor<Double>(shape: [B, NH, N, N]), mask = Tensor<Double>(shape: [B, NH, N, N])
        Dropout.drawMask(mask.data, count: mask.count, p: 0.4, using: &rng)
        #expect(mask.array.contains(0) && mask.array.contains(1 / 0.6))
        let r = randomTensor([B, N, C], &rng), rP = randomTensor([B, NH, N, N], &rng)
        func loss() -> Double {
            Attention.forward(out.data, probs.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH,
                              dropMask: mask.data, dropped: dropped.data)
            return weightedSum(r, out) + (withProbsGradient ? weightedSum(rP, probs) : 0)
        }
        _ = loss()
        // Against the naive attention: the same probabilities; the output mixes v with P ⊙ mask.
        let refOut = Tensor<Double>(shape: [B, N, C]), refP = Tensor<Double>(shape: [B, NH, N, N])
        Attention.naiveForward(refOut.data, refP.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH)
        #expect(maxAbsDiff(probs.data, refP.data, count: probs.count) < 1e-12)
        let hs = C / NH
        var worst = 0.0
        for b in 0..<B { for h in 0..<NH { for i in 0..<N { for d in 0..<hs {
            var sum = 0.0
            for j in 0..<N {
                let pIdx = ((b * NH + h) * N + i) * N + j
                sum += refP.data[pIdx] * mask.data[pIdx] * qkv.data[(b * N + j) * 3 * C + 2 * C + h * hs + d]
            }
            worst = max(worst, abs(sum - out.data[(b * N + i) * C + h * hs + d]))
        }}}}
        #expect(worst < 1e-12)
        let dQKV = AccumulatingGrad([B, N, 3 * C], &rng), scratch = Tensor<Double>(shape: [B, NH, N, N])
        Attention.backward(dQKV.grad.data, scratch.data, r.data, withProbsGradient ? rP.data : nil, qkv.data,
                           probs.data, batch: B, tokens: N, channels: C, heads: NH,
                           dropMask: mask.data, dropped: dropped.data)
        expectGradient("dQKV (attention dropout)", of: qkv, analytic: dQKV.added, loss: loss)
    }

    @Test(arguments: [true, false]) func residual(withGamma: Bool) {
        var rng = SeededRNG(seed: 6)
        let rows = B * N
        let a = randomTensor([rows, C], &rng), x = randomTensor([rows, C], &rng), g = randomTensor([C], &rng)
        let y = Tensor<Double>(shape: [rows, C]), r = randomTensor([rows, C], &rng)
        func loss() -> Double {
            Residual.forward(y.data, a.data, x.data, withGamma ? g.data : nil, rows: rows, channels: C)
            return weightedSum(r, y)
        }
        _ = loss()
        let dA = AccumulatingGrad([rows, C], &rng), dX = AccumulatingGrad([rows, C], &rng), dG = AccumulatingGrad([C], &rng)
        Residual.backward(dA.grad.data, dX.grad.data, withGamma ? dG.grad.data : nil, r.data, x.data,
                          withGamma ? g.data : nil, rows: rows, channels: C)
        expectGradient("dA", of: a, analytic: dA.added, loss: loss)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
        if withGamma { expectGradient("dGamma", of: g, analytic: dG.added, loss: loss) }
    }

    @Test func inputNormalization() {
        var rng = SeededRNG(seed: 7)
        let hw = 7 * 5
        let x = uniformTensor([B, 3, hw], &rng, lo: 0, hi: 1), y = Tensor<Double>(shape: [B, 3, hw])
        let r = randomTensor([B, 3, hw], &rng)
        func loss() -> Double { InputNormalization.forward(y.data, x.data, batch: B, pixels: hw); return weightedSum(r, y) }
        _ = loss()
        #expect(abs(y[hw] - (x[hw] - 0.456) / 0.224) < 1e-12)  // channel 1 of image 0
        let dX = AccumulatingGrad([B, 3, hw], &rng)
        InputNormalization.backward(dX.grad.data, r.data, batch: B, pixels: hw)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
    }

    @Test func patchEmbed() {
        var rng = SeededRNG(seed: 8)
        let P = 4, H = 8, W = 12, ci = 3, np = (H / P) * (W / P), k = ci * P * P
        let x = randomTensor([B, ci, H, W], &rng), w = randomTensor([C, ci, P, P], &rng), b = randomTensor([C], &rng)
        let y = Tensor<Double>(shape: [B, np, C]), cols = Tensor<Double>(shape: [B, np, k])
        let r = randomTensor([B, np, C], &rng)
        func loss() -> Double {
            PatchEmbed.forward(y.data, cols.data, x.data, w.data, b.data, batch: B, inChannels: ci, height: H,
                               width: W, patch: P, channels: C)
            return weightedSum(r, y)
        }
        _ = loss()
        // Direct convolution reference for one output: image 1, patch (gy 1, gx 2), channel 5.
        var ref = b[5]
        for c in 0..<ci { for ky in 0..<P { for kx in 0..<P {
            ref += w[((5 * ci + c) * P + ky) * P + kx] * x[((1 * ci + c) * H + 1 * P + ky) * W + 2 * P + kx]
        } } }
        #expect(abs(y[(1 * np + 1 * (W / P) + 2) * C + 5] - ref) < 1e-12)
        let dX = AccumulatingGrad([B, ci, H, W], &rng), dW = AccumulatingGrad([C, ci, P, P], &rng)
        let dB = AccumulatingGrad([C], &rng), dCols = Tensor<Double>(shape: [B, np, k])
        PatchEmbed.backward(dX.grad.data, dW.grad.data, dB.grad.data, dCols.data, r.data, cols.data, w.data,
                            batch: B, inChannels: ci, height: H, width: W, patch: P, channels: C)
        expectGradient("dX", of: x, analytic: dX.added, loss: loss)
        expectGradient("dWeight", of: w, analytic: dW.added, loss: loss)
        expectGradient("dBias", of: b, analytic: dB.added, loss: loss)
    }

    @Test(arguments: [(0, false), (2, false), (2, true)]) func tokenEmbed(registers R: Int, noEmbedClass: Bool) {
        var rng = SeededRNG(seed: 9)
        let np = 4, n = 1 + R + np, npos = noEmbedClass ? np : n
        let patches = randomTensor([B, np, C], &rng), cls = randomTensor([C], &rng)
        let reg = randomTensor([max(R, 1), C], &rng), pos = randomTensor([npos, C], &rng)
        let y = Tensor<Double>(shape: [B, n, C]), r = randomTensor([B, n, C], &rng)
        func loss() -> Double {
            TokenEmbed.forward(y.data, patches.data, cls.data, R > 0 ? reg.data : nil, pos.data, batch: B,
                               patches: np, registers: R, channels: C, noEmbedClass: noEmbedClass)
            return weightedSum(r, y)
        }
        _ = loss()
        // Layout: [cls, reg…, patches]; a register token gets a position only when noEmbedClass is false.
        #expect(y[(1 * n + 0) * C + 3] == cls[3] + (noEmbedClass ? 0 : pos[3]))
        if R > 0 { #expect(y[(1 * n + 1) * C + 3] == reg[3] + (noEmbedClass ? 0 : pos[C + 3])) }
        let dP = AccumulatingGrad([B, np, C], &rng), dC = AccumulatingGrad([C], &rng)
        let dR = AccumulatingGrad([max(R, 1), C], &rng), dPos = AccumulatingGrad([npos, C], &rng)
        TokenEmbed.backward(dP.grad.data, dC.grad.data, R > 0 ? dR.grad.data : nil, dPos.grad.data, r.data,
                            batch: B, patches: np, registers: R, channels: C, noEmbedClass: noEmbedClass)
        expectGradient("dPatches", of: patches, analytic: dP.added, loss: loss)
        expectGradient("dCls", of: cls, analytic: dC.added, loss: loss)
        if R > 0 { expectGradient("dReg", of: reg, analytic: dR.added, loss: loss) }
        expectGradient("dPos", of: pos, analytic: dPos.added, loss: loss)
    }
}

/// The fused fp32 attention forward (AVX-512: kᵀ and v packed once per head, scores → softmax → output per block of
/// `Attention.fusedRows` query rows) against the naive Double loops at a size with several row blocks and a tail
/// (N = 2·64 + 5 tokens), head size 32 and strided q, k, v. Tolerance: fp32 dot products of 32 and 133 terms of
/// O(1) values, relative to the largest output.
@Suite(.enabled(if: SmallGEMM.enabled, "needs AVX-512F"))
struct FusedAttentionTests {
    @Test func fusedForwardMatchesTheNaiveLoops() {
        let B = 2, N = 2 * Attention.fusedRows + 5, C = 64, NH = 2
        var rng = SeededRNG(seed: 9)
        let qkvD = randomTensor([B, N, 3 * C], &rng, std: 0.5), qkv = qkvD.converted(to: Float.self)
        let out = Tensor<Float>(shape: [B, N, C]), probs = Tensor<Float>(shape: [B, NH, N, N])
        out.buffer.update(repeating: .nan); probs.buffer.update(repeating: .nan)
        Attention.forward(out.data, probs.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH)
        let refOut = Tensor<Double>(shape: [B, N, C]), refP = Tensor<Double>(shape: [B, NH, N, N])
        Attention.naiveForward(refOut.data, refP.data, qkvD.data, batch: B, tokens: N, channels: C, heads: NH)
        func worst(_ a: Tensor<Float>, _ b: Tensor<Double>) -> Double {
            let scale = b.array.map(abs).max()!
            return (0..<a.count).map { abs(Double(a[$0]) - b[$0]) / scale }.max()!
        }
        #expect(worst(out, refOut) < 1e-5, "output: \(worst(out, refOut))")
        #expect(worst(probs, refP) < 1e-5, "probabilities: \(worst(probs, refP))")
    }

    /// The fused fp32 backward against the (unfused) Double backward on the same values, with and without a
    /// gradient on the probabilities, added into a non-zero dQKV.
    @Test(arguments: [false, true])
    func fusedBackwardMatchesDouble(withProbsGradient: Bool) {
        let B = 2, N = 2 * Attention.fusedRows + 5, C = 64, NH = 2
        var rng = SeededRNG(seed: 10)
        let qkvD = randomTensor([B, N, 3 * C], &rng, std: 0.5), dOutD = randomTensor([B, N, C], &rng)
        let dPD = randomTensor([B, NH, N, N], &rng), startD = randomTensor([B, N, 3 * C], &rng)
        let outD = Tensor<Double>(shape: [B, N, C]), probsD = Tensor<Double>(shape: [B, NH, N, N])
        Attention.forward(outD.data, probsD.data, qkvD.data, batch: B, tokens: N, channels: C, heads: NH)
        let dQKVD = startD.copy(), scratchD = Tensor<Double>(shape: [B, NH, N, N])
        Attention.backward(dQKVD.data, scratchD.data, dOutD.data, withProbsGradient ? dPD.data : nil, qkvD.data,
                           probsD.data, batch: B, tokens: N, channels: C, heads: NH)
        let qkv = qkvD.converted(to: Float.self), dOut = dOutD.converted(to: Float.self)
        let dP = dPD.converted(to: Float.self), dQKV = startD.converted(to: Float.self)
        let out = Tensor<Float>(shape: [B, N, C]), probs = Tensor<Float>(shape: [B, NH, N, N])
        let scratch = Tensor<Float>(shape: [B, NH, N, N], repeating: .nan)
        Attention.forward(out.data, probs.data, qkv.data, batch: B, tokens: N, channels: C, heads: NH)
        Attention.backward(dQKV.data, scratch.data, dOut.data, withProbsGradient ? dP.data : nil, qkv.data,
                           probs.data, batch: B, tokens: N, channels: C, heads: NH)
        let scale = dQKVD.array.map(abs).max()!
        let worst = (0..<dQKV.count).map { abs(Double(dQKV[$0]) - dQKVD[$0]) / scale }.max()!
        #expect(worst < 1e-5, "dQKV: \(worst) of its scale")
    }
}
