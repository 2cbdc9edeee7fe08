import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod
import PatchGuardJobs
import Testing

/// Property tests of the pseudo-anomaly synthesis on small generated images (48×48).
@Suite("Synthesis")
struct SynthesisTests {

    // MARK: - Fixtures

    /// A colourful image: smooth gradients plus per-pixel noise, so any moved or altered patch differs from what
    /// was under it.
    static func testImage(width: Int = 48, height: Int = 48, seed: UInt64 = 7) -> Image {
        var rng = SeededRNG(seed: seed)
        var image = Image(width: width, height: height, channels: 3)
        for c in 0..<3 {
            for y in 0..<height {
                for x in 0..<width {
                    let base = 0.5 + 0.3 * sin(Double(x) * 0.3 + Double(c)) * cos(Double(y) * 0.2 - Double(c))
                    image[c, y, x] = Float(min(1, max(0, base + rng.uniform(-0.15, 0.15))))
                }
            }
        }
        return image
    }

    /// A filled disc as a 1-channel mask.
    static func disc(width: Int = 48, height: Int = 48, cx: Double, cy: Double, r: Double) -> Image {
        var m = Image(width: width, height: height, channels: 1)
        for y in 0..<height {
            for x in 0..<width where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) <= r * r {
                m[0, y, x] = 1
            }
        }
        return m
    }

    /// Settings scaled to 48×48 images.
    static func smallConfig() -> SynthesisConfig {
        var config = SynthesisConfig()
        config.minSize = 6
        config.maxSize = 20
        config.dilation = 2
        return config
    }

    static func synthesizer(_ config: SynthesisConfig = smallConfig()) throws -> PseudoAnomalySynthesizer {
        try PseudoAnomalySynthesizer(config: config)
    }

    static func expectInUnitRange(_ image: Image, sourceLocation: SourceLocation = #_sourceLocation) {
        let bad = image.pixels.filter { !($0 >= 0 && $0 <= 1) }.count
        #expect(bad == 0, "\(bad) pixels outside [0, 1]", sourceLocation: sourceLocation)
    }

    // MARK: - Whole-pipeline properties

    @Test func maskIsNonEmptyAndInsideDilatedForeground() throws {
        let image = Self.testImage()
        let fg = Self.disc(cx: 20, cy: 26, r: 12)
        let synth = try Self.synthesizer()
        let dilated = try BinaryMask(fg).dilated(radius: synth.config.dilation)
        for seed in 0..<40 as Range<UInt64> {
            var rng = SeededRNG(seed: seed)
            let result = try synth.synthesize(image: image, foreground: fg, using: &rng)
            var outside = 0, inside = 0
            for i in 0..<result.mask.pixels.count where result.mask.pixels[i] != 0 {
                #expect(result.mask.pixels[i] == 1)
                if dilated.bits[i] == 1 { inside += 1 } else { outside += 1 }
            }
            #expect(outside == 0, "seed \(seed): \(outside) mask pixels outside the dilated foreground")
            #expect(inside > 0, "seed \(seed): empty mask")
            #expect(!result.usedWholeImage)
            #expect(result.placement != .clipped)
            // Both rectangles lie inside the dilated foreground (the placement guarantee).
            for r in [result.source, result.destination] {
                for y in r.y..<(r.y + r.height) {
                    for x in r.x..<(r.x + r.width) { #expect(dilated[y, x] == 1) }
                }
            }
            // The mask lies inside the destination rectangle; rotated-away corners are not pasted (a rotated
            // rectangle fit into its box covers wh/(W'H') of it: ≤ 0.61 for 20° ≤ |θ| ≤ 70°).
            let d = result.destination
            if abs(result.angle) >= 20 && abs(result.angle) <= 70 {
                #expect(Double(inside) < 0.7 * Double(d.width * d.height), "seed \(seed): corners pasted")
            }
            for y in 0..<48 {
                for x in 0..<48 where result.mask[0, y, x] == 1 {
                    #expect(x >= d.x && x < d.x + d.width && y >= d.y && y < d.y + d.height)
                }
            }
        }
    }

    @Test func imageChangesOnlyInsideTheMaskAndStaysInRange() throws {
        let image = Self.testImage()
        let fg = Self.disc(cx: 24, cy: 24, r: 16)
        let synth = try Self.synthesizer()
        let n = image.planeSize
        for seed in 0..<40 as Range<UInt64> {
            var rng = SeededRNG(seed: seed)
            let result = try synth.synthesize(image: image, foreground: fg, using: &rng)
            var changedOutside = 0, changedInside = 0
            for c in 0..<3 {
                for i in 0..<n {
                    let same = result.image.pixels[c * n + i].bitPattern == image.pixels[c * n + i].bitPattern
                    if result.mask.pixels[i] == 0 { if !same { changedOutside += 1 } } else if !same { changedInside += 1 }
                }
            }
            #expect(changedOutside == 0, "seed \(seed): \(changedOutside) values changed outside the mask")
            #expect(changedInside > 0, "seed \(seed): nothing changed inside the mask")
            Self.expectInUnitRange(result.image)
            #expect(result.image.channels == 3 && result.image.width == 48 && result.image.height == 48)
            #expect(result.mask.channels == 1 && result.mask.width == 48 && result.mask.height == 48)
        }
    }

    @Test func patchLabelsAgreeWithTheMask() throws {
        let synth = try Self.synthesizer()
        let image = Self.testImage()
        for seed in 0..<10 as Range<UInt64> {
            var rng = SeededRNG(seed: seed)
            let mask = try synth.synthesize(image: image, foreground: nil, using: &rng).mask
            let labels = try patchLabels(mask: mask, patchSize: 8)
            #expect(labels.count == 36)
            for gy in 0..<6 {
                for gx in 0..<6 {
                    var any = false
                    for y in (gy * 8)..<(gy * 8 + 8) { for x in (gx * 8)..<(gx * 8 + 8) where mask[0, y, x] > 0.5 { any = true } }
                    #expect(labels[gy * 6 + gx] == (any ? 1 : 0), "seed \(seed) token (\(gy), \(gx))")
                }
            }
        }
        // Hand-built: one pixel at (x 17, y 9) on a 24×16 mask with 8-pixel patches → token row 1, column 2 only.
        var single = Image(width: 24, height: 16, channels: 1)
        single[0, 9, 17] = 1
        #expect(try patchLabels(mask: single, patchSize: 8) == [0, 0, 0, 0, 0, 1])
        #expect(throws: PatchGuardError.self) { try patchLabels(mask: single, patchSize: 7) }
        #expect(throws: PatchGuardError.self) { try patchLabels(mask: Self.testImage(), patchSize: 8) }
    }

    @Test func sameSeedSameOutputDifferentSeedDifferentOutput() throws {
        let synth = try Self.synthesizer()
        let image = Self.testImage()
        let fg = Self.disc(cx: 24, cy: 24, r: 15)
        var a = SeededRNG(seed: 42), b = SeededRNG(seed: 42), c = SeededRNG(seed: 43)
        let ra = try synth.synthesize(image: image, foreground: fg, using: &a)
        let rb = try synth.synthesize(image: image, foreground: fg, using: &b)
        let rc = try synth.synthesize(image: image, foreground: fg, using: &c)
        #expect(ra == rb)
        #expect(ra.image != rc.image)
        #expect(ra.mask != rc.mask)
    }

    @Test func emptyForegroundFallsBackToWholeImage() throws {
        var config = Self.smallConfig()
        config.minSize = 30
        config.maxSize = 40
        let synth = try Self.synthesizer(config)
        let image = Self.testImage()
        let empty = Image(width: 48, height: 48, channels: 1, value: 0)
        for seed in 0..<5 as Range<UInt64> {
            var rng = SeededRNG(seed: seed)
            let result = try synth.synthesize(image: image, foreground: empty, using: &rng)
            #expect(result.usedWholeImage)
            #expect(result.mask.pixels.contains(1))
            #expect(result.source.width >= 30 && result.source.height >= 30)
        }
        var rng = SeededRNG(seed: 1)
        #expect(try !synth.synthesize(image: image, foreground: nil, using: &rng).usedWholeImage)
    }

    @Test func foregroundTooThinForAnyPatchIsClippedNotHung() throws {
        // A one-pixel diagonal line, no dilation, patches of at least 8×8: no rectangle fits, so placement must
        // end in the documented clipped fallback after its bounded retries.
        var config = Self.smallConfig()
        config.dilation = 0
        config.minSize = 8
        config.maxAttempts = 50
        let synth = try Self.synthesizer(config)
        var line = Image(width: 48, height: 48, channels: 1)
        for i in 0..<48 { line[0, i, i] = 1 }
        for seed in 0..<5 as Range<UInt64> {
            var rng = SeededRNG(seed: seed)
            let result = try synth.synthesize(image: Self.testImage(), foreground: line, using: &rng)
            #expect(result.placement == .clipped)
            for y in 0..<48 { for x in 0..<48 where result.mask[0, y, x] == 1 { #expect(x == y) } }
        }
        // A foreground that holds exactly one 8×8 square: found by the exhaustive scan if not by sampling.
        let square = Self.disc(cx: 0, cy: 0, r: 0).pixels.indices.reduce(into: Image(width: 48, height: 48, channels: 1)) { m, i in
            let x = i % 48, y = i / 48
            if x >= 30 && x < 38 && y >= 5 && y < 13 { m.pixels[i] = 1 }
        }
        var rng = SeededRNG(seed: 3)
        let result = try synth.synthesize(image: Self.testImage(), foreground: square, using: &rng)
        #expect(result.placement == .smallest)
        #expect(result.source == PixelRect(x: 30, y: 5, width: 8, height: 8))
        #expect(result.destination == result.source)
    }

    @Test func parallelBatchEqualsSerialLoop() throws {
        let synth = try Self.synthesizer()
        let images = (0..<6).map { Self.testImage(seed: UInt64($0)) }
        let fgs = (0..<6).map { Self.disc(cx: 16 + 3 * Double($0), cy: 24, r: 14) }
        let batch = try synth.synthesizeBatch(images: images, foregrounds: fgs, seed: 9, batchIndex: 3)
        #expect(batch.count == 6)
        for i in 0..<6 {
            var rng = PseudoAnomalySynthesizer.sampleRNG(seed: 9, batchIndex: 3, item: i)
            let serial = try synth.synthesize(image: images[i], foreground: fgs[i], using: &rng)
            #expect(batch[i] == serial, "item \(i)")
        }
        let other = try synth.synthesizeBatch(images: images, foregrounds: fgs, seed: 9, batchIndex: 4)
        #expect(other.map(\.mask) != batch.map(\.mask))
        #expect(throws: PatchGuardError.self) {
            try synth.synthesizeBatch(images: images, foregrounds: Array(fgs.prefix(2)), seed: 9, batchIndex: 0)
        }
    }

    @Test func levelsFollowTheirProbabilities() throws {
        let p = LevelProbabilities()
        var rng = SeededRNG(seed: 5)
        var counts: [AnomalyLevel: Int] = [:]
        for _ in 0..<20_000 { counts[p.sample(using: &rng), default: 0] += 1 }
        #expect(abs(Double(counts[.light] ?? 0) / 20_000 - 0.2) < 0.015)
        #expect(abs(Double(counts[.medium] ?? 0) / 20_000 - 0.2) < 0.015)
        #expect(abs(Double(counts[.heavy] ?? 0) / 20_000 - 0.6) < 0.015)
    }

    @Test func augmentDrawsDistinctAugmentationsFromThePoolPlusJitter() throws {
        let patch = Self.testImage(width: 20, height: 14)
        var seen: Set<PatchAugmentation> = []
        var counts: Set<Int> = []
        for level in [SynthesisLevelConfig.light, .medium, .heavy] {
            for seed in 0..<60 as Range<UInt64> {
                var rng = SeededRNG(seed: seed)
                let (out, applied) = try PatchAugment.augment(patch, level: level, using: &rng)
                #expect(applied.filter { $0 == .colorJitter }.count == 1)
                let extra = applied.filter { $0 != .colorJitter }
                #expect(Set(extra).count == extra.count)
                #expect(extra.count <= level.maxExtraAugmentations)
                #expect(extra.allSatisfy(level.augmentations.contains))
                #expect(out.width == 20 && out.height == 14 && out.channels == 3)
                Self.expectInUnitRange(out)
                seen.formUnion(applied)
                if level == .heavy { counts.insert(extra.count) }
            }
        }
        #expect(seen == Set(PatchAugmentation.allCases))
        #expect(counts == [0, 1, 2, 3, 4])
    }

    // MARK: - Each augmentation

    /// Checks that `augmented` has the patch's shape, stays in [0, 1] and differs from it in at least `minChanged`
    /// values.
    static func expectChanged(_ augmented: Image, from patch: Image, minChanged: Int = 1,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(augmented.width == patch.width && augmented.height == patch.height
                && augmented.channels == patch.channels, sourceLocation: sourceLocation)
        expectInUnitRange(augmented, sourceLocation: sourceLocation)
        let changed = zip(augmented.pixels, patch.pixels).filter { abs($0 - $1) > 1e-4 }.count
        #expect(changed >= minChanged, "only \(changed) values changed", sourceLocation: sourceLocation)
    }

    static let patch = testImage(width: 23, height: 17, seed: 11)

    @Test func colorJitterChangesThePatch() {
        var p = Self.patch
        var rng = SeededRNG(seed: 1)
        PatchAugment.colorJitter(&p, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.3, using: &rng)
        Self.expectChanged(p, from: Self.patch, minChanged: Self.patch.pixels.count / 2)
        // Each adjustment alone, with known fixed points: factor 1 / shift 0 is the identity.
        for (f, name) in [(Float(1.3), "brightness"), (0.6, "contrast"), (1.8, "saturation")] {
            var q = Self.patch, id = Self.patch
            switch name {
            case "brightness": PatchAugment.adjustBrightness(&q, factor: f); PatchAugment.adjustBrightness(&id, factor: 1)
            case "contrast": PatchAugment.adjustContrast(&q, factor: f); PatchAugment.adjustContrast(&id, factor: 1)
            default: PatchAugment.adjustSaturation(&q, factor: f); PatchAugment.adjustSaturation(&id, factor: 1)
            }
            Self.expectChanged(q, from: Self.patch, minChanged: 100)
            #expect(id == Self.patch, "\(name) factor 1 is not the identity")
        }
        var h = Self.patch, full = Self.patch
        PatchAugment.adjustHue(&h, shift: 0.25)
        Self.expectChanged(h, from: Self.patch, minChanged: 100)
        PatchAugment.adjustHue(&full, shift: 1) // a full turn
        #expect(zip(full.pixels, Self.patch.pixels).allSatisfy { abs($0 - $1) < 1e-5 })
        // Contrast 0 gives the mean luma everywhere (all channels equal).
        var flat = Self.patch
        PatchAugment.adjustContrast(&flat, factor: 0)
        #expect(Set(flat.pixels).count == 1)
    }

    @Test func gaussianBlurChangesThePatchAndSmooths() {
        let out = PatchAugment.gaussianBlur(Self.patch, sigma: 1.5)
        Self.expectChanged(out, from: Self.patch, minChanged: Self.patch.pixels.count / 2)
        // Blur lowers total variation; a constant patch is a fixed point.
        func tv(_ p: Image) -> Float {
            var s: Float = 0
            for c in 0..<3 { for y in 0..<p.height { for x in 1..<p.width { s += abs(p[c, y, x] - p[c, y, x - 1]) } } }
            return s
        }
        #expect(tv(out) < 0.7 * tv(Self.patch))
        let constant = Image(width: 9, height: 5, channels: 3, value: 0.3)
        #expect(zip(PatchAugment.gaussianBlur(constant, sigma: 2).pixels, constant.pixels).allSatisfy { abs($0 - $1) < 1e-6 })
    }

    @Test func elasticChangesThePatch() {
        var rng = SeededRNG(seed: 2)
        let out = PatchAugment.elastic(Self.patch, alpha: 40, sigma: 3, using: &rng)
        Self.expectChanged(out, from: Self.patch, minChanged: Self.patch.pixels.count / 2)
        var zero = SeededRNG(seed: 2)
        #expect(PatchAugment.elastic(Self.patch, alpha: 0, sigma: 3, using: &zero) == Self.patch)
    }

    @Test func swirlChangesThePatch() {
        let out = PatchAugment.swirl(Self.patch, strength: 1.5)
        Self.expectChanged(out, from: Self.patch, minChanged: Self.patch.pixels.count / 4)
        #expect(PatchAugment.swirl(Self.patch, strength: 0) == Self.patch)
    }

    @Test func jpegArtifactsChangeThePatch() throws {
        let out = try PatchAugment.jpegArtifacts(Self.patch, quality: 5)
        Self.expectChanged(out, from: Self.patch, minChanged: Self.patch.pixels.count / 2)
        // Lower quality, larger error.
        func err(_ q: Int) throws -> Float {
            let o = try PatchAugment.jpegArtifacts(Self.patch, quality: q)
            return zip(o.pixels, Self.patch.pixels).reduce(0) { $0 + abs($1.0 - $1.1) }
        }
        #expect(try err(5) > err(95))
    }

    @Test func perlinFillChangesThePatch() {
        var rng = SeededRNG(seed: 3)
        let out = PatchAugment.perlinFill(Self.patch, scale: 6, threshold: 0.5, octaves: 6, using: &rng)
        Self.expectChanged(out, from: Self.patch, minChanged: 20)
        // Filled pixels share one colour; threshold 1 fills nothing.
        var filled: Set<[Float]> = []
        let n = out.planeSize
        for i in 0..<n where (0..<3).contains(where: { out.pixels[$0 * n + i] != Self.patch.pixels[$0 * n + i] }) {
            filled.insert((0..<3).map { out.pixels[$0 * n + i] })
        }
        #expect(filled.count == 1)
        var none = SeededRNG(seed: 3)
        #expect(PatchAugment.perlinFill(Self.patch, scale: 6, threshold: 1, octaves: 6, using: &none) == Self.patch)
    }

    @Test func randomErasingChangesThePatch() {
        var rng = SeededRNG(seed: 4)
        let out = PatchAugment.randomErasing(Self.patch, areaRatio: 0.1, rectangles: 3, using: &rng)
        Self.expectChanged(out, from: Self.patch, minChanged: 20)
        var none = SeededRNG(seed: 4)
        #expect(PatchAugment.randomErasing(Self.patch, areaRatio: 0.1, rectangles: 0, using: &none) == Self.patch)
    }

    @Test func tornLinesChangeThePatch() {
        var rng = SeededRNG(seed: 5)
        let out = PatchAugment.tornLines(Self.patch, lines: 5, width: 1, using: &rng)
        Self.expectChanged(out, from: Self.patch, minChanged: 10)
        // Line pixels are corners of the RGB cube.
        let n = out.planeSize
        for i in 0..<n where (0..<3).contains(where: { out.pixels[$0 * n + i] != Self.patch.pixels[$0 * n + i] }) {
            #expect((0..<3).allSatisfy { out.pixels[$0 * n + i] == 0 || out.pixels[$0 * n + i] == 1 })
        }
    }

    // MARK: - Rotation, dilation, config, grid

    @Test func rotationIdentityQuarterTurnAndTransparentCorners() {
        let (same, alpha) = PseudoAnomalySynthesizer.rotateIntoRectangle(Self.patch, degrees: 0)
        #expect(same == Self.patch)
        #expect(alpha.allSatisfy { $0 == 1 })
        let square = Self.testImage(width: 12, height: 12, seed: 3)
        let (quarter, qa) = PseudoAnomalySynthesizer.rotateIntoRectangle(square, degrees: 90)
        #expect(qa.allSatisfy { $0 > 0.999 })
        for c in 0..<3 {
            for v in 0..<12 {
                for u in 0..<12 { #expect(abs(quarter[c, v, u] - square[c, u, 11 - v]) < 1e-4) }
            }
        }
        let (_, diagonal) = PseudoAnomalySynthesizer.rotateIntoRectangle(square, degrees: 45)
        #expect(diagonal[0] < 0.5 && diagonal[11] < 0.5 && diagonal[143] < 0.5) // corners not pasted
        #expect(diagonal[6 * 12 + 6] > 0.99)                                      // centre pasted
    }

    @Test func dilationMatchesNaiveSquareMaxFilter() {
        var rng = SeededRNG(seed: 8)
        let bits: [UInt8] = (0..<(19 * 13)).map { _ in rng.uniform() < 0.04 ? 1 : 0 }
        let mask = BinaryMask(width: 19, height: 13, bits: bits)
        for r in [0, 1, 3] {
            let fast = mask.dilated(radius: r)
            for y in 0..<13 {
                for x in 0..<19 {
                    var any: UInt8 = 0
                    for yy in max(0, y - r)...min(12, y + r) { for xx in max(0, x - r)...min(18, x + r) { any |= mask[yy, xx] } }
                    #expect(fast[y, x] == any, "r \(r) at (\(x), \(y))")
                }
            }
        }
    }

    @Test func configRoundTripsWithSnakeCaseKeysAndValidates() throws {
        let config = SynthesisConfig()
        let data = try JSONEncoder().encode(config)
        let json = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        for key in ["min_size", "max_size", "dilation", "level_probabilities", "max_rotation", "max_attempts",
                    "light", "medium", "heavy"] {
            #expect(json[key] != nil, "missing \(key)")
        }
        let heavy = try #require(json["heavy"] as? [String: Any])
        #expect(heavy["blur_sigma"] as? [Double] == [2, 3])
        #expect(heavy["jpeg_quality"] as? [Double] == [1, 20])
        #expect(heavy["max_extra_augmentations"] as? Int == 4)
        #expect(try JSONDecoder().decode(SynthesisConfig.self, from: data) == config)
        // A single number is a fixed range.
        let fixed = try JSONDecoder().decode(ParamRange.self, from: Data("0.25".utf8))
        #expect(fixed == ParamRange(0.25, 0.25))
        try config.validate()
        var bad = config
        bad.maxSize = 3
        #expect(throws: PatchGuardError.self) { try bad.validate() }
        bad = config
        bad.heavy.hue = ParamRange(0.2, 0.7)
        #expect(throws: PatchGuardError.self) { try PseudoAnomalySynthesizer(config: bad) }
        bad = config
        bad.light.augmentations.append(.colorJitter)
        #expect(throws: PatchGuardError.self) { try bad.validate() }
    }

    @Test func gridHasOneRowPerSampleAndWritesAPNG() throws {
        let o = Self.testImage(width: 10, height: 8, seed: 1), r = Self.testImage(width: 10, height: 8, seed: 2)
        var m = Image(width: 10, height: 8, channels: 1)
        m[0, 3, 4] = 1
        let grid = try synthesisGrid(originals: [o, o], results: [r, r], masks: [m, m], gap: 2)
        #expect(grid.width == 34 && grid.height == 18 && grid.channels == 3)
        #expect(grid[1, 10 + 5, 7] == o[1, 5, 7])          // second row, original
        #expect(grid[2, 4, 12 + 9] == r[2, 4, 9])            // first row, result
        #expect(grid[0, 3, 24 + 4] == 1 && grid[0, 3, 24 + 5] == 0) // mask
        #expect(grid[0, 8, 0] == 1)                         // white gap
        #expect(throws: PatchGuardError.self) { try synthesisGrid(originals: [o], results: [r, r], masks: [m]) }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synthesis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("grid.png").path
        try writeSynthesisGrid(originals: [o], results: [r], masks: [m], to: path)
        let back = try ImageIO.read(path: path)
        #expect(back.width == 38 && back.height == 8) // default gap 4
        #expect(abs(back[0, 2, 3] - o[0, 2, 3]) <= 0.5 / 255 + 1e-6)
    }
}
