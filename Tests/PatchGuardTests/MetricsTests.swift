import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import PatchGuardCore
@testable import PatchGuardImage
@testable import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs
import Testing

/// AUROC, ROC, F1-max, AUPRO and connected components on hand-built cases with known answers, plus naive references.
@Suite struct MetricsTests {
    func auroc(_ s: [Double], _ l: [Int], sourceLocation: SourceLocation = #_sourceLocation) throws -> Double {
        var m = ImageAUROC()
        try m.update(scores: s, labels: l)
        return try m.compute().auroc
    }

    /// Pair counting straight from the definition: Σ [s⁺ > s⁻] + ½[s⁺ = s⁻] over all pairs, / (P·N).
    func naiveAUROC(_ s: [Double], _ l: [Bool]) -> Double {
        var num = 0.0, pairs = 0.0
        for i in s.indices where l[i] {
            for j in s.indices where !l[j] {
                num += s[i] > s[j] ? 1 : (s[i] == s[j] ? 0.5 : 0)
                pairs += 1
            }
        }
        return num / pairs
    }

    // MARK: AUROC known answers

    @Test func aurocPerfectInvertedAndTies() throws {
        #expect(try auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1)
        #expect(try auroc([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1]) == 0)
        #expect(try auroc([0.3, 0.3, 0.3, 0.3, 0.3], [0, 1, 0, 1, 1]) == 0.5)
    }

    /// Pairs (positive, negative): 0.35 beats 0.1, loses to 0.4; 0.8 beats both → 3 of 4 → 0.75.
    /// With a tie: positives {0.5, 0.9}, negatives {0.5, 0.2}: 0.5 ties 0.5 (½) and beats 0.2 (1); 0.9 beats both
    /// (2) → 3.5 / 4 = 0.875.
    @Test func aurocHandComputedWithPartialTies() throws {
        #expect(try auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75)
        #expect(try auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == 0.875)
    }

    @Test func aurocInvariantUnderMonotoneTransformsAndAnyRange() throws {
        var rng = SeededRNG(seed: 1)
        let n = 200
        let labels = (0..<n).map { _ in rng.uniform() < 0.3 }
        // Negative logits with a shift for positives, quantised to force ties.
        let s = labels.map { l in ((rng.normal() + (l ? 1 : 0)) * 4).rounded() / 4 - 5 }
        let base = try BinaryAUROC.auroc(scores: s, labels: labels)
        #expect(abs(base - naiveAUROC(s, labels)) < 1e-12)
        #expect(base > 0.6 && base < 0.95)
        #expect(try BinaryAUROC.auroc(scores: s.map { exp($0) }, labels: labels) == base)
        #expect(try BinaryAUROC.auroc(scores: s.map { 3 * $0 - 7 }, labels: labels) == base)
        // A decreasing transform mirrors it.
        #expect(abs(try BinaryAUROC.auroc(scores: s.map { -$0 }, labels: labels) - (1 - base)) < 1e-12)
        // Infinities are ordinary scores.
        #expect(try BinaryAUROC.auroc(scores: [-.infinity, 0, .infinity, 1e30], labels: [false, false, true, true]) == 1)
    }

    @Test func aurocStreamingEqualsOneBatch() throws {
        var rng = SeededRNG(seed: 2)
        let s = (0..<97).map { _ in (rng.uniform(-3, 3) * 8).rounded() / 8 }
        let l = s.map { v in rng.uniform() < 0.4 + 0.1 * v }
        var one = BinaryAUROC()
        try one.update(scores: s, labels: l)
        var many = BinaryAUROC()
        var start = 0
        for size in [1, 10, 0, 33, 53] {
            try many.update(scores: Array(s[start..<(start + size)]), labels: Array(l[start..<(start + size)]))
            start += size
        }
        #expect(many.count == 97)
        #expect(try many.compute() == (try one.compute()))
    }

    @Test func aurocRejectsOneClassAndBadInput() throws {
        var m = BinaryAUROC()
        try m.update(scores: [0.1, 0.2, 0.3], labels: [true, true, true])
        #expect(throws: PatchGuardError.self) { try m.compute() }
        #expect(throws: PatchGuardError.self) { try BinaryAUROC.auroc(scores: [0.5, 0.1], labels: [false, false]) }
        #expect(throws: PatchGuardError.self) { try BinaryAUROC.auroc(scores: [], labels: []) }
        #expect(throws: PatchGuardError.self) { try m.update(scores: [0.1], labels: [true, false]) }
        #expect(throws: PatchGuardError.self) { try m.update(scores: [Double.nan], labels: [false]) }
        #expect(throws: PatchGuardError.self) { try m.update(scores: [0.1], labels: [2]) }
        var p = PixelAUROC()
        try p.update(scores: [0.1, 0.2], mask: [0, 0])
        #expect(throws: PatchGuardError.self) { try p.compute() }
    }

    // MARK: ROC curve and F1

    /// Thresholds 0.8, 0.4, 0.35, 0.1 on scores [0.1, 0.4, 0.35, 0.8], labels [0, 0, 1, 1].
    @Test func rocCurvePointsExact() throws {
        var m = BinaryAUROC()
        try m.update(scores: [0.1, 0.4, 0.35, 0.8], labels: [0, 0, 1, 1])
        let r = try m.compute()
        #expect(r.roc.fpr == [0, 0, 0.5, 0.5, 1])
        #expect(r.roc.tpr == [0, 0.5, 0.5, 1, 1])
        #expect(r.roc.thresholds == [.infinity, 0.8, 0.4, 0.35, 0.1])
        #expect(r.distinctScores == 4 && r.positives == 2 && r.negatives == 2)
    }

    @Test func rocDownsamplingKeepsEndsAndBoundsSize() throws {
        var rng = SeededRNG(seed: 5)
        let l = (0..<20_000).map { _ in rng.uniform() < 0.5 }
        let s = l.map { $0 ? rng.normal() + 1 : rng.normal() }
        var m = BinaryAUROC()
        try m.update(scores: s, labels: l)
        let r = try m.compute(curveResolution: 50)
        #expect(r.distinctScores == 20_000)
        #expect(r.roc.fpr.count <= 2 * 50 + 2 && r.roc.fpr.count >= 50)
        #expect(r.roc.fpr.first == 0 && r.roc.tpr.first == 0 && r.roc.fpr.last == 1 && r.roc.tpr.last == 1)
        for i in 1..<r.roc.fpr.count {
            #expect(r.roc.fpr[i] >= r.roc.fpr[i - 1] && r.roc.tpr[i] >= r.roc.tpr[i - 1])
            #expect(r.roc.thresholds[i] < r.roc.thresholds[i - 1])
        }
        // Trapezoid area of the downsampled curve is close to (not the source of) the exact AUROC.
        var area = 0.0
        for i in 1..<r.roc.fpr.count {
            area += (r.roc.fpr[i] - r.roc.fpr[i - 1]) * (r.roc.tpr[i] + r.roc.tpr[i - 1]) / 2
        }
        #expect(abs(area - r.auroc) < 0.01)
        #expect(abs(r.auroc - 0.76) < 0.02)  // Φ(1/√2) ≈ 0.760 for unit normals one apart
    }

    /// Scores [0.9, 0.8, 0.7, 0.6, 0.5], labels [1, 0, 1, 1, 0], P = 3. F1 = 2TP/(TP + FP + P) at each threshold:
    /// 0.9: 2/4 = 0.5; 0.8: 2/5 = 0.4; 0.7: 4/6; 0.6: 6/7 ≈ 0.857 (TP 3, FP 1); 0.5: 6/8. Best 6/7 at 0.6 with
    /// precision 3/4 and recall 1.
    @Test func f1MaxKnownCase() throws {
        var m = BinaryAUROC()
        try m.update(scores: [0.9, 0.8, 0.7, 0.6, 0.5], labels: [1, 0, 1, 1, 0])
        let f = try m.compute().f1Max
        #expect(abs(f.f1 - 6.0 / 7) < 1e-12)
        #expect(f.threshold == 0.6 && f.precision == 0.75 && f.recall == 1)
        // Pixel-level F1-max is the same sweep.
        var p = PixelAUROC()
        try p.update(scores: [0.9, 0.8, 0.7, 0.6, 0.5], mask: [1, 0, 1, 1, 0])
        let pf = try p.compute().f1Max
        #expect(abs(pf.f1 - 6.0 / 7) < 1e-12 && pf.threshold == Double(Float(0.6)))
    }

    // MARK: pixel AUROC

    @Test func pixelAUROCMatchesImageAUROCAndNaive() throws {
        var rng = SeededRNG(seed: 7)
        // > 4096 pixels per class so the radix path runs; quantised scores with negative values to force ties.
        let n = 9000
        let mask: [UInt8] = (0..<n).map { _ in rng.uniform() < 0.55 ? 255 : 0 }
        let scores: [Float] = mask.map { m in Float(((rng.normal() + (m != 0 ? 0.7 : 0)) * 10).rounded() / 10) }
        var pixel = PixelAUROC()
        // Streamed in uneven chunks.
        var start = 0
        for size in [1000, 3, 4997, 3000] {
            try pixel.update(scores: Array(scores[start..<(start + size)]), mask: Array(mask[start..<(start + size)]))
            start += size
        }
        let r = try pixel.compute()
        var image = BinaryAUROC()
        try image.update(scores: scores, labels: mask.map { $0 != 0 })
        let ri = try image.compute()
        #expect(r.auroc == ri.auroc)
        #expect(r.roc == ri.roc && r.f1Max == ri.f1Max && r.distinctScores == ri.distinctScores)
        let sub = 1500  // naive pair counting on a prefix keeps the test fast in debug
        var prefix = PixelAUROC()
        try prefix.update(scores: Array(scores[0..<sub]), mask: Array(mask[0..<sub]))
        #expect(abs(try prefix.compute().auroc
                    - naiveAUROC(scores[0..<sub].map(Double.init), mask[0..<sub].map { $0 != 0 })) < 1e-12)
        // Computing twice, and after more updates, stays consistent.
        #expect(try pixel.compute() == r)
    }

    @Test func radixSortAndKeysOrderFloats() {
        var rng = SeededRNG(seed: 9)
        let specials: [Float] = [-.infinity, .infinity, -0.0, 0, -.leastNonzeroMagnitude, .leastNonzeroMagnitude,
                                 -.greatestFiniteMagnitude, .greatestFiniteMagnitude]
        let values = specials + (0..<10_000).map { _ in Float(rng.normal() * 100) }
        for v in values { #expect(floatFromKey(orderedKey(v)) == v) }
        #expect(orderedKey(-0.0) == orderedKey(0))
        var keys = values.map(orderedKey)
        var temp = [UInt32](repeating: 0, count: keys.count)
        keys.withUnsafeMutableBufferPointer { k in temp.withUnsafeMutableBufferPointer { radixSort(k, temp: $0, shift: 0) } }
        #expect(keys.map(floatFromKey) == values.sorted())
        // 64-bit entries sorted by their high 32 bits only, stably.
        var entries = (0..<10_000).map { i in UInt64(rng.int(in: 0..<50)) << 32 | UInt64(i) }
        var temp64 = [UInt64](repeating: 0, count: entries.count)
        let expected = entries.sorted()  // low bits are the original index, so this is the stable order
        entries.withUnsafeMutableBufferPointer { e in temp64.withUnsafeMutableBufferPointer { radixSort(e, temp: $0, shift: 32) } }
        #expect(entries == expected)
    }

    // MARK: connected components

    @Test func connectedComponentsEightVersusFour() throws {
        // 1 . . 1
        // . 1 . 1
        // . . . .
        // 1 1 . 1
        let m: [UInt8] = [1, 0, 0, 1,
                          0, 1, 0, 1,
                          0, 0, 0, 0,
                          1, 1, 0, 1]
        let eight = try connectedComponents(mask: m, width: 4, height: 4)
        #expect(eight.count == 4)
        #expect(eight.labels == [1, 0, 0, 2,
                                 0, 1, 0, 2,
                                 0, 0, 0, 0,
                                 3, 3, 0, 4])
        let four = try connectedComponents(mask: m, width: 4, height: 4, connectivity: .four)
        #expect(four.count == 5)
        #expect(throws: PatchGuardError.self) { try connectedComponents(mask: m, width: 3, height: 4) }
    }

    // MARK: AUPRO

    func aupro(_ images: [(scores: [Float], mask: [UInt8])], width: Int, height: Int,
               limit: Double = 0.3) throws -> PixelMetricsResult {
        var m = PixelMetrics()
        for im in images { try m.update(scores: im.scores, mask: im.mask, width: width, height: height) }
        return try m.compute(fprLimit: limit)
    }

    @Test func auproPerfectAndInverted() throws {
        let mask: [UInt8] = [0, 0, 1, 1, 0,
                             0, 0, 1, 1, 0,
                             1, 0, 0, 0, 0]
        let perfect = mask.map { Float($0) * 3 - 1 }  // anomalous 2, normal −1
        let r = try aupro([(perfect, mask), ([Float](repeating: -1, count: 15), [UInt8](repeating: 0, count: 15))],
                          width: 5, height: 3)
        #expect(abs(r.aupro.aupro - 1) < 1e-12)
        #expect(r.aupro.regions == 2 && r.aupro.normalPixels == 10 + 15)
        #expect(r.pixel.auroc == 1)
        let inverted = mask.map { -Float($0) }
        #expect(try aupro([(inverted, mask)], width: 5, height: 3).aupro.aupro == 0)
    }

    /// Hand-built stripes. One 4×7 image: region A = column 0 (4 px), region B = column 6 (4 px), normal =
    /// columns 1–5 (20 px, so FPR moves in steps of 1/20 and 0.3 = 6/20).
    /// Scores: A all 0.9; B: rows 0–1 at 0.8, rows 2–3 at 0.5; normal: 2 px at 0.85, 6 px at 0.5, 12 px at 0.
    /// Sweep (PRO = mean over the two regions of the detected fraction):
    ///     t = 0.9 : FPR 0,    PRO (1 + 0)/2   = 0.5
    ///     t = 0.85: FPR 0.1,  PRO 0.5
    ///     t = 0.8 : FPR 0.1,  PRO (1 + ½)/2   = 0.75
    ///     t = 0.5 : FPR 0.4,  PRO 1           (6 normal + the rest of B together: a diagonal segment)
    ///     t = 0   : FPR 1,    PRO 1
    /// Area on [0, 0.3]: (0,0)→(0,0.5): 0; (0,0.5)→(0.1,0.5): 0.05; vertical: 0; then the diagonal from (0.1, 0.75)
    /// to (0.4, 1), cut at 0.3 where PRO = 0.75 + (0.2/0.3)·0.25 = 11/12: 0.2·(0.75 + 11/12)/2 = 1/6.
    /// Total 0.05 + 1/6 = 13/60; normalised by 0.3 → 13/18 ≈ 0.7222.
    /// With the 0.5 group split into 4 normal px at 0.5 and B's rest at 0.45 (and 2 more normal at 0), the curve
    /// reaches (0.3, 0.75) then (0.3, 1): area 0.05 + 0.2·0.75 = 0.2 → 2/3.
    @Test func auproStripesHandComputed() throws {
        let (w, h) = (7, 4)
        var mask = [UInt8](repeating: 0, count: w * h)
        var scores = [Float](repeating: 0, count: w * h)
        for y in 0..<h {
            mask[y * w] = 1; scores[y * w] = 0.9
            mask[y * w + 6] = 1; scores[y * w + 6] = y < 2 ? 0.8 : 0.5
        }
        // Normal pixels in raster order: the first 2 at 0.85, the next 6 at 0.5, the other 12 stay 0.
        var k = 0
        for y in 0..<h { for x in 1...5 { scores[y * w + x] = k < 2 ? 0.85 : (k < 8 ? 0.5 : 0); k += 1 } }
        let r = try aupro([(scores, mask)], width: w, height: h)
        #expect(r.aupro.regions == 2 && r.aupro.normalPixels == 20)
        #expect(abs(r.aupro.aupro - 13.0 / 18) < 1e-7)
        #expect(abs((r.aupro.fpr.last ?? 0) - 0.3) < 1e-12 && abs((r.aupro.pro.last ?? 0) - 11.0 / 12) < 1e-7)

        var scores2 = scores
        k = 0
        for y in 0..<h {
            if y >= 2 { scores2[y * w + 6] = 0.45 }
            for x in 1...5 { scores2[y * w + x] = k < 2 ? 0.85 : (k < 6 ? 0.5 : 0); k += 1 }
        }
        let r2 = try aupro([(scores2, mask)], width: w, height: h)
        #expect(abs(r2.aupro.aupro - 2.0 / 3) < 1e-7)
        // Limit 1 integrates the whole curve: 0.05 + 0.2·0.75 + 0.7·1 = 0.9.
        #expect(abs(try aupro([(scores2, mask)], width: w, height: h, limit: 1).aupro.aupro - 0.9) < 1e-7)
    }

    /// PRO averages over regions, not pixels: a 1-pixel region found and a 9-pixel region missed give PRO ½, even
    /// though only 1 of 10 anomalous pixels is detected. Regions in different images are different regions.
    @Test func auproWeighsRegionsEquallyAcrossImages() throws {
        let (w, h) = (5, 5)
        var small = [UInt8](repeating: 0, count: 25), big = [UInt8](repeating: 0, count: 25)
        small[12] = 1
        for y in 1...3 { for x in 1...3 { big[y * w + x] = 1 } }
        let s1 = small.map { Float($0) }                       // the small region scores 1, all else 0
        let s2 = [Float](repeating: 0, count: 25)              // the big region is missed
        let r = try aupro([(s1, small), (s2, big)], width: w, height: h)
        // Curve: (0, 0) → (0, ½) at t = 1 → (1, 1) at t = 0. On [0, 0.3]: ½ + (0.3/1)·½ at the cut, area
        // 0.3·(½ + 0.65)/2 = 0.1725 → /0.3 = 0.575.
        #expect(r.aupro.regions == 2)
        #expect(abs(r.aupro.aupro - 0.575) < 1e-9)
    }

    /// A direct reference: for each distinct score, count FPR and per-region overlaps from scratch, then MVTec's
    /// trapezoid with interpolation at the limit. Random maps and masks, several seeds; always in [0, 1].
    @Test func auproMatchesNaiveReferenceAndStaysInUnitInterval() throws {
        for seed: UInt64 in 0..<6 {
            var rng = SeededRNG(seed: 100 + seed)
            let (w, h, images) = (9, 7, 3)
            var data: [(scores: [Float], mask: [UInt8])] = []
            for _ in 0..<images {
                let mask: [UInt8] = (0..<(w * h)).map { _ in rng.uniform() < 0.25 ? 1 : 0 }
                let scores: [Float] = mask.map { m in Float((rng.uniform(-2, 2) + (m != 0 ? Double(seed % 3) - 0.5 : 0)).rounded()) }
                data.append((scores, mask))
            }
            let limit = [0.3, 0.05, 0.5][Int(seed) % 3]
            let r = try aupro(data, width: w, height: h, limit: limit)
            #expect(r.aupro.aupro >= 0 && r.aupro.aupro <= 1)

            // Naive reference.
            var labels: [[Int32]] = [], regionCount: [Int] = []
            for d in data {
                let cc = try connectedComponents(mask: d.mask, width: w, height: h)
                labels.append(cc.labels); regionCount.append(cc.count)
            }
            let normals = data.reduce(0) { $0 + $1.mask.filter { $0 == 0 }.count }
            let totalRegions = regionCount.reduce(0, +)
            var xs = [0.0], ys = [0.0]
            for t in Set(data.flatMap { $0.scores }).sorted(by: >) {
                var fp = 0, proSum = 0.0
                for (i, d) in data.enumerated() {
                    var hit = [Int](repeating: 0, count: regionCount[i] + 1), size = hit
                    for p in 0..<(w * h) {
                        let l = Int(labels[i][p])
                        if l == 0 { if d.scores[p] >= t { fp += 1 } } else {
                            size[l] += 1
                            if d.scores[p] >= t { hit[l] += 1 }
                        }
                    }
                    for l in stride(from: 1, through: regionCount[i], by: 1) { proSum += Double(hit[l]) / Double(size[l]) }
                }
                xs.append(Double(fp) / Double(normals)); ys.append(proSum / Double(totalRegions))
            }
            var area = 0.0
            for i in 1..<xs.count {
                if xs[i] <= limit { area += (xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2; continue }
                let yCut = ys[i - 1] + (ys[i] - ys[i - 1]) * (limit - xs[i - 1]) / (xs[i] - xs[i - 1])
                area += (limit - xs[i - 1]) * (ys[i - 1] + yCut) / 2
                break
            }
            #expect(abs(r.aupro.aupro - area / limit) < 1e-9, "seed \(seed)")

            // The pixel AUROC from the same sort equals PixelAUROC's.
            var p = PixelAUROC()
            for d in data { try p.update(scores: d.scores, mask: d.mask) }
            #expect(try p.compute() == r.pixel)
        }
    }

    @Test func pixelMetricsAcceptImagesAndRejectBadInput() throws {
        let map = try ScoreMap(width: 3, height: 2, values: [0.1, 0.9, 0.2, 0.3, 0.8, 0.1])
        let mask = Image(width: 3, height: 2, channels: 1, pixels: [0, 1, 0, 0, 1, 0])
        var m = PixelMetrics()
        try m.update(map: map, mask: mask)
        #expect(m.regionCount == 1)
        let r = try m.compute()
        #expect(r.pixel.auroc == 1 && abs(r.aupro.aupro - 1) < 1e-12)
        #expect(throws: PatchGuardError.self) { try m.update(map: map, mask: Image(width: 2, height: 3, channels: 1)) }
        #expect(throws: PatchGuardError.self) { try m.compute(fprLimit: 0) }
        var normalOnly = PixelMetrics()
        try normalOnly.update(scores: [0.1, 0.2], mask: [UInt8]([0, 0]), width: 2, height: 1)
        #expect(throws: PatchGuardError.self) { try normalOnly.compute() }
        #expect(throws: PatchGuardError.self) {
            try normalOnly.update(scores: [.nan, 0.2], mask: [UInt8]([0, 1]), width: 2, height: 1)
        }
    }

    // MARK: SVG

    @Test func rocSVGIsWellFormedWithLegend() throws {
        let svg = rocSVG(curves: [(name: "clean", fpr: [0, 0, 0.5, 1], tpr: [0, 0.5, 1, 1], auc: 0.875),
                                  (name: "PGD <ε=8/255> & co", fpr: [0, 1], tpr: [0, 1], auc: 0.5)],
                         title: "ROC \"bottle\"")
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.contains("clean (AUC 0.8750)") && svg.contains("(AUC 0.5000)"))
        #expect(svg.contains("PGD &lt;ε=8/255&gt; &amp; co") && svg.contains("ROC &quot;bottle&quot;"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(svg.contains("stroke-dasharray"))  // the chance diagonal
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))")
    }
}
