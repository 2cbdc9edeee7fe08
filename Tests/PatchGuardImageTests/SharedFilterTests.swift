import Foundation
import PatchGuardCore
@testable import PatchGuardImage
import Testing

// The Image module holds the one copy of each generic image operation. These tests pin each mode of it, bit for
// bit, to a straightforward reference: the code each caller used before it shared the implementation.

/// A deterministic plane with irregular values (no symmetry that could hide an index error).
private func plane(_ w: Int, _ h: Int, seed: UInt64) -> [Float] {
    var rng = SeededRNG(seed: seed)
    return (0..<(w * h)).map { _ in Float(rng.uniform(0, 1)) }
}

private func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

/// The references, written out without tables, fast paths or shared helpers.
private enum Old {
    /// Synthesis' mirror (edge repeated).
    static func mirror(_ i: Int, _ n: Int) -> Int {
        let m = 2 * n
        var j = i % m
        if j < 0 { j += m }
        return j < n ? j : m - 1 - j
    }

    /// Synthesis' Gaussian filter: radius max(1, ⌈3σ⌉), Float-normalised kernel, mirrored borders.
    static func synthesisGaussian(_ plane: [Float], width w: Int, height h: Int, sigma: Double) -> [Float] {
        let radius = max(1, Int((3 * sigma).rounded(.up)))
        var kernel = (-radius...radius).map { Float(Foundation.exp(-Double($0 * $0) / (2 * sigma * sigma))) }
        let total = kernel.reduce(0, +)
        for i in kernel.indices { kernel[i] /= total }
        var tmp = [Float](repeating: 0, count: w * h), out = tmp
        for y in 0..<h {
            for x in 0..<w {
                var s: Float = 0
                for k in -radius...radius { s += kernel[k + radius] * plane[y * w + mirror(x + k, w)] }
                tmp[y * w + x] = s
            }
        }
        for y in 0..<h {
            for x in 0..<w {
                var s: Float = 0
                for k in -radius...radius { s += kernel[k + radius] * tmp[mirror(y + k, h) * w + x] }
                out[y * w + x] = s
            }
        }
        return out
    }

    /// PyTorch reflect index (edge not repeated), by walking: bounce until inside.
    static func reflect(_ i: Int, _ n: Int) -> Int {
        if n == 1 { return 0 }
        var j = i
        while j < 0 || j >= n { j = j < 0 ? -j : 2 * (n - 1) - j }
        return j
    }

    /// Scoring's blur: Double-normalised kernel, reflect borders, horizontal then vertical.
    static func scoringGaussian(_ plane: [Float], width w: Int, height h: Int, sigma: Double, radius: Int) -> [Float] {
        var g = (0...(2 * radius)).map { j -> Double in
            let d = Double(j - radius)
            return exp(-d * d / (2 * sigma * sigma))
        }
        let s = g.reduce(0, +)
        for j in g.indices { g[j] /= s }
        let k = g.map { Float($0) }
        var tmp = [Float](repeating: 0, count: w * h), out = tmp
        for y in 0..<h {
            for x in 0..<w {
                var acc: Float = 0
                for j in 0...(2 * radius) { acc += k[j] * plane[y * w + reflect(x + j - radius, w)] }
                tmp[y * w + x] = acc
            }
        }
        for y in 0..<h {
            for x in 0..<w {
                var acc: Float = 0
                for j in 0...(2 * radius) { acc += k[j] * tmp[reflect(y + j - radius, h) * w + x] }
                out[y * w + x] = acc
            }
        }
        return out
    }

    /// Synthesis' bilinear sampler with mirrored borders.
    static func bilinearMirrored(_ p: Image, _ c: Int, _ x: Float, _ y: Float) -> Float {
        let fx = x.rounded(.down), fy = y.rounded(.down)
        let tx = x - fx, ty = y - fy
        let x0 = Int(fx), y0 = Int(fy)
        let w = p.width, h = p.height, base = c * p.planeSize
        let xa = mirror(x0, w), xb = mirror(x0 + 1, w), ya = mirror(y0, h), yb = mirror(y0 + 1, h)
        let top = p.pixels[base + ya * w + xa] * (1 - tx) + p.pixels[base + ya * w + xb] * tx
        let bottom = p.pixels[base + yb * w + xa] * (1 - tx) + p.pixels[base + yb * w + xb] * tx
        return top * (1 - ty) + bottom * ty
    }

    /// Resize's bilinear taps before they came from LinearTaps: (start, weights).
    static func resizeTaps(_ i: Int, inSize: Int, outSize: Int) -> (Int, [Float]) {
        let s = max(0, (Double(i) + 0.5) * (Double(inSize) / Double(outSize)) - 0.5)
        let x0 = min(Int(s.rounded(.down)), inSize - 1)
        let x1 = min(x0 + 1, inSize - 1)
        let l = s - Double(x0)
        return x1 == x0 || l <= 0 ? (x0, [1]) : (x0, [Float(1 - l), Float(l)])
    }

    /// Separable bilinear resize from those taps: horizontal `0 + Σ w·v`, then vertical `Σ w·v`.
    static func bilinearResize(_ image: Image, width ow: Int, height oh: Int) -> Image {
        let w = image.width, h = image.height, C = image.channels
        var stage = [Float](repeating: 0, count: C * h * ow)
        for r in 0..<(C * h) {
            for x in 0..<ow {
                let (s, wt) = resizeTaps(x, inSize: w, outSize: ow)
                var acc: Float = 0
                for (k, wk) in wt.enumerated() { acc += wk * image.pixels[r * w + s + k] }
                stage[r * ow + x] = acc
            }
        }
        var out = [Float](repeating: 0, count: C * oh * ow)
        for c in 0..<C {
            for y in 0..<oh {
                let (s, wt) = resizeTaps(y, inSize: h, outSize: oh)
                for x in 0..<ow {
                    var acc = wt[0] * stage[(c * h + s) * ow + x]
                    for k in 1..<wt.count { acc += wt[k] * stage[(c * h + s + k) * ow + x] }
                    out[(c * oh + y) * ow + x] = acc
                }
            }
        }
        return Image(width: ow, height: oh, channels: C, pixels: out)
    }
}

@Suite("Shared image filters")
struct SharedFilterTests {
    @Test func borderIndicesFollowTheirDefinitions() {
        #expect((-4...7).map { symmetricIndex($0, 4) } == [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0])
        #expect((-3...3).map { symmetricIndex($0, 1) }.allSatisfy { $0 == 0 })
        for n in 1...6 {
            for i in -20...20 {
                #expect(symmetricIndex(i, n) == Old.mirror(i, n))
                #expect(reflectIndex(i, n) == Old.reflect(i, n))
                #expect(borderIndex(i, n, .symmetric) == Old.mirror(i, n))
                #expect(borderIndex(i, n, .reflect) == Old.reflect(i, n))
            }
        }
    }

    @Test func gaussianRadiusRule() {
        #expect(gaussianRadius(sigma: 0.2) == 1 && gaussianRadius(sigma: 1) == 3 && gaussianRadius(sigma: 1.01) == 4)
        #expect(gaussianRadius(sigma: 0.2, minimum: 1) == 1 && gaussianRadius(sigma: 0, minimum: 1) == 1)
        #expect(gaussianRadius(sigma: 0) == 0)
    }

    @Test func floatNormalisedSymmetricBlurIsTheSynthesisFilterBitForBit() throws {
        for (w, h) in [(7, 5), (13, 11), (3, 9), (2, 2), (1, 6)] {
            let p = plane(w, h, seed: UInt64(w * 31 + h))
            for sigma in [0.2, 0.5, 0.8, 1.37, 2.5, 3.0] {
                let shared = try gaussianBlur(p, height: h, width: w, sigma: sigma,
                                              radius: gaussianRadius(sigma: sigma, minimum: 1),
                                              normalization: .float, border: .symmetric)
                #expect(bits(shared) == bits(Old.synthesisGaussian(p, width: w, height: h, sigma: sigma)),
                        "\(w)×\(h) σ \(sigma)")
            }
        }
    }

    @Test func doubleNormalisedReflectBlurIsTheScoringFilterBitForBit() throws {
        for (w, h) in [(7, 5), (16, 16), (3, 9), (1, 4)] {
            let p = plane(w, h, seed: UInt64(w * 7 + h))
            for (sigma, radius) in [(0.8, 2), (1.5, 5), (4.0, 4), (2.0, 10)] {
                let shared = try gaussianBlur(p, height: h, width: w, sigma: sigma, radius: radius)
                #expect(bits(shared) == bits(Old.scoringGaussian(p, width: w, height: h, sigma: sigma, radius: radius)),
                        "\(w)×\(h) σ \(sigma) r \(radius)")
            }
        }
    }

    @Test func theTwoNormalisationsAndBordersReallyDiffer() throws {
        // The distinction is kept because it matters: different numbers, not different spellings.
        let p = plane(9, 9, seed: 1)
        let a = try gaussianBlur(p, height: 9, width: 9, sigma: 1.3, radius: 4, border: .reflect)
        let b = try gaussianBlur(p, height: 9, width: 9, sigma: 1.3, radius: 4, border: .symmetric)
        #expect(a != b)
        let kd = try gaussianKernel1D(sigma: 1.37, radius: 5), kf = try gaussianKernel1D(sigma: 1.37, radius: 5,
                                                                                             normalization: .float)
        #expect(zip(kd, kf).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(try gaussianKernel1D(sigma: 0, radius: 3, normalization: .float) == [1])
    }

    @Test func bilinearSampleIsTheSynthesisSamplerBitForBit() {
        let w = 7, h = 5
        let image = Image(width: w, height: h, channels: 3, pixels: plane(w, 3 * h, seed: 4))
        var rng = SeededRNG(seed: 8)
        for _ in 0..<2000 {
            let x = Float(rng.uniform(-9, 16)), y = Float(rng.uniform(-9, 14)), c = rng.int(in: 0..<3)
            #expect(image.bilinearSample(channel: c, x: x, y: y, border: .symmetric).bitPattern
                    == Old.bilinearMirrored(image, c, x, y).bitPattern, "(\(x), \(y)) c \(c)")
        }
        // Integer coordinates read the pixel itself; reflect mode bounces without repeating the edge.
        #expect(image.bilinearSample(channel: 1, x: 3, y: 2, border: .reflect) == image[1, 2, 3])
        #expect(image.bilinearSample(channel: 0, x: -1, y: 0, border: .reflect) == image[0, 0, 1])
        #expect(image.bilinearSample(channel: 0, x: -1, y: 0, border: .symmetric) == image[0, 0, 0])
    }

    @Test func linearTapsMatchTheResizeTapFormula() {
        for (inSize, outSize) in [(4, 9), (9, 4), (7, 7), (1, 5), (5, 1), (14, 224), (224, 14), (3, 8)] {
            let t = LinearTaps(inSize: inSize, outSize: outSize)
            for i in 0..<outSize {
                let (start, w) = Old.resizeTaps(i, inSize: inSize, outSize: outSize)
                #expect(Int(t.i0[i]) == start)
                if w.count == 2 {
                    #expect(Int(t.i1[i]) == start + 1 && t.w0[i] == w[0] && t.w1[i] == w[1])
                } else {
                    #expect(t.i1[i] == t.i0[i] || t.w1[i] == 0)
                }
            }
        }
    }

    @Test func bilinearResizeIsTheSeparableReferenceBitForBit() {
        for (w, h, ow, oh) in [(5, 4, 11, 9), (16, 16, 224, 224), (9, 7, 4, 3), (3, 3, 8, 2), (1, 4, 5, 4)] {
            let image = Image(width: w, height: h, channels: 3, pixels: plane(w, 3 * h, seed: UInt64(w + ow)))
            let shared = image.resized(width: ow, height: oh, filter: .bilinear)
            #expect(bits(shared.pixels) == bits(Old.bilinearResize(image, width: ow, height: oh).pixels),
                    "\(w)×\(h) → \(ow)×\(oh)")
        }
    }

    @Test func bilinearUpsampleUsesTheSharedBlend() throws {
        let g = plane(4, 3, seed: 5)
        let up = try bilinearUpsample(g, inHeight: 3, inWidth: 4, outHeight: 7, outWidth: 10)
        let ty = LinearTaps(inSize: 3, outSize: 7), tx = LinearTaps(inSize: 4, outSize: 10)
        for y in 0..<7 {
            for x in 0..<10 {
                let (a, b) = (Int(ty.i0[y]) * 4, Int(ty.i1[y]) * 4), (c, d) = (Int(tx.i0[x]), Int(tx.i1[x]))
                let ref = ty.w0[y] * (tx.w0[x] * g[a + c] + tx.w1[x] * g[a + d])
                    + ty.w1[y] * (tx.w0[x] * g[b + c] + tx.w1[x] * g[b + d])
                #expect(up[y * 10 + x].bitPattern == ref.bitPattern)
            }
        }
    }
}

@Suite("ImagePanel")
struct ImagePanelTests {
    /// Reference: background canvas, then each image copied at its computed origin, per pixel.
    static func reference(rows: [[Image]], gap: Int, margin: Int, background: Float, clamp: Bool) -> Image {
        let widths = rows.map { r in r.reduce(0) { $0 + $1.width } + gap * max(0, r.count - 1) }
        let heights = rows.map { r in r.map(\.height).max() ?? 0 }
        let W = 2 * margin + (widths.max() ?? 0)
        let H = 2 * margin + heights.reduce(0, +) + gap * max(0, rows.count - 1)
        var out = Image(width: W, height: H, channels: 3, value: background)
        var y0 = margin
        for (r, row) in rows.enumerated() {
            var x0 = margin
            for image in row {
                for c in 0..<3 {
                    for y in 0..<image.height {
                        for x in 0..<image.width {
                            let v = image[min(c, image.channels - 1), y, x]
                            out[c, y0 + y, x0 + x] = clamp ? min(1, max(0, v)) : v
                        }
                    }
                }
                x0 += image.width + gap
            }
            y0 += heights[r] + gap
        }
        return out
    }

    static func image(_ w: Int, _ h: Int, _ c: Int, seed: UInt64) -> Image {
        var rng = SeededRNG(seed: seed)
        return Image(width: w, height: h, channels: c, pixels: (0..<(w * h * c)).map { _ in Float(rng.uniform(-0.5, 1.5)) })
    }

    @Test func composeMatchesTheReferenceLayout() {
        let rows = [[Self.image(5, 4, 3, seed: 1), Self.image(3, 6, 1, seed: 2)],
                    [Self.image(7, 2, 3, seed: 3)],
                    [Self.image(2, 2, 1, seed: 4), Self.image(2, 3, 3, seed: 5), Self.image(4, 1, 3, seed: 6)]]
        for (gap, margin, bg, clamp) in [(0, 0, Float(1), false), (4, 0, 1, true), (2, 2, 0.12, false), (3, 1, 0, true)] {
            let got = ImagePanel.compose(rows: rows, gap: gap, margin: margin, background: bg, clamp: clamp)
            let ref = Self.reference(rows: rows, gap: gap, margin: margin, background: bg, clamp: clamp)
            #expect(got.width == ref.width && got.height == ref.height)
            #expect(bits(got.pixels) == bits(ref.pixels), "gap \(gap) margin \(margin)")
        }
    }

    @Test func rowIsOneRowAndClampZeroesNaN() {
        var a = Self.image(3, 3, 3, seed: 7)
        a.pixels[0] = .nan
        let r = ImagePanel.row([a, Self.image(3, 3, 1, seed: 8)], gap: 4, background: 1, clamp: true)
        #expect(r.width == 10 && r.height == 3)
        #expect(r[0, 0, 0] == 0)
        #expect((0..<3).allSatisfy { r[$0, 1, 3] == 1 && r[$0, 1, 6] == 1 })  // the gap is background
        let unclamped = ImagePanel.row([a], gap: 0, background: 1)
        #expect(unclamped[0, 0, 0].isNaN)
    }
}
