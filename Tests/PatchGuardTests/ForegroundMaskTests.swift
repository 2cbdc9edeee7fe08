import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod
import PatchGuardJobs
import Testing

/// From a map to a binary mask (Otsu, quantile, components, dilation, fallback), the config, and the category job
/// end to end on a generated category with a tiny classifier checkpoint.
@Suite("Foreground masks")
struct ForegroundMaskTests {

    // MARK: - Otsu

    /// Naive reference: σ²_B(t) computed from the two classes directly, first maximum.
    static func naiveOtsu(_ h: [Int]) -> Int? {
        var best: Int? = nil, bestSigma = -1.0
        let total = Double(h.reduce(0, +))
        for t in 0..<255 {
            let lo = (0...t).map { (Double($0), Double(h[$0])) }, hi = ((t + 1)...255).map { (Double($0), Double(h[$0])) }
            let n1 = lo.reduce(0) { $0 + $1.1 }, n2 = hi.reduce(0) { $0 + $1.1 }
            guard n1 > 0, n2 > 0 else { continue }
            let m1 = lo.reduce(0) { $0 + $1.0 * $1.1 } / n1, m2 = hi.reduce(0) { $0 + $1.0 * $1.1 } / n2
            let sigma = (n1 / total) * (n2 / total) * (m1 - m2) * (m1 - m2)
            if sigma > bestSigma * (1 + 1e-12) { bestSigma = sigma; best = t }
        }
        return best
    }

    @Test func otsuSplitsAKnownBimodalHistogram() throws {
        var h = [Int](repeating: 0, count: 256)
        h[51] = 300; h[204] = 700
        // Every t in 51..<204 separates the modes equally well; the first one is returned.
        #expect(otsuThreshold(histogram: h) == 51)
        // Hand-computed: levels {0, 0, 100, 200}: σ²(t < 100) = ¼·¼·… → {0,0}|{100,200}: 0.5·0.5·150² = 5625 beats
        // {0,0,100}|{200}: 0.75·0.25·(200 − 100/3)² ≈ 5208.
        var h2 = [Int](repeating: 0, count: 256)
        h2[0] = 2; h2[100] = 1; h2[200] = 1
        #expect(otsuThreshold(histogram: h2) == 0)
        // One level only: no split.
        var h3 = [Int](repeating: 0, count: 256)
        h3[77] = 10
        #expect(otsuThreshold(histogram: h3) == nil)
        #expect(otsuThreshold(histogram: [Int](repeating: 0, count: 256)) == nil)

        // Values drawn around two modes: the mask is exactly the upper mode.
        var rng = SeededRNG(seed: 1)
        var values: [Float] = [], upper: [Bool] = []
        for _ in 0..<500 {
            let high = rng.uniform() < 0.3
            values.append(Float(high ? rng.uniform(0.7, 0.9) : rng.uniform(0.05, 0.35)))
            upper.append(high)
        }
        let t = try #require(otsuThreshold(levels: values))
        #expect(t >= level8(0.35) && t < level8(0.7))
        #expect(values.map { level8($0) > t } == upper)
    }

    @Test func otsuAgreesWithTheNaiveReference() {
        var rng = SeededRNG(seed: 2)
        for trial in 0..<20 {
            var h = [Int](repeating: 0, count: 256)
            let nonzero = 2 + trial % 7
            for _ in 0..<nonzero { h[rng.int(in: 0..<256)] += rng.int(in: 1..<50) }
            #expect(otsuThreshold(histogram: h) == Self.naiveOtsu(h), "trial \(trial): \(h.enumerated().filter { $0.1 > 0 })")
        }
    }

    @Test func quantileThreshold() throws {
        let map = (0..<100).map { Float($0) }
        #expect(try quantile(map, 0.75) == 74.25)
        #expect(try quantile(map, 0) == 0)
        let r = try foregroundMask(map: map, width: 10, height: 10,
                                   options: ForegroundMaskOptions(threshold: .quantile(0.75), largestComponent: false))
        // Normalised values v/99 above the 0.75-quantile 74.25/99: the 25 values 75…99 (the last 2.5 rows).
        #expect(r.mask.pixels.reduce(0, +) == 25)
        #expect(Array(r.mask.pixels[75...]) == [Float](repeating: 1, count: 25))
        #expect(throws: PatchGuardError.self) {
            try foregroundMask(map: map, width: 10, height: 10, options: ForegroundMaskOptions(threshold: .quantile(1)))
        }
    }

    // MARK: - Components and dilation

    /// 9×7 mask: a single pixel (size 1), a diagonal pair joined by a corner (size 2 with 8-connectivity), an
    /// L of 4 and a 3×3 block of 9.
    static let handMask: [UInt8] = [
        1, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1, 0, 0, 1, 1, 1,
        0, 0, 0, 0, 1, 0, 1, 1, 1,
        0, 0, 0, 0, 0, 0, 1, 1, 1,
        1, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 1, 0, 0, 0, 0, 0, 0, 0,
    ]

    @Test func smallComponentsAreRemovedAndTheLargestKept() throws {
        let m = BinaryMask(width: 9, height: 7, bits: Self.handMask)
        #expect(try removingSmallComponents(m, minPixels: 0) == m)
        let atLeast2 = try removingSmallComponents(m, minPixels: 2)
        #expect(atLeast2.count == 2 + 4 + 9)
        #expect(atLeast2[0, 0] == 0)                      // the lone pixel is gone
        #expect(atLeast2[1, 3] == 1 && atLeast2[2, 4] == 1) // the diagonal pair is one component of 2
        let atLeast4 = try removingSmallComponents(m, minPixels: 4)
        #expect(atLeast4.count == 4 + 9)
        #expect(atLeast4[1, 3] == 0 && atLeast4[6, 1] == 1)
        let largest = try keepingLargestComponent(m)
        #expect(largest.count == 9)
        #expect((1...3).allSatisfy { y in (6...8).allSatisfy { x in largest[y, x] == 1 } })
        #expect(try removingSmallComponents(m, minPixels: 10).isEmpty)
    }

    @Test func pipelineOrderAndDilation() throws {
        // A map that is high exactly on the hand mask: Otsu recovers it; the options then act in order.
        let map = Self.handMask.map { Float($0) * 0.8 + 0.1 }
        var r = try foregroundMask(map: map, width: 9, height: 7, options: ForegroundMaskOptions(largestComponent: false))
        #expect(r.mask.pixels == Self.handMask.map { Float($0) })
        #expect(r.warning == nil)
        r = try foregroundMask(map: map, width: 9, height: 7,
                               options: ForegroundMaskOptions(minComponent: 3, largestComponent: false))
        #expect(r.mask.pixels.reduce(0, +) == 13)
        // Largest component, then a dilation by 1: the 3×3 block becomes 5×4 (clipped by the right edge).
        r = try foregroundMask(map: map, width: 9, height: 7, options: ForegroundMaskOptions(dilation: 1))
        #expect(r.mask.pixels.reduce(0, +) == 5 * 4)
        #expect(r.mask[0, 0, 5] == 1 && r.mask[0, 4, 8] == 1 && r.mask[0, 0, 4] == 0 && r.mask[0, 5, 6] == 0)
    }

    // MARK: - Mask properties

    @Test func masksAreBinaryImageSizedDeterministicAndNonEmpty() throws {
        var rng = SeededRNG(seed: 3)
        for trial in 0..<6 {
            let w = 17 + trial * 3, h = 11 + trial
            // A smooth random bump field, as an upsampled Grad-CAM map looks.
            let cx = rng.uniform(0, Double(w)), cy = rng.uniform(0, Double(h)), s = rng.uniform(2, 6)
            let map = (0..<(w * h)).map { i -> Float in
                let x = Double(i % w), y = Double(i / w)
                return Float(exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * s * s)) + 0.05 * rng.uniform())
            }
            let options = ForegroundMaskOptions(threshold: trial % 2 == 0 ? .otsu : .quantile(0.6),
                                                dilation: trial % 3, minComponent: trial, largestComponent: trial % 2 == 1)
            let a = try foregroundMask(map: map, width: w, height: h, options: options)
            let b = try foregroundMask(map: map, width: w, height: h, options: options)
            #expect(a == b)
            #expect(a.mask.width == w && a.mask.height == h && a.mask.channels == 1)
            #expect(a.mask.pixels.allSatisfy { $0 == 0 || $0 == 1 })
            #expect(a.mask.pixels.contains(1))
            #expect(a.mask.pixels.contains(0), "a bump map should not cover the whole image")
            #expect(a.normalizedMap.min() == 0 && a.normalizedMap.max() == 1)
        }
    }

    @Test func emptyResultsFallBackToTheWholeImageWithAWarning() throws {
        // A constant map (e.g. a Grad-CAM map that the ReLU zeroed everywhere).
        var r = try foregroundMask(map: [Float](repeating: 0, count: 30), width: 6, height: 5)
        #expect(r.mask.pixels == [Float](repeating: 1, count: 30))
        #expect(r.isFallback)
        #expect(r.warning?.contains("constant") == true)
        // Everything removed as too small.
        let map: [Float] = [0, 0, 0, 0, 1, 0, 0, 0, 0]
        r = try foregroundMask(map: map, width: 3, height: 3, options: ForegroundMaskOptions(minComponent: 2))
        #expect(r.mask.pixels == [Float](repeating: 1, count: 9))
        #expect(r.warning?.contains("min_component") == true)
        // Non-finite values count as the minimum; the finite bump survives.
        r = try foregroundMask(map: [.nan, 0, 1, .infinity, 0, 0], width: 3, height: 2,
                               options: ForegroundMaskOptions(largestComponent: false))
        #expect(r.mask.pixels == [0, 0, 1, 0, 0, 0])
        #expect(throws: PatchGuardError.self) { try foregroundMask(map: [1, 2], width: 3, height: 1) }
    }

    @Test func iouOfHandBuiltMasks() throws {
        let a = Image(width: 4, height: 1, channels: 1, pixels: [1, 1, 0, 0])
        let b = Image(width: 4, height: 1, channels: 1, pixels: [0, 1, 1, 0])
        #expect(try maskIoU(a, b) == 1.0 / 3.0)
        #expect(try maskIoU(a, a) == 1)
        #expect(try maskIoU(Image(width: 4, height: 1, channels: 1), Image(width: 4, height: 1, channels: 1)) == 1)
    }

    @Test func previewLayout() throws {
        let image = Image(width: 5, height: 3, channels: 3, value: 0.25)
        let mask = Image(width: 5, height: 3, channels: 1, pixels: (0..<15).map { Float($0 % 2) })
        let heat = (0..<15).map { Float($0) / 14 }
        let p = try foregroundPreview(image: image, heatMap: heat, mask: mask)
        #expect(p.width == 3 * 5 + 2 * 4 && p.height == 3 && p.channels == 3)
        #expect(p[0, 1, 2] == 0.25)                                  // image panel
        #expect(p[2, 0, 9] == JetColormap.rgb(0).b && p[0, 2, 13] == JetColormap.rgb(1).r) // heat panel at x = 9
        #expect(p[0, 0, 18] == 0 && p[0, 0, 19] == 1)                // mask panel starts at x = 18
        #expect(p[1, 2, 5] == 1)                                      // white gap
        #expect(throws: PatchGuardError.self) { try foregroundPreview(image: image, heatMap: [0], mask: mask) }
    }

    // MARK: - Config

    @Test func configDecodesSnakeCaseAndValidates() throws {
        let json = """
        {"method": "gradcam", "border_width": 0.1, "arch": "vit_tiny_patch16_224", "weights": "/x.safetensors", "layer": 11, "target": "topk",
         "class_index": 3, "top_k": 2, "threshold": "quantile", "quantile": 0.4, "dilation": 2,
         "min_component": 50, "largest_component": false}
        """
        let c = try JSONDecoder().decode(ForegroundConfig.self, from: Data(json.utf8))
        try c.validate()
        #expect(c.layer == 11 && c.classIndex == 3 && c.topK == 2 && c.minComponent == 50 && !c.largestComponent)
        #expect(try c.gradCAMTarget == .topK(2))
        #expect(try c.maskOptions == ForegroundMaskOptions(threshold: .quantile(0.4), dilation: 2, minComponent: 50,
                                                           largestComponent: false))
        // Defaults round-trip with every key present (the job config's schema is built from them).
        let d = ForegroundConfig()
        let encoded = try JSONEncoder().encode(d)
        let keys = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any]).keys
        #expect(Set(keys) == ["method", "border_width", "arch", "weights", "layer", "target", "class_index", "top_k", "threshold", "quantile",
                              "dilation", "min_component", "largest_component"])
        #expect(try JSONDecoder().decode(ForegroundConfig.self, from: encoded) == d)
        #expect(try d.gradCAMTarget == .top1 && d.threshold == .otsu && d.largestComponent)
        #expect(d.method == .border && c.method == .gradcam && c.borderWidth == 0.1)

        func message(_ edit: (inout ForegroundConfig) -> Void) -> String {
            var c = ForegroundConfig()
            edit(&c)
            do { try c.validate(); return "" } catch { return "\(error)" }
        }
        // Unknown enum values cannot be assigned; they fail when the job config is decoded, naming the key.
        func loadMessage(_ assignment: String) -> String {
            do { _ = try JobConfig.load(path: nil, overrides: [assignment]); return "" } catch { return "\(error)" }
        }
        #expect(loadMessage("foreground.target=top-1").contains("foreground.target"))
        #expect(loadMessage("foreground.method=grad-cam").contains("foreground.method"))
        #expect(message { $0.borderWidth = 0.5 }.contains("foreground.border_width"))
        // A classifier with the border method is a contradiction, not silently ignored.
        #expect(message { $0.weights = "/x.safetensors" }.contains("foreground.method"))
        #expect(loadMessage("foreground.threshold=otsu2").contains("foreground.threshold"))
        #expect(message { $0.quantile = 1 }.contains("foreground.quantile"))
        #expect(message { $0.topK = 0 }.contains("foreground.top_k"))
        #expect(message { $0.layer = -2 }.contains("foreground.layer"))
        #expect(message { $0.minComponent = -1 }.contains("foreground.min_component"))
        #expect(message { $0.dilation = -1 }.contains("foreground.dilation"))
        #expect(message { _ in }.isEmpty)
    }

    // MARK: - The category job

    static func tempDir(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "pg-foreground-\(name)-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func withoutWeightsTheJobExplainsTheChoicesAndWritesNothing() throws {
        let root = try Self.tempDir("noweights")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cat = try #require(try GeneratedDataset.write(to: root, seed: 1, imageSize: 32,
                                                          counts: GeneratedCounts(trainGood: 3, testGood: 1,
                                                                                  testDefective: 1),
                                                          categories: [.widget]).first)
        var gradcam = ForegroundConfig()
        gradcam.method = .gradcam
        do {
            _ = try computeForegroundMasks(category: cat, config: gradcam)
            Issue.record("expected an error without foreground.weights")
        } catch let PatchGuardError.config(m) {
            #expect(m.contains("foreground.weights") && m.contains("texture") && m.contains("data.category_type"))
            #expect(m.contains("\"border\""))
        }
        #expect(!FileManager.default.fileExists(atPath: cat.directory + "/train/foreground_mask"))
    }

    @Test func jobWritesSkipsAndForcesMasksFromACheckpoint() throws {
        let root = try Self.tempDir("job")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cat = try #require(try GeneratedDataset.write(to: root, seed: 2, imageSize: 40,
                                                          counts: GeneratedCounts(trainGood: 5, testGood: 1,
                                                                                  testDefective: 1),
                                                          categories: [.widget]).first)
        // A vit_cpu_tiny classifier at 32×32 (4×4 grid) with 3 classes, random weights, saved with timm names.
        var cfg = try ViTConfig.preset("vit_cpu_tiny", imageSize: 32)
        cfg.numClasses = 3
        let model = try ViT<Float>(config: cfg, maxBatch: 1, seed: 5)
        let weights = root + "/classifier.safetensors"
        try model.saveWeights(to: weights)

        var config = ForegroundConfig()
        config.method = .gradcam
        config.arch = "vit_cpu_tiny"
        config.weights = weights
        let loaded = try ForegroundClassifier.load(config: config, maxBatch: 2)
        #expect(loaded.config.imageSize == 32 && loaded.config.numClasses == 3)

        let preview = root + "/preview"
        var calls: [(Int, Int)] = []
        let first = try computeForegroundMasks(category: cat, config: config, previewDir: preview, maxBatch: 2) {
            calls.append(($0, $1))
        }
        #expect(first.written == 5 && first.skipped == 0)
        #expect(calls.first! == (0, 5) && calls.last! == (5, 5))
        let outDir = cat.directory + "/train/foreground_mask"
        #expect(first.outputDirectory == outDir)
        var masks: [Image] = []
        for s in cat.train {
            let m = try ImageIO.readMask(path: "\(outDir)/\(s.stem).png")
            #expect(m.width == 40 && m.height == 40)                       // the image's own size
            #expect(m.pixels.allSatisfy { $0 == 0 || $0 == 1 } && m.pixels.contains(1))
            masks.append(m)
            let p = try ImageIO.read(path: "\(preview)/\(s.stem).png")
            #expect(p.width == 3 * 40 + 8 && p.height == 40)
        }
        // The scanner now finds them, so training uses them.
        let rescanned = try MVTecCategory.scan(root: root, category: "widget")
        #expect(rescanned.train.allSatisfy { $0.foregroundMaskPath != nil })

        // Existing masks are kept, then recomputed identically with force.
        let second = try computeForegroundMasks(category: cat, config: config)
        #expect(second.written == 0 && second.skipped == 5)
        let forced = try computeForegroundMasks(category: cat, config: config, force: true)
        #expect(forced.written == 5 && forced.skipped == 0)
        for (i, s) in cat.train.enumerated() {
            #expect(try ImageIO.readMask(path: "\(outDir)/\(s.stem).png") == masks[i])
        }
        // Another output folder.
        let other = root + "/elsewhere"
        let third = try computeForegroundMasks(category: cat, config: config, outputDir: other)
        #expect(third.written == 5 && FileManager.default.fileExists(atPath: other + "/000.png"))

        // Settings that do not fit the classifier.
        var bad = config
        bad.target = .classIndex; bad.classIndex = 3
        #expect(throws: PatchGuardError.self) { try computeForegroundMasks(category: cat, config: bad, force: true) }
        bad = config; bad.layer = 5
        #expect(throws: PatchGuardError.self) { try computeForegroundMasks(category: cat, config: bad, force: true) }
        bad = config; bad.arch = "vit_tiny_patch16_224"
        #expect(throws: PatchGuardError.self) { try ForegroundClassifier.load(config: bad) }
    }
}
