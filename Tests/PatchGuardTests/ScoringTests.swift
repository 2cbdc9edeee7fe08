import Foundation
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs
import Testing

/// Image scores and pixel maps: top-k mean, PyTorch-exact bilinear upsampling, reflect-padded Gaussian smoothing.
@Suite struct ScoringTests {
    func expectClose(_ a: [Float], _ b: [Float], tol: Float = 1e-6, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.count == b.count, "lengths \(a.count) vs \(b.count)", sourceLocation: sourceLocation)
        var worst: Float = 0, at = -1
        for i in 0..<min(a.count, b.count) where abs(a[i] - b[i]) > worst { worst = abs(a[i] - b[i]); at = i }
        #expect(worst <= tol, "max |Δ| = \(worst) at \(at)", sourceLocation: sourceLocation)
    }

    // MARK: top-k

    @Test func topKMeanAndIndices() throws {
        let v: [Float] = [1, 5, 3, 9, -2, 7]
        #expect(try topKMean(v, k: 3) == 7)  // (9 + 7 + 5) / 3
        #expect(try topKMean(v, k: 1) == 9)
        #expect(abs(try topKMean(v, k: 6) - 23.0 / 6) < 1e-6)
        #expect(try v.withUnsafeBufferPointer { try topKIndices($0, k: 3) } == [3, 5, 1])
        // Ties: the lower index first, deterministic.
        let t: [Float] = [2, 4, 4, 1, 4]
        #expect(try t.withUnsafeBufferPointer { try topKIndices($0, k: 2) } == [1, 2])
        // Negative logits only.
        #expect(try topKMean([-3, -1, -2, -8], k: 2) == -1.5)
        #expect(throws: PatchGuardError.self) { try topKMean(v, k: 0) }
        #expect(throws: PatchGuardError.self) { try topKMean(v, k: 7) }
    }

    // MARK: bilinear

    /// 2×2 → 4×4, worked by hand with PyTorch's align_corners=False rule: scale = 2/4 = ½,
    /// src(d) = max(0, (d + ½)·½ − ½) = 0, 0.25, 0.75, 1.25 for d = 0…3; i0 = ⌊src⌋, i1 = min(i0 + 1, 1).
    /// Columns of row [1, 2]: 1, 0.75·1 + 0.25·2 = 1.25, 0.25·1 + 0.75·2 = 1.75, and src 1.25 → i0 = i1 = 1 → 2.
    /// Rows mix [1, 2] and [3, 4] with the same weights. (`F.interpolate(torch.tensor([[[[1.,2.],[3.,4.]]]]),
    /// size=(4,4), mode="bilinear", align_corners=False)` prints exactly this.)
    @Test func bilinearMatchesPyTorchByHand() throws {
        let out = try bilinearUpsample([1, 2, 3, 4], inHeight: 2, inWidth: 2, outHeight: 4, outWidth: 4)
        expectClose(out, [1.0, 1.25, 1.75, 2.0,
                          1.5, 1.75, 2.25, 2.5,
                          2.5, 2.75, 3.25, 3.5,
                          3.0, 3.25, 3.75, 4.0])
    }

    /// Non-square and non-integer scale against the formula written out directly (2×3 → 5×7).
    @Test func bilinearMatchesFormulaNonSquare() throws {
        let inp: [Float] = [0.5, -1, 2, 3, 0.25, -4]
        let (ih, iw, oh, ow) = (2, 3, 5, 7)
        let out = try bilinearUpsample(inp, inHeight: ih, inWidth: iw, outHeight: oh, outWidth: ow)
        func taps(_ d: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Double) {
            let src = max(0, (Double(d) + 0.5) * Double(inSize) / Double(outSize) - 0.5)
            let i0 = Int(src.rounded(.down))
            return (i0, min(i0 + 1, inSize - 1), src - Double(i0))
        }
        var ref = [Float]()
        for y in 0..<oh {
            let (y0, y1, ly) = taps(y, ih, oh)
            for x in 0..<ow {
                let (x0, x1, lx) = taps(x, iw, ow)
                let v = (1 - ly) * ((1 - lx) * Double(inp[y0 * iw + x0]) + lx * Double(inp[y0 * iw + x1]))
                    + ly * ((1 - lx) * Double(inp[y1 * iw + x0]) + lx * Double(inp[y1 * iw + x1]))
                ref.append(Float(v))
            }
        }
        expectClose(out, ref, tol: 1e-6)
        // Same size is the identity; shrinking by 2 with align_corners=False averages 2×2 blocks.
        expectClose(try bilinearUpsample(inp, inHeight: 2, inWidth: 3, outHeight: 2, outWidth: 3), inp)
        let four: [Float] = [1, 3, 5, 7, 9, 11, 13, 15, 2, 4, 6, 8, 10, 12, 14, 16]
        expectClose(try bilinearUpsample(four, inHeight: 4, inWidth: 4, outHeight: 2, outWidth: 2),
                    [(1 + 3 + 9 + 11) / 4, (5 + 7 + 13 + 15) / 4, (2 + 4 + 10 + 12) / 4, (6 + 8 + 14 + 16) / 4])
        #expect(throws: PatchGuardError.self) {
            try bilinearUpsample(inp, inHeight: 2, inWidth: 2, outHeight: 4, outWidth: 4)
        }
    }

    // MARK: Gaussian

    @Test func gaussianKernelIsNormalisedSymmetricGaussian() throws {
        let g = try gaussianKernel1D(sigma: 6, radius: 7)
        #expect(g.count == 15)
        #expect(abs(g.reduce(0, +) - 1) < 1e-6)
        for j in 0..<7 { #expect(g[j] == g[14 - j]) }
        for j in 0..<7 { #expect(g[j] < g[j + 1]) }
        // Ratio of centre to edge tap: exp(7² / (2·6²)) = exp(49/72).
        #expect(abs(Double(g[7] / g[0]) - exp(49.0 / 72)) < 1e-5)
        #expect(try gaussianKernel1D(sigma: 0, radius: 7) == [1])
        #expect(throws: PatchGuardError.self) { try gaussianKernel1D(sigma: -1, radius: 7) }
    }

    /// PyTorch/numpy `reflect`: `d c b | a b c d | c b a` (edge not repeated), folded again for big offsets.
    @Test func reflectIndexMatchesNumpyReflect() {
        #expect((-3...6).map { reflectIndex($0, 4) } == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
        #expect((-9...9).map { reflectIndex($0, 1) }.allSatisfy { $0 == 0 })
        // n = 2 alternates 0 1 0 1 …; n = 3 has period 4.
        #expect((-3...3).map { reflectIndex($0, 2) } == [1, 0, 1, 0, 1, 0, 1])
        #expect((-7...7).map { reflectIndex($0, 3) } == [1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1])
    }

    /// An impulse next to the border tells the padding modes apart. Row [0, 1, 0, 0, 0], σ = 1, r = 2, one row
    /// (the vertical pass is then the identity). Output 0 reads positions −2…2 → reflect → 2, 1, 0, 1, 2, so the
    /// impulse at index 1 is hit by taps 1 and 3: out[0] = g₁ + g₃ = 2·g₁. ('replicate' would give g₃ only and
    /// scipy's half-sample 'reflect' g₀ + g₃.) Output 1 reads −1…3 → 1, 0, 1, 2, 3: taps 0 and 2 → g₀ + g₂;
    /// outputs 2, 3 read the impulse once (g₁, g₀); output 4 reads 2…6 → 2, 3, 4, 3, 2: never.
    @Test func blurImpulseAtBorderUsesReflect() throws {
        let g = try gaussianKernel1D(sigma: 1, radius: 2)
        let out = try gaussianBlur([0, 1, 0, 0, 0], height: 1, width: 5, sigma: 1, radius: 2)
        // out[x] = Σ_j g[j]·s[reflect(x + j − 2)], with s nonzero only at 1.
        let expected: [Float] = [2 * g[1], g[0] + g[2], g[1], g[0], 0]
        expectClose(out, expected, tol: 1e-7)
        // Column vector: the same along the vertical axis.
        let col = try gaussianBlur([0, 1, 0, 0, 0], height: 5, width: 1, sigma: 1, radius: 2)
        expectClose(col, expected, tol: 1e-7)
    }

    @Test func blurKeepsConstantMapsConstant() throws {
        for (h, w) in [(24, 31), (5, 3), (1, 9)] {  // 5×3 and 1×9 are smaller than the 15-tap kernel: folded reflect
            let out = try gaussianBlur([Float](repeating: -2.75, count: h * w), height: h, width: w, sigma: 6, radius: 7)
            expectClose(out, [Float](repeating: -2.75, count: h * w), tol: 2e-6)
        }
    }

    /// The separable kernel against a naive 2-D convolution with the outer-product kernel and explicit reflect.
    @Test func separableBlurMatchesNaive2D() throws {
        var rng = SeededRNG(seed: 11)
        let (h, w, r, sigma) = (9, 13, 3, 1.7)
        let x = (0..<(h * w)).map { _ in Float(rng.uniform(-3, 3)) }
        let g = try gaussianKernel1D(sigma: sigma, radius: r)
        var ref = [Float](repeating: 0, count: h * w)
        for y in 0..<h {
            for xx in 0..<w {
                var s = 0.0
                for a in 0...(2 * r) {
                    for b in 0...(2 * r) {
                        let yy = reflectIndex(y + a - r, h), xs = reflectIndex(xx + b - r, w)
                        s += Double(g[a]) * Double(g[b]) * Double(x[yy * w + xs])
                    }
                }
                ref[y * w + xx] = Float(s)
            }
        }
        expectClose(try gaussianBlur(x, height: h, width: w, sigma: sigma, radius: r), ref, tol: 1e-5)
    }

    // MARK: scorer

    @Test func scorerBatchMatchesSingleImagesAndDefinition() throws {
        let scorer = try AnomalyScorer(gridHeight: 4, gridWidth: 5, imageHeight: 28, imageWidth: 35)
        #expect(scorer.kernel.count == 15 && scorer.config.topK == 3)
        var rng = SeededRNG(seed: 3)
        let b = 5
        let logits = (0..<(b * 20)).map { _ in Float(rng.uniform(-6, 2)) }
        let (scores, maps) = try scorer.score(batchLogits: logits, count: b)
        #expect(scores.count == b && maps.count == b)
        for i in 0..<b {
            let one = Array(logits[(i * 20)..<((i + 1) * 20)])
            #expect(scores[i] == (try scorer.imageScore(patchLogits: one)))
            #expect(abs(scores[i] - (try topKMean(one, k: 3))) == 0)
            let m = try scorer.pixelMap(patchLogits: one)
            #expect(maps[i] == m)
            let up = try bilinearUpsample(one, inHeight: 4, inWidth: 5, outHeight: 28, outWidth: 35)
            expectClose(m.values, try gaussianBlur(up, height: 28, width: 35, sigma: 6, radius: 7), tol: 1e-6)
        }
        // A constant patch grid gives a constant map.
        let flat = try scorer.pixelMap(patchLogits: [Float](repeating: 1.5, count: 20))
        expectClose(flat.values, [Float](repeating: 1.5, count: 28 * 35), tol: 2e-6)
        // Configurable and validated.
        let noBlur = try AnomalyScorer(config: ScoringConfig(topK: 1, sigma: 0, radius: 7),
                                       gridHeight: 2, gridWidth: 2, imageHeight: 4, imageWidth: 4)
        expectClose(try noBlur.pixelMap(patchLogits: [1, 2, 3, 4]).values,
                    try bilinearUpsample([1, 2, 3, 4], inHeight: 2, inWidth: 2, outHeight: 4, outWidth: 4))
        #expect(try noBlur.imageScore(patchLogits: [1, 2, 3, 4]) == 4)
        #expect(throws: PatchGuardError.self) { try scorer.pixelMap(patchLogits: [1, 2, 3]) }
        #expect(throws: PatchGuardError.self) { try scorer.score(batchLogits: logits, count: b + 1) }
        #expect(throws: PatchGuardError.self) {
            try AnomalyScorer(config: ScoringConfig(topK: 21), gridHeight: 4, gridWidth: 5, imageHeight: 8, imageWidth: 8)
        }
        #expect(throws: PatchGuardError.self) {
            try AnomalyScorer(config: ScoringConfig(radius: -1), gridHeight: 4, gridWidth: 5, imageHeight: 8, imageWidth: 8)
        }
    }

    @Test func scoringConfigCodesSnakeCase() throws {
        let c = try JSONDecoder().decode(ScoringConfig.self, from: Data(#"{"top_k": 5, "sigma": 4, "radius": 9}"#.utf8))
        #expect(c == ScoringConfig(topK: 5, sigma: 4, radius: 9))
    }
}
