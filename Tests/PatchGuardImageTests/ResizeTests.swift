import PatchGuardCore
import PatchGuardImage
import Testing

/// Naive 2-D references, straight from the definitions (Double, no separability, no tables).
private enum Reference {
    /// PyTorch `F.interpolate(mode="bilinear", align_corners=False)`.
    static func bilinear(_ image: Image, width: Int, height: Int) -> Image {
        var out = Image(width: width, height: height, channels: image.channels)
        func source(_ i: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Double) {
            let s = max(0, (Double(i) + 0.5) * Double(inSize) / Double(outSize) - 0.5)
            let i0 = min(Int(s), inSize - 1)
            return (i0, min(i0 + 1, inSize - 1), s - Double(i0))
        }
        for c in 0..<image.channels {
            for y in 0..<height {
                let (y0, y1, ly) = source(y, image.height, height)
                for x in 0..<width {
                    let (x0, x1, lx) = source(x, image.width, width)
                    let top = (1 - lx) * Double(image[c, y0, x0]) + lx * Double(image[c, y0, x1])
                    let bottom = (1 - lx) * Double(image[c, y1, x0]) + lx * Double(image[c, y1, x1])
                    out[c, y, x] = Float((1 - ly) * top + ly * bottom)
                }
            }
        }
        return out
    }

    /// Box average with fractional pixel coverage.
    static func area(_ image: Image, width: Int, height: Int) -> Image {
        var out = Image(width: width, height: height, channels: image.channels)
        let sx = Double(image.width) / Double(width), sy = Double(image.height) / Double(height)
        for c in 0..<image.channels {
            for y in 0..<height {
                for x in 0..<width {
                    var sum = 0.0, total = 0.0
                    for j in 0..<image.height {
                        let oy = max(0, min(Double(j + 1), Double(y + 1) * sy) - max(Double(j), Double(y) * sy))
                        if oy == 0 { continue }
                        for i in 0..<image.width {
                            let ox = max(0, min(Double(i + 1), Double(x + 1) * sx) - max(Double(i), Double(x) * sx))
                            sum += ox * oy * Double(image[c, j, i])
                            total += ox * oy
                        }
                    }
                    out[c, y, x] = Float(sum / total)
                }
            }
        }
        return out
    }
}

private func noise(width: Int, height: Int, channels: Int, seed: UInt64) -> Image {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var image = Image(width: width, height: height, channels: channels)
    for i in 0..<image.pixels.count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        image.pixels[i] = Float(state >> 40) / Float(1 << 24)
    }
    return image
}

private func maxAbsDifference(_ a: Image, _ b: Image) -> Float {
    zip(a.pixels, b.pixels).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

@Suite("Resize")
struct ResizeTests {
    @Test(arguments: ResizeFilter.allCases)
    func constantImageStaysConstant(filter: ResizeFilter) {
        let image = Image(width: 13, height: 7, channels: 3, value: 0.3)
        for (w, h) in [(5, 3), (29, 11), (13, 20), (4, 7), (1, 1), (64, 2)] {
            let out = image.resized(width: w, height: h, filter: filter)
            #expect(out.width == w && out.height == h && out.channels == 3)
            #expect(out.pixels.allSatisfy { abs($0 - 0.3) < 1e-6 }, "\(filter) \(w)×\(h)")
        }
    }

    @Test func areaHalvingIsExactTwoByTwoAverage() {
        // Values on a 1/256 grid: every partial sum is exact in Float, so "exactly" means ==.
        var image = Image(width: 8, height: 6, channels: 2)
        for i in 0..<image.pixels.count { image.pixels[i] = Float((i * 37) % 256) / 256 }
        let out = image.resized(width: 4, height: 3, filter: .area)
        for c in 0..<2 {
            for y in 0..<3 {
                for x in 0..<4 {
                    let sum = image[c, 2 * y, 2 * x] + image[c, 2 * y, 2 * x + 1]
                        + image[c, 2 * y + 1, 2 * x] + image[c, 2 * y + 1, 2 * x + 1]
                    #expect(out[c, y, x] == sum / 4, "(\(c), \(y), \(x))")
                }
            }
        }
        // `.auto` shrinks with area.
        #expect(image.resized(width: 4, height: 3) == out)
    }

    @Test func areaFractionalCoverageByHand() {
        // 3 → 2 pixels: output 0 covers [0, 1.5) = all of p0 and half of p1, output 1 covers [1.5, 3).
        let row = Image(width: 3, height: 1, channels: 1, pixels: [0.9, 0.3, 0.6])
        let out = row.resized(width: 2, height: 1, filter: .area)
        #expect(abs(out.pixels[0] - (0.9 + 0.5 * 0.3) / 1.5) < 1e-6)
        #expect(abs(out.pixels[1] - (0.5 * 0.3 + 0.6) / 1.5) < 1e-6)
    }

    @Test func bilinearUpsamplingMatchesPyTorch() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4), mode="bilinear",
        // align_corners=False) — the well-known result.
        let image = Image(width: 2, height: 2, channels: 1, pixels: [1, 2, 3, 4])
        let expected: [Float] = [1.00, 1.25, 1.75, 2.00,
                                 1.50, 1.75, 2.25, 2.50,
                                 2.50, 2.75, 3.25, 3.50,
                                 3.00, 3.25, 3.75, 4.00]
        #expect(image.resized(width: 4, height: 4, filter: .bilinear).pixels == expected)
        #expect(image.resized(width: 4, height: 4) == image.resized(width: 4, height: 4, filter: .bilinear))

        // 3 → 5 along a row, by the formula: output 1 samples s = (1 + ½)·3/5 − ½ = 0.4 → 0.6·p0 + 0.4·p1;
        // output 4 samples s = 2.2 → clamped to the last pixel.
        let row = Image(width: 3, height: 1, channels: 1, pixels: [0.2, 0.7, 0.4])
        let out = row.resized(width: 5, height: 1, filter: .bilinear)
        #expect(abs(out.pixels[0] - 0.2) < 1e-7)
        #expect(abs(out.pixels[1] - (0.6 * 0.2 + 0.4 * 0.7)) < 1e-6)
        #expect(abs(out.pixels[2] - 0.7) < 1e-6)
        #expect(abs(out.pixels[4] - 0.4) < 1e-7)
    }

    @Test func separableKernelsMatchNaiveReferences() {
        let image = noise(width: 37, height: 29, channels: 3, seed: 7)
        for (w, h) in [(24, 17), (50, 41), (11, 45), (37, 13)] {
            let bilinear = image.resized(width: w, height: h, filter: .bilinear)
            #expect(maxAbsDifference(bilinear, Reference.bilinear(image, width: w, height: h)) < 2e-6, "\(w)×\(h)")
            let area = image.resized(width: w, height: h, filter: .area)
            #expect(maxAbsDifference(area, Reference.area(image, width: w, height: h)) < 2e-6, "\(w)×\(h)")
        }
        // `.auto` picks per axis: wider (bilinear) and shorter (area).
        let mixed = image.resized(width: 50, height: 13)
        let expected = image.resized(width: 50, height: 29, filter: .bilinear).resized(width: 50, height: 13,
                                                                                         filter: .area)
        #expect(maxAbsDifference(mixed, expected) == 0)
    }

    @Test func nearestKeepsMasksBinaryAndPicksCentres() {
        var mask = Image(width: 10, height: 10, channels: 1)
        for y in 0..<10 { for x in 0..<10 where (x / 3 + y / 2) % 2 == 0 { mask[0, y, x] = 1 } }
        for (w, h) in [(7, 4), (23, 17), (3, 10)] {
            let out = mask.resized(width: w, height: h, filter: .nearest)
            #expect(out.pixels.allSatisfy { $0 == 0 || $0 == 1 })
        }
        // 4 → 2 picks pixel centres 1 and 3 (⌊(i + ½)·2⌋).
        let row = Image(width: 4, height: 1, channels: 1, pixels: [0.1, 0.2, 0.3, 0.4])
        #expect(row.resized(width: 2, height: 1, filter: .nearest).pixels == [0.2, 0.4])
        #expect(row.resized(width: 8, height: 1, filter: .nearest).pixels == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4])
    }

    @Test func binarizedAndChannelConversions() {
        let mask = Image(width: 4, height: 1, channels: 1, pixels: [0.2, 0.5, 0.9, .nan])
        #expect(mask.binarized().pixels == [0, 1, 1, 0])
        #expect(mask.binarized(threshold: 0.95).pixels == [0, 0, 0, 0])

        let gray = Image(width: 2, height: 1, channels: 1, pixels: [0.25, 0.75])
        #expect(gray.toRGB().pixels == [0.25, 0.75, 0.25, 0.75, 0.25, 0.75])
        #expect(gray.toGray() == gray)
        let rgb = Image(width: 1, height: 1, channels: 3, pixels: [1, 0.5, 0])
        #expect(rgb.toRGB() == rgb)
        #expect(abs(rgb.toGray().pixels[0] - (0.299 + 0.587 * 0.5)) < 1e-6)
        #expect(gray.toRGB().toGray().pixels.enumerated().allSatisfy { abs($1 - gray.pixels[$0]) < 1e-6 })
    }

    @Test func sameSizeIsIdentity() {
        let image = noise(width: 9, height: 6, channels: 3, seed: 3)
        for filter in ResizeFilter.allCases { #expect(image.resized(width: 9, height: 6, filter: filter) == image) }
    }
}
