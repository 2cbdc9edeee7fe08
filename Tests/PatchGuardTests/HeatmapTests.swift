import Foundation
import Testing
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

@Suite struct HeatmapTests {
    func temporaryDirectory(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "pg-heat-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func evaluate(_ samples: [LoadedSample], attacks: [AttackSpec]) throws -> EvaluationResult {
        let settings = EvaluationSettings(patchSize: 4, scoring: ScoringConfig(topK: 3, sigma: 2, radius: 3),
                                          batchSize: 4, attacks: attacks, showProgress: false)
        return try Evaluator(detector: EvalBrightnessDetector(), settings: settings).evaluate(samples, category: "toy")
    }

    @Test func jetEndpointsAndMiddle() {
        let lo = JetColormap.rgb(0), hi = JetColormap.rgb(1), mid = JetColormap.rgb(0.5)
        #expect(lo == (0, 0, 0.5))
        #expect(hi == (0.5, 0, 0))
        #expect(abs(mid.r - 0.15 / 0.31) < 1e-6 && mid.g == 1 && abs(mid.b - (1 - 0.16 / 0.31)) < 1e-6)
        #expect(JetColormap.rgb(-3) == lo && JetColormap.rgb(7) == hi && JetColormap.rgb(.nan) == lo)
        #expect(JetColormap.hex(0) == "#000080" && JetColormap.hex(1) == "#800000")
    }

    @Test func normalisationIsFittedOverTheWholeSet() throws {
        // Image A spans [0, 1], image B [0, 0.5]: one shared min/max, so B never reaches the top colour.
        let a = try ScoreMap(width: 2, height: 2, values: [0, 0.25, 0.5, 1])
        let b = try ScoreMap(width: 2, height: 2, values: [0, 0.1, 0.25, 0.5])
        let norm = try HeatmapNormalization.fit([a, b])
        #expect(norm.lower == 0 && norm.upper == 1 && norm.method == "min-max")
        #expect(norm.unit(0.5) == 0.5 && norm.unit(2) == 1 && norm.unit(-1) == 0)

        // Percentiles, numpy's linear interpolation: values 0…100 → the p-th percentile is p.
        let ramp = try ScoreMap(width: 101, height: 1, values: (0...100).map { Float($0) }.shuffled())
        let robust = try HeatmapNormalization.fit([ramp], method: .percentiles(lower: 2.5, upper: 90))
        #expect(robust.lower == 2.5 && robust.upper == 90)
        #expect(throws: PatchGuardError.self) { _ = try HeatmapNormalization.fit([ramp], method: .percentiles(lower: 50, upper: 10)) }
        #expect(throws: PatchGuardError.self) { _ = try HeatmapNormalization.fit([]) }
    }

    @Test func overlaysOfDifferentImagesShareTheColourScale() throws {
        // Two constant-gray images, maps with ranges [0, 1] and [0, 0.5]; the same value gets the same colour in
        // both, and B's maximum is coloured as 0.5, not as the top of the scale (no per-image min–max).
        let s = 4
        func sample(_ i: Int) -> LoadedSample {
            LoadedSample(image: Image(width: s, height: s, channels: 3, value: 0.5),
                         mask: Image(width: s, height: s, channels: 1, value: 0), label: 0, defectType: "good",
                         imagePath: "/x/\(i).png")
        }
        let mapA = try ScoreMap(width: s, height: s, values: (0..<16).map { $0 == 15 ? 1 : ($0 == 5 ? 0.5 : 0) })
        let mapB = try ScoreMap(width: s, height: s, values: (0..<16).map { $0 == 15 ? 0.5 : 0 })
        let images = [mapA, mapB].enumerated().map { i, m in
            EvaluatedImage(index: i, imagePath: "/x/\(i).png", defectType: "good", label: 0, cleanScore: 0,
                           cleanMap: m, attacked: [])
        }
        let writer = HeatmapWriter(options: HeatmapOptions(gap: 1, predictedMask: false))
        let norm = try HeatmapNormalization.fit([mapA, mapB])
        let pa = try writer.panel(for: images[0], sample: sample(0), normalization: norm, threshold: nil)
        let pb = try writer.panel(for: images[1], sample: sample(1), normalization: norm, threshold: nil)
        #expect(pa.width == 3 * s + 2 && pa.height == s && pa.channels == 3)
        // Overlay panel starts at x = s + gap.
        func overlayRGB(_ p: Image, _ k: Int) -> [Float] { (0..<3).map { p[$0, k / s, s + 1 + k % s] } }
        #expect(overlayRGB(pb, 15) == overlayRGB(pa, 5))            // 0.5 in B looks like 0.5 in A
        #expect(overlayRGB(pb, 15) != overlayRGB(pa, 15))           // and not like A's maximum
        let top = JetColormap.rgb(1)
        #expect(abs(overlayRGB(pa, 15)[0] - (0.25 + 0.5 * top.r)) < 1e-6)
        // Per-image normalisation would have made B's maximum the top colour; here it is not.
        let perImage = try HeatmapNormalization.fit([mapB])
        let pbLocal = try writer.panel(for: images[1], sample: sample(1), normalization: perImage, threshold: nil)
        #expect(overlayRGB(pbLocal, 15) == overlayRGB(pa, 15))
    }

    @Test func writesPNGsRawMapsAndASortedIndex() throws {
        let samples = evalTestSet(normal: 4, anomalous: 4, seed: 3)
        let result = try evaluate(samples, attacks: [AttackSpec(epsilon: 0.05, steps: 2)])
        let dir = temporaryDirectory("write")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let summary = try HeatmapWriter().write(result, samples: samples, to: dir)

        // image | heat map | ground truth | predicted mask | attacked image | attacked heat map
        #expect(summary.columns.count == 6)
        #expect(summary.maskThreshold != nil)
        #expect(summary.pngPaths.count == samples.count)
        for (path, sample) in zip(summary.pngPaths, samples) {
            let png = try ImageIO.read(path: path)
            #expect(png.width == 6 * 16 + 5 * 4 && png.height == 16 && png.channels == 3)
            // First panel is the image itself (8-bit rounding).
            #expect(abs(png[0, 3, 3] - sample.image[0, 3, 3]) <= 0.5 / 255 + 1e-6)
            // Ground-truth panel (third) shows the mask.
            for y in 0..<16 {
                for x in 0..<16 { #expect(png[1, y, 2 * (16 + 4) + x] == sample.mask[0, y, x]) }
            }
        }

        // Raw maps: unnormalised values, in test-set order.
        let raw = try SafeTensorsFile.load(path: try #require(summary.rawMapsPath))
        #expect(try raw.floats("clean.maps") == result.images.flatMap { $0.cleanMap?.values ?? [] })
        #expect(try raw.floats("clean.scores") == result.images.map { $0.cleanScore })
        #expect(try raw.floats("attack0.scores") == result.images.map { $0.attacked[0].score })
        #expect(raw.info("masks")?.shape == [8, 16, 16] && raw.info("masks")?.dtype == "U8")
        #expect(raw.metadata["image_paths"]?.contains("000.png") == true)

        // index.html: every image once, sorted by clean score (descending), relative paths, colour bar.
        let html = try readText(summary.indexPath)
        let srcs = html.components(separatedBy: "<img src=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
        #expect(srcs.count == samples.count)
        #expect(Set(srcs) == Set(summary.pngPaths.map { "images/" + ($0 as NSString).lastPathComponent }))
        #expect(srcs.allSatisfy { !$0.hasPrefix("/") })
        let scores = html.components(separatedBy: "data-score=\"").dropFirst().compactMap { Float(String($0.prefix { $0 != "\"" })) }
        #expect(scores.count == samples.count)
        #expect(scores == scores.sorted(by: >))
        #expect(Set(scores) == Set(result.images.map { $0.cleanScore }))
        #expect(html.contains("linear-gradient") && html.contains("class=\"bar\""))
        #expect(html.contains("anomalous") && html.contains("scratch"))
        #expect(html.contains(String(format: "%.4g", summary.normalization.upper)))
    }

    @Test func refusesResultsWithoutMaps() throws {
        let samples = evalTestSet(normal: 2, anomalous: 2)
        let settings = EvaluationSettings(patchSize: 4, batchSize: 4, keepMaps: false, showProgress: false)
        let result = try Evaluator(detector: EvalBrightnessDetector(), settings: settings).evaluate(samples, category: "t")
        let dir = temporaryDirectory("nomaps")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: PatchGuardError.self) { _ = try HeatmapWriter().write(result, samples: samples, to: dir) }
        #expect(throws: PatchGuardError.self) {
            _ = try HeatmapWriter().write(result, samples: Array(samples.reversed()), to: dir)
        }
    }
}
