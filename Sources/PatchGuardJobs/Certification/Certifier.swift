import Foundation
import PatchGuardCore
import PatchGuardData
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardMethod

/// One test image's certification at one σ.
public struct CertifiedImage: Sendable, Equatable {
    public var index: Int
    public var imagePath: String
    public var defectType: String
    /// 0 good, 1 defective.
    public var label: Int
    /// The detector's unsmoothed image score on the clean image.
    public var score: Double
    public var smoothed: SmoothedScore
}

/// Randomized-smoothing certification of any ``AnomalyDetector`` on a loaded test set (``RandomizedSmoothing``
/// per image and σ; ``CertifiedAUROC`` over the set). Image `i` at the `j`-th σ draws from
/// `SeededRNG(seed:, stream: j << 32 | i)`, so a result depends only on the seed, the image and σ.
public struct Certifier {
    public let detector: AnomalyDetector
    public let config: CertifyConfig
    public let seed: UInt64
    public var showProgress: Bool
    /// One squash per σ (``fitSquash(detector:normals:sigmas:kind:seed:)``) instead of the config's fixed one.
    public var squashes: [Squash]?

    public init(detector: AnomalyDetector, config: CertifyConfig, seed: UInt64, showProgress: Bool = true,
                squashes: [Squash]? = nil) throws {
        if let p = config.problem() { throw PatchGuardError.invalidArgument(p) }
        if let squashes, squashes.count != config.sigmas.count {
            throw PatchGuardError.invalidArgument("certify: \(squashes.count) fitted squashes for \(config.sigmas.count) σ")
        }
        self.detector = detector; self.config = config; self.seed = seed; self.showProgress = showProgress
        self.squashes = squashes
    }

    /// The squash at the `j`-th σ.
    public func squash(at j: Int) -> Squash { squashes?[j] ?? config.squashFunction }

    /// Per σ a squash of `kind` whose center and scale are the mean and standard deviation of the image scores of
    /// `normals` (normal images, `3 × S × S` each; not test images), each with one draw of N(0, σ²I) noise —
    /// where the noisy scores the certificate smooths lie. Seeded (`seed`, one stream per σ and image). A zero
    /// spread gives scale 1.
    public static func fitSquash(detector: AnomalyDetector, normals: [[Float]], sigmas: [Double], kind: ScoreSquash,
                                 seed: UInt64, batchSize: Int = 16) throws -> [Squash] {
        let s = detector.imageSize, plane = 3 * s * s
        guard normals.count >= 2 else {
            throw PatchGuardError.invalidArgument("certify: fitting the squash needs ≥ 2 normal images, got \(normals.count)")
        }
        if let bad = normals.firstIndex(where: { $0.count != plane }) {
            throw PatchGuardError.invalidArgument("certify: normal image \(bad) has \(normals[bad].count) values, not 3×\(s)×\(s)")
        }
        return try sigmas.enumerated().map { j, sigma in
            var scores = [Double]()
            for lo in stride(from: 0, to: normals.count, by: max(1, batchSize)) {
                let hi = min(normals.count, lo + max(1, batchSize))
                var x = [Float]()
                x.reserveCapacity((hi - lo) * plane)
                for i in lo..<hi {
                    var rng = SeededRNG(seed: seed ^ 0x5A_0A5F_17, stream: UInt64(j) << 32 | UInt64(i))
                    x += normals[i].map { $0 + Float(sigma * rng.normal()) }
                }
                let out = x.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: hi - lo) }
                scores += out.scores.map(Double.init)
            }
            guard scores.allSatisfy(\.isFinite) else {
                throw PatchGuardError.numeric("certify: a noisy training normal got a non-finite score at σ = \(sigma)")
            }
            let mean = scores.reduce(0, +) / Double(scores.count)
            let sd = (scores.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(scores.count - 1)).squareRoot()
            return Squash(kind: kind, center: mean, scale: sd > 0 && sd.isFinite ? sd : 1)
        }
    }

    /// The radii of the report: 0 and the configured ones, sorted, without duplicates.
    public var radii: [Double] { Array(Set([0] + config.radii)).sorted() }

    /// Certifies `samples` (each `3 × S × S` at the detector's size). `indices` are the images' positions in the
    /// full test set (their noise streams); default `0..<count`.
    public func certify(_ samples: [LoadedSample], category: String, indices: [Int]? = nil,
                        log: ((String) -> Void)? = nil) throws -> CertificationResult {
        let start = Date()
        let s = detector.imageSize
        guard !samples.isEmpty else { throw PatchGuardError.invalidArgument("certify: the test set is empty") }
        for sample in samples where sample.image.channels != 3 || sample.image.width != s || sample.image.height != s {
            throw PatchGuardError.invalidArgument("\(sample.imagePath): image \(sample.image.channels)×"
                + "\(sample.image.height)×\(sample.image.width); the detector needs 3×\(s)×\(s)")
        }
        let streams = indices ?? Array(samples.indices)
        let labels = samples.map { $0.label == 1 }
        let bothClasses = labels.contains(true) && labels.contains(false)
        var notes = [String]()
        if !bothClasses {
            notes.append("The test set has only \(labels.contains(true) ? "defective" : "normal") images: every AUROC is n/a.")
        }

        // Unsmoothed scores and maps on the clean images (one pass).
        let m = detector.mapCount
        var scores = [Double](), cleanCells = [Double]()
        for lo in stride(from: 0, to: samples.count, by: config.batchSize) {
            let batch = Array(samples[lo..<min(samples.count, lo + config.batchSize)])
            let x = batch.flatMap { $0.image.pixels }
            let out = x.withUnsafeBufferPointer { detector.outputs($0.baseAddress!, batch: batch.count) }
            scores += out.scores.map(Double.init)
            cleanCells += out.maps.prefix(batch.count * m).map(Double.init)
        }
        if let bad = scores.firstIndex(where: { !$0.isFinite }) {
            throw PatchGuardError.numeric("detector returned a non-finite score for \(samples[bad].imagePath)")
        }
        let unsmoothed = bothClasses ? try BinaryAUROC.auroc(scores: scores, labels: labels) : nil

        // Map cells: labels at map resolution (a cell is anomalous when any of its pixels is) and the clean maps.
        let mh = detector.mapHeight, mw = detector.mapWidth
        var withCells = config.mapCells
        if withCells && !(mh == mw && s % mw == 0) {
            notes.append("The detector's map (\(mh)×\(mw)) is not a square grid dividing the image size \(s): map cells "
                         + "were not certified.")
            withCells = false
        }
        var cellLabels = [Bool]()
        if withCells {
            for sample in samples {
                let l = sample.label == 1 ? try patchLabels(mask: sample.mask, patchSize: s / mw) : [Float](repeating: 0, count: m)
                cellLabels += l.map { $0 > 0.5 }
            }
        }
        let cellsDefined = withCells && cellLabels.contains(true) && cellLabels.contains(false)
        if withCells && !cellsDefined { notes.append("No map cell is anomalous (or every one is): pixel AUROC is n/a.") }
        let unsmoothedPixel = cellsDefined ? try BinaryAUROC.auroc(scores: cleanCells, labels: cellLabels) : nil

        let perImage = config.n0 + config.samples
        let bar = showProgress
            ? ProgressBar("certify \(category)", total: config.sigmas.count * samples.count * perImage, unit: "copies")
            : nil
        var perSigma = [SigmaCertification]()
        var images = [[CertifiedImage]]()
        var allCells = [[SmoothedScore]]()
        for (j, sigma) in config.sigmas.enumerated() {
            let sigmaStart = Date()
            var smoothingSettings = config.settings(sigma: sigma)
            smoothingSettings.squash = squash(at: j)
            let smoothing = try RandomizedSmoothing(detector: detector, settings: smoothingSettings)
            var row = [CertifiedImage]()
            var cells = [SmoothedScore]()
            for (k, sample) in samples.enumerated() {
                let stream = UInt64(j) << 32 | UInt64(streams[k])
                var rng = SeededRNG(seed: seed, stream: stream)
                var cellRNG: SeededRNG? = withCells ? SeededRNG(seed: seed, stream: stream | 1 << 63) : nil
                let info = "σ=\(sigma) image \(k + 1)/\(samples.count)"
                let (smoothed, cellScores) = try smoothing.certify(sample.image.pixels, using: &rng, cellRNG: &cellRNG) {
                    bar?.advance($0, info: info)
                }
                cells += cellScores
                row.append(CertifiedImage(index: streams[k], imagePath: sample.imagePath, defectType: sample.defectType,
                                          label: sample.label, score: scores[k], smoothed: smoothed))
            }
            let smoothedScores = row.map(\.smoothed)
            let smoothedAUROC = bothClasses ? try CertifiedAUROC.smoothedAUROC(smoothedScores, labels: labels) : nil
            let certified = try radii.map { r in
                CertifiedPoint(radius: r,
                               imageAUROC: bothClasses ? try CertifiedAUROC.auroc(smoothedScores, labels: labels, radius: r) : nil,
                               pixelAUROC: cellsDefined ? try CertifiedAUROC.auroc(cells, labels: cellLabels, radius: r) : nil)
            }
            let widths = smoothedScores.map { $0.interval.width }
            let result = SigmaCertification(
                sigma: sigma, smoothedImageAUROC: smoothedAUROC,
                smoothedPixelAUROC: cellsDefined ? try CertifiedAUROC.smoothedAUROC(cells, labels: cellLabels) : nil,
                certified: certified,
                clopperPearsonImages: smoothedScores.filter { $0.method == .clopperPearson }.count,
                empiricalBernsteinImages: smoothedScores.filter { $0.method == .empiricalBernstein }.count,
                meanIntervalWidth: widths.reduce(0, +) / Double(widths.count),
                seconds: Date().timeIntervalSince(sigmaStart))
            log?("σ = \(sigma): smoothed image AUROC \(EvaluationReport.formatMetric(smoothedAUROC)); certified "
                 + certified.map { "r=\(CertificationReport.short($0.radius)) \(EvaluationReport.formatMetric($0.imageAUROC))" }
                    .joined(separator: ", ")
                 + (cellsDefined ? "; pixel (cells) smoothed \(EvaluationReport.formatMetric(result.smoothedPixelAUROC)), certified "
                    + certified.map { "r=\(CertificationReport.short($0.radius)) \(EvaluationReport.formatMetric($0.pixelAUROC))" }
                        .joined(separator: ", ") : "")
                 + String(format: " (%.1f s)", result.seconds))
            perSigma.append(result)
            images.append(row)
            allCells.append(cells)
        }
        let report = CertificationReport(
            category: category, detector: nil, images: samples.count,
            normalImages: labels.filter { !$0 }.count, anomalousImages: labels.filter { $0 }.count, imageSize: s,
            n0: config.n0, samples: config.samples, alpha: config.alpha, batchSize: config.batchSize,
            squash: squashes.map { q in zip(config.sigmas, q).map { "σ=\(CertificationReport.short($0)): \($1.description)" }
                                        .joined(separator: "; ") } ?? config.squashFunction.description, seed: seed, unsmoothedImageAUROC: unsmoothed,
            unsmoothedPixelAUROC: unsmoothedPixel, mapResolution: withCells ? "\(mh)×\(mw)" : nil, sigmas: perSigma, seconds: Date().timeIntervalSince(start), notes: notes)
        return CertificationResult(report: report, images: images, cells: withCells ? allCells : [],
                                   cellLabels: cellLabels)
    }
}
