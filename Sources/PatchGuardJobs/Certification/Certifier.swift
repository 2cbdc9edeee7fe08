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

    public init(detector: AnomalyDetector, config: CertifyConfig, seed: UInt64, showProgress: Bool = true) throws {
        if let p = config.problem() { throw PatchGuardError.invalidArgument(p) }
        self.detector = detector; self.config = config; self.seed = seed; self.showProgress = showProgress
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
            let smoothing = try RandomizedSmoothing(detector: detector, settings: config.settings(sigma: sigma))
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
            squash: config.squashFunction.description, seed: seed, unsmoothedImageAUROC: unsmoothed,
            unsmoothedPixelAUROC: unsmoothedPixel, mapResolution: withCells ? "\(mh)×\(mw)" : nil, sigmas: perSigma, seconds: Date().timeIntervalSince(start), notes: notes)
        return CertificationResult(report: report, images: images, cells: withCells ? allCells : [],
                                   cellLabels: cellLabels)
    }
}
