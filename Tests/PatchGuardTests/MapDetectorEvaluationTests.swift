import Foundation
import Testing
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// A detector with pixel-resolution maps (as the diffusion detector's): map = the channel mean of each pixel,
/// image score = the mean of the map's 4 largest values (so the score's gradient is spread over a few pixels).
final class PixelBrightnessDetector: AnomalyDetector {
    let imageSize: Int
    var mapHeight: Int { imageSize }
    var mapWidth: Int { imageSize }
    var isStochastic: Bool { false }
    init(imageSize: Int = 16) { self.imageSize = imageSize }

    func maps(_ x: UnsafePointer<Float>, batch: Int) -> [Float] {
        let m = imageSize * imageSize
        var out = [Float](repeating: 0, count: batch * m)
        for b in 0..<batch { for c in 0..<3 { for p in 0..<m { out[b * m + p] += x[(b * 3 + c) * m + p] / 3 } } }
        return out
    }
    func top(_ map: ArraySlice<Float>) -> [Int] {
        Array(map.indices.sorted { map[$0] > map[$1] }.prefix(4))
    }
    func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        let m = imageSize * imageSize, all = maps(images, batch: batch)
        let scores = (0..<batch).map { b -> Float in
            let slice = all[(b * m)..<((b + 1) * m)]
            return top(slice).reduce(0) { $0 + slice[$1] } / 4
        }
        return DetectorOutput(maps: all, scores: scores)
    }
    func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                  dImages: UnsafeMutablePointer<Float>) -> DetectorOutput {
        let m = imageSize * imageSize, out = outputs(images, batch: batch)
        let g = objective.gradient(out, batch: batch)
        for b in 0..<batch {
            var dMap = [Float](repeating: 0, count: m)
            if let d = g.dMaps { for p in 0..<m { dMap[p] = d[b * m + p] } }
            if let d = g.dScores { for p in top(out.maps[(b * m)..<((b + 1) * m)]) { dMap[p - b * m] += d[b] / 4 } }
            for c in 0..<3 { for p in 0..<m { dImages[(b * 3 + c) * m + p] = dMap[p] / 3 } }
        }
        return out
    }
}

/// ``Evaluator/init(mapDetector:settings:)``: a detector's own scores and pixel maps go into the same passes,
/// worst case, metrics, kept maps and heat maps as PatchGuard's.
@Suite struct MapDetectorEvaluationTests {
    func settings(attacks: [AttackSpec] = []) -> EvaluationSettings {
        EvaluationSettings(patchSize: 1, batchSize: 5, attacks: attacks, seed: 3, keepMaps: true, showProgress: false)
    }

    @Test func cleanScoresAndMapsAreTheDetectorsOwn() throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, seed: 5)
        let detector = PixelBrightnessDetector()
        let result = try Evaluator(mapDetector: detector, settings: settings()).evaluate(samples, category: "toy")
        var scores = [Float](), pixel = PixelAUROC()
        for (i, s) in samples.enumerated() {
            let out = s.image.pixels.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: 1) }
            #expect(result.images[i].cleanScore == out.scores[0])
            #expect(result.images[i].cleanMap?.values == out.maps)
            scores.append(out.scores[0])
            try pixel.update(scores: out.maps, mask: s.mask.pixels.map { $0 > 0.5 })
        }
        let image = try BinaryAUROC.auroc(scores: scores.map(Double.init), labels: samples.map { $0.label == 1 })
        #expect(abs(try #require(result.report.clean.imageAUROC) - image) < 1e-12)
        #expect(abs(try #require(result.report.clean.pixelAUROC) - (try pixel.compute().auroc)) < 1e-9)
        #expect(image > 0.9)
    }

    @Test func attacksUsePixelLabelsAndGetAWorstCase() throws {
        let samples = evalTestSet(normal: 6, anomalous: 6, seed: 5)
        let pixelAttack = AttackSpec(epsilon: 0.3, steps: 10, target: .patches)
        let imageAttack = AttackSpec(epsilon: 0.3, steps: 10, target: .imageTopK)
        let result = try Evaluator(mapDetector: PixelBrightnessDetector(),
                                   settings: settings(attacks: [pixelAttack, imageAttack]))
            .evaluate(samples, category: "toy")
        let clean = result.report.clean
        let pixelRow = result.report.attacks[0].metrics, imageRow = result.report.attacks[1].metrics
        // The pixel-label attack (anomalous pixels down, normal ones up) breaks the map; the image attack the score.
        #expect(try #require(pixelRow.pixelAUROC) < (try #require(clean.pixelAUROC)) - 0.3)
        #expect(try #require(imageRow.imageAUROC) < (try #require(clean.imageAUROC)) - 0.3)
        let worst = try #require(result.report.worstCase.first)
        #expect(worst.attacks.count == 2)
        #expect(try #require(worst.metrics.imageAUROC) <= (try #require(imageRow.imageAUROC)))
        // Attacked images stay within ε = 0.3 of the clean ones and in [0, 1].
        for (i, s) in samples.enumerated() {
            let x = try #require(result.images[i].attacked[1].image).pixels
            for (a, c) in zip(x, s.image.pixels) { #expect(abs(a - c) <= 0.3 + 1e-6 && a >= 0 && a <= 1) }
        }
        // The heat-map writer takes it as it takes PatchGuard's.
        let dir = NSTemporaryDirectory() + "pg-mapdet-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let summary = try HeatmapWriter().write(result, samples: samples, to: dir)
        #expect(summary.pngPaths.count == samples.count)
        #expect(FileManager.default.fileExists(atPath: summary.indexPath))
    }

    @Test func aMapThatIsNotAtPixelResolutionIsRefused() {
        #expect(throws: PatchGuardError.self) {
            _ = try Evaluator(mapDetector: LinearMapToyDetector(), settings: settings())
        }
    }
}
