import Foundation
import PatchGuardCore
import PatchGuardMethod

// What `patchguard certify` writes as `metrics.json`:
//
//   {
//     "category": "tire", "detector": "…" | null, "images": 112, "normal_images": 25, "anomalous_images": 87,
//     "image_size": 112, "n0": 64, "samples": 500, "alpha": 0.001, "batch_size": 32,
//     "squash": "sigmoid((s − 0)/1)", "seed": 0, "bound": "…",
//     "unsmoothed_image_auroc": 0.63,
//     "sigmas": [{"sigma": 0.12, "smoothed_image_auroc": 0.61, "seconds": 400.1, "mean_interval_width": 0.08,
//                 "clopper_pearson_images": 10, "empirical_bernstein_images": 102,
//                 "certified": [{"radius": 0, "image_auroc": 0.55}, {"radius": 0.05, "image_auroc": 0.41}, …]}],
//     "seconds": 812.3, "notes": []
//   }
//
// A metric that is undefined (one class only) is null; every key is always present.

/// Certified image AUROC at one radius.
public struct CertifiedPoint: Codable, Equatable, Sendable {
    public var radius: Double
    public var imageAUROC: Double?
    /// Over every map cell of every image (normal cells by their upper end, anomalous ones by their lower end);
    /// nil without `certify.map_cells` or without both kinds of cell.
    public var pixelAUROC: Double?

    public init(radius: Double, imageAUROC: Double?, pixelAUROC: Double? = nil) {
        self.radius = radius; self.imageAUROC = imageAUROC; self.pixelAUROC = pixelAUROC
    }

    enum CodingKeys: String, CodingKey { case radius, imageAUROC = "image_auroc", pixelAUROC = "pixel_auroc" }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(radius, forKey: .radius)
        if let imageAUROC { try c.encode(imageAUROC, forKey: .imageAUROC) } else { try c.encodeNil(forKey: .imageAUROC) }
        if let pixelAUROC { try c.encode(pixelAUROC, forKey: .pixelAUROC) } else { try c.encodeNil(forKey: .pixelAUROC) }
    }
}

/// The results at one σ.
public struct SigmaCertification: Codable, Equatable, Sendable {
    public var sigma: Double
    /// AUROC of the point estimates of g(x) (the smoothed detector, clean).
    public var smoothedImageAUROC: Double?
    /// AUROC of the map cells' point estimates (nil without map cells).
    public var smoothedPixelAUROC: Double?
    /// At r = 0 and every configured radius, ascending.
    public var certified: [CertifiedPoint]
    /// How many images the pilot draws sent to each interval.
    public var clopperPearsonImages: Int
    public var empiricalBernsteinImages: Int
    /// Mean width g_hi − g_lo of the r = 0 intervals.
    public var meanIntervalWidth: Double
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case sigma, smoothedImageAUROC = "smoothed_image_auroc", smoothedPixelAUROC = "smoothed_pixel_auroc", certified
        case clopperPearsonImages = "clopper_pearson_images", empiricalBernsteinImages = "empirical_bernstein_images"
        case meanIntervalWidth = "mean_interval_width", seconds
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sigma, forKey: .sigma)
        if let smoothedImageAUROC { try c.encode(smoothedImageAUROC, forKey: .smoothedImageAUROC) }
        else { try c.encodeNil(forKey: .smoothedImageAUROC) }
        if let smoothedPixelAUROC { try c.encode(smoothedPixelAUROC, forKey: .smoothedPixelAUROC) }
        else { try c.encodeNil(forKey: .smoothedPixelAUROC) }
        try c.encode(certified, forKey: .certified)
        try c.encode(clopperPearsonImages, forKey: .clopperPearsonImages)
        try c.encode(empiricalBernsteinImages, forKey: .empiricalBernsteinImages)
        try c.encode(meanIntervalWidth, forKey: .meanIntervalWidth)
        try c.encode(seconds, forKey: .seconds)
    }
}

/// Everything `metrics.json` of a certification run holds.
public struct CertificationReport: Codable, Equatable, Sendable {
    public var category: String
    public var detector: String?
    public var images: Int
    public var normalImages: Int
    public var anomalousImages: Int
    public var imageSize: Int
    public var n0: Int
    public var samples: Int
    public var alpha: Double
    public var batchSize: Int
    /// ``Squash/description``.
    public var squash: String
    public var seed: UInt64
    public var bound = CertificationReport.boundText
    /// AUROC of the detector's own scores on the clean images.
    public var unsmoothedImageAUROC: Double?
    /// Map-cell AUROC of the detector's clean maps (nil without map cells).
    public var unsmoothedPixelAUROC: Double?
    /// `"14×14"`: the map resolution the pixel rows are at; nil without map cells.
    public var mapResolution: String?
    public var sigmas: [SigmaCertification]
    public var seconds: Double
    public var notes: [String]

    /// The bound, as the report states it.
    public static let boundText = "h = squash(image score) in [0,1]; g(x) = E h(x + N(0, σ²I)); per image n0 pilot "
        + "draws choose Clopper–Pearson on 1{u < h} (u ~ U(0,1), Bernoulli with mean g) or empirical Bernstein "
        + "(Maurer–Pontil) on h, n fresh draws give g(x) ∈ [g_lo, g_hi] with probability ≥ 1 − α; Φ⁻¹∘g is "
        + "1/σ-Lipschitz (Salman et al. 2019), so g(x + δ) ∈ [Φ(Φ⁻¹(g_lo) − r/σ), Φ(Φ⁻¹(g_hi) + r/σ)] for ‖δ‖₂ ≤ r. "
        + "Certified AUROC at r: upper ends for normal images, lower ends for defective ones."

    enum CodingKeys: String, CodingKey {
        case category, detector, images, normalImages = "normal_images", anomalousImages = "anomalous_images"
        case imageSize = "image_size", n0, samples, alpha, batchSize = "batch_size", squash, seed, bound
        case unsmoothedImageAUROC = "unsmoothed_image_auroc", unsmoothedPixelAUROC = "unsmoothed_pixel_auroc"
        case mapResolution = "map_resolution", sigmas, seconds, notes
    }

    public init(category: String, detector: String?, images: Int, normalImages: Int, anomalousImages: Int,
                imageSize: Int, n0: Int, samples: Int, alpha: Double, batchSize: Int, squash: String, seed: UInt64,
                unsmoothedImageAUROC: Double?, unsmoothedPixelAUROC: Double? = nil, mapResolution: String? = nil,
                sigmas: [SigmaCertification], seconds: Double, notes: [String]) {
        self.unsmoothedPixelAUROC = unsmoothedPixelAUROC; self.mapResolution = mapResolution
        self.category = category; self.detector = detector; self.images = images; self.normalImages = normalImages
        self.anomalousImages = anomalousImages; self.imageSize = imageSize; self.n0 = n0; self.samples = samples
        self.alpha = alpha; self.batchSize = batchSize; self.squash = squash; self.seed = seed
        self.unsmoothedImageAUROC = unsmoothedImageAUROC; self.sigmas = sigmas; self.seconds = seconds
        self.notes = notes
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(category, forKey: .category)
        if let detector { try c.encode(detector, forKey: .detector) } else { try c.encodeNil(forKey: .detector) }
        try c.encode(images, forKey: .images)
        try c.encode(normalImages, forKey: .normalImages)
        try c.encode(anomalousImages, forKey: .anomalousImages)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(n0, forKey: .n0)
        try c.encode(samples, forKey: .samples)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(squash, forKey: .squash)
        try c.encode(seed, forKey: .seed)
        try c.encode(bound, forKey: .bound)
        if let unsmoothedImageAUROC { try c.encode(unsmoothedImageAUROC, forKey: .unsmoothedImageAUROC) }
        else { try c.encodeNil(forKey: .unsmoothedImageAUROC) }
        if let unsmoothedPixelAUROC { try c.encode(unsmoothedPixelAUROC, forKey: .unsmoothedPixelAUROC) }
        else { try c.encodeNil(forKey: .unsmoothedPixelAUROC) }
        if let mapResolution { try c.encode(mapResolution, forKey: .mapResolution) } else { try c.encodeNil(forKey: .mapResolution) }
        try c.encode(sigmas, forKey: .sigmas)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(notes, forKey: .notes)
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(0x0A)
        return data
    }

    /// `0.05` → `"0.05"`.
    static func short(_ v: Double) -> String { String(format: "%g", v) }

    /// One row per σ and metric (image; pixel at map resolution when the map cells were certified): the
    /// unsmoothed and smoothed clean AUROC, then the certified AUROC at each radius.
    ///
    ///     | σ    | metric | unsmoothed | smoothed | certified r=0 | r=0.05 | … | CP/EB images | time    |
    ///     |------|--------|------------|----------|---------------|--------|---|--------------|---------|
    ///     | 0.12 | image  | 0.6300     | 0.6100   | 0.5500        | 0.4100 | … | 10/102       | 401.2 s |
    public func table() -> String {
        let radii = sigmas.first?.certified.map(\.radius) ?? []
        let header = ["σ", "metric", "unsmoothed", "smoothed"]
            + radii.map { $0 == 0 ? "certified r=0" : "r=\(Self.short($0))" } + ["CP/EB images", "time"]
        var rows = [[String]]()
        for s in sigmas {
            rows.append([Self.short(s.sigma), "image", EvaluationReport.formatMetric(unsmoothedImageAUROC),
                         EvaluationReport.formatMetric(s.smoothedImageAUROC)]
                        + s.certified.map { EvaluationReport.formatMetric($0.imageAUROC) }
                        + ["\(s.clopperPearsonImages)/\(s.empiricalBernsteinImages)", String(format: "%.1f s", s.seconds)])
            if let mapResolution {
                rows.append([Self.short(s.sigma), "pixel \(mapResolution)", EvaluationReport.formatMetric(unsmoothedPixelAUROC),
                             EvaluationReport.formatMetric(s.smoothedPixelAUROC)]
                            + s.certified.map { EvaluationReport.formatMetric($0.pixelAUROC) } + ["–", "–"])
            }
        }
        return MarkdownTable.render(header: header, rows: rows)
    }

    /// `metrics.md`: settings, the bound, the table and the notes.
    public func markdown() -> String {
        var s = "# Certification: \(category)\n\n"
        if let detector { s += "Detector: \(detector)\n\n" }
        s += "\(images) test images (\(normalImages) normal, \(anomalousImages) defective) at \(imageSize)×\(imageSize); "
        s += "n0 = \(n0) pilot and n = \(samples) estimation draws per image and σ, α = \(Self.short(alpha)), "
        s += "squash \(squash), seed \(seed). Radii are L2 over the whole 3×S×S image in [0,1] pixel units.\n\n"
        s += "Bound: \(bound)\n\n"
        s += "Columns: `unsmoothed` is the detector's clean image AUROC; `smoothed` the AUROC of the point "
        s += "estimates of g(x); `certified r` the AUROC no L2 perturbation of norm ≤ r per image can go below "
        s += "(each interval holds with probability ≥ 1 − α); `CP/EB images` how many images used each interval.\n\n"
        if let mapResolution {
            s += "`pixel \(mapResolution)` rows: every cell of the detector's native map (\(mapResolution)) certified on its "
            s += "own, at α/M per cell (Bonferroni: all M cells of an image hold jointly with probability ≥ 1 − α); a "
            s += "cell is anomalous when any of its ground-truth pixels is; normal cells by their upper end, anomalous "
            s += "cells by their lower end. Not the upsampled, Gaussian-smoothed pixel maps of `evaluate`.\n\n"
        }
        s += table()
        s += "\nTotal time \(String(format: "%.1f", seconds)) s.\n"
        if !notes.isEmpty { s += "\nNotes:\n\n" + notes.map { "- \($0)\n" }.joined() }
        return s
    }
}

/// The report and every image's bounds (`images[j][k]`: σ j, image k).
public struct CertificationResult: Sendable {
    public var report: CertificationReport
    public var images: [[CertifiedImage]]
    /// Per σ, every map cell of every image (image-major) and its label (empty without map cells).
    public var cells: [[SmoothedScore]] = []
    public var cellLabels: [Bool] = []

    public static let metricsJSON = "metrics.json", metricsMarkdown = "metrics.md"
    public static let curveSVG = "certified_auroc.svg", imagesCSV = "certify_images.csv"

    /// The per-image bounds as CSV: one row per σ and image; `lower_r`/`upper_r` the certified interval at r.
    public func csv() -> String {
        let radii = report.sigmas.first?.certified.map(\.radius) ?? []
        var s = "sigma,index,image,defect_type,label,score,pilot,estimate,g_lower,g_upper,interval"
        for r in radii where r > 0 { s += ",lower_\(CertificationReport.short(r)),upper_\(CertificationReport.short(r))" }
        s += "\n"
        func q(_ t: String) -> String { t.contains(",") || t.contains("\"") ? "\"" + t.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : t }
        func f(_ v: Double) -> String { String(format: "%.6g", v) }
        for row in images {
            for im in row {
                let m = im.smoothed
                s += "\(CertificationReport.short(m.sigma)),\(im.index),\(q(im.imagePath)),\(q(im.defectType)),\(im.label),"
                s += "\(f(im.score)),\(m.pilot.map(f) ?? ""),\(f(m.estimate)),\(f(m.interval.lower)),\(f(m.interval.upper)),"
                s += m.method.rawValue
                for r in radii where r > 0 {
                    let c = m.certified(radius: r)
                    s += ",\(f(c.lower)),\(f(c.upper))"
                }
                s += "\n"
            }
        }
        return s
    }

    /// Certified AUROC against r for every σ, dense in r up to the largest radius (at least 0.5).
    public func curveSVG() throws -> String {
        let rMax = max(0.5, report.sigmas.first?.certified.map(\.radius).max() ?? 0)
        let grid = (0...60).map { rMax * Double($0) / 60 }
        var curves = [(name: String, radius: [Double], auroc: [Double])]()
        for (j, s) in report.sigmas.enumerated() {
            let scores = images[j].map(\.smoothed), labels = images[j].map { $0.label == 1 }
            guard labels.contains(true), labels.contains(false) else { continue }
            curves.append((name: "σ = \(CertificationReport.short(s.sigma)) image", radius: grid,
                           auroc: try grid.map { try CertifiedAUROC.auroc(scores, labels: labels, radius: $0) }))
        }
        if cellLabels.contains(true) && cellLabels.contains(false) {
            for (j, s) in report.sigmas.enumerated() where j < cells.count {
                curves.append((name: "σ = \(CertificationReport.short(s.sigma)) pixel \(report.mapResolution ?? "")", radius: grid,
                               auroc: try grid.map { try CertifiedAUROC.auroc(cells[j], labels: cellLabels, radius: $0) }))
            }
        }
        return certifiedCurveSVG(curves: curves, reference: report.unsmoothedImageAUROC,
                                 title: "\(report.category): certified AUROC (α = \(CertificationReport.short(report.alpha)))")
    }

    /// Writes `metrics.json`, `metrics.md`, `certified_auroc.svg` and `certify_images.csv` into `directory`,
    /// each atomically. Returns the paths.
    @discardableResult
    public func writeReports(to directory: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PatchGuardError.io(path: directory, reason: "cannot create directory (\(error.localizedDescription))")
        }
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let files: [(String, Data)] = [
            (Self.metricsJSON, try report.jsonData()),
            (Self.metricsMarkdown, Data(report.markdown().utf8)),
            (Self.curveSVG, Data(try curveSVG().utf8)),
            (Self.imagesCSV, Data(csv().utf8)),
        ]
        for (name, data) in files { try AtomicFile.write(data, to: path(name)) }
        return files.map { path($0.0) }
    }
}
