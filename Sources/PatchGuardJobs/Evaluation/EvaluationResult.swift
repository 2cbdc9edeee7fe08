import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// The curves of one pass over the test set (clean or one attack). `nil` where the metric is undefined.
public struct PassCurves: Sendable {
    /// `"clean"` or the attack's label (`"PGD-10 ε=8/255"`).
    public var name: String
    /// Image-level AUROC, ROC curve and F1-max.
    public var image: BinaryCurveResult?
    /// Pixel-level AUROC, ROC, F1-max and AUPRO.
    public var pixel: PixelMetricsResult?
    public var seconds: Double

    public var metrics: MetricSet { MetricSet(image: image, pixel: pixel) }
}

/// One attacked version of a test image.
public struct AttackedImage: Sendable {
    public var score: Float
    /// Raw smoothed map `S × S` (nil unless ``EvaluationSettings/keepMaps``).
    public var map: ScoreMap?
    /// The attacked input `3 × S × S` in [0, 1] (nil unless ``EvaluationSettings/keepMaps``).
    public var image: Image?
}

/// One test image's scores and raw maps, in test-set order.
public struct EvaluatedImage: Sendable {
    /// Position in the evaluated sample array.
    public var index: Int
    public var imagePath: String
    public var defectType: String
    /// 0 good, 1 defective.
    public var label: Int
    /// Clean image score (top-k mean of the patch logits).
    public var cleanScore: Float
    /// Clean raw smoothed map `S × S` (nil unless ``EvaluationSettings/keepMaps``).
    public var cleanMap: ScoreMap?
    /// One entry per attack, in the order of ``EvaluationSettings/attacks``.
    public var attacked: [AttackedImage]
}

/// What ``Evaluator/evaluate(_:category:log:)`` returns: the report (what `metrics.json` holds), the curves for
/// plots, and the per-image scores and maps for ``HeatmapWriter``.
public struct EvaluationResult: Sendable {
    public var report: EvaluationReport
    public var clean: PassCurves
    /// One per attack, in order.
    public var attacks: [PassCurves]
    public var images: [EvaluatedImage]
    /// One per budget (``EvaluationReport/worstCase``), in order.
    public var worstCase: [PassCurves] = []

    public init(report: EvaluationReport, clean: PassCurves, attacks: [PassCurves], images: [EvaluatedImage],
                worstCase: [PassCurves] = []) {
        self.report = report; self.clean = clean; self.attacks = attacks; self.images = images
        self.worstCase = worstCase
    }

    /// The file names ``writeReports(to:)`` uses.
    public static let metricsJSON = "metrics.json", metricsMarkdown = "metrics.md"
    public static let rocImageSVG = "roc_image.svg", rocPixelSVG = "roc_pixel.svg"

    /// Image-level ROC curves (clean and every attack) as one SVG.
    public func imageROCSVG() -> String {
        let curves = ([clean] + attacks).compactMap { p in
            p.image.map { (name: p.name, fpr: $0.roc.fpr, tpr: $0.roc.tpr, auc: $0.auroc) }
        }
        return rocSVG(curves: curves, title: "\(report.category): image ROC"
                      + (curves.isEmpty ? " (n/a: one class only)" : ""))
    }

    /// Pixel-level ROC curves (clean and every attack) as one SVG.
    public func pixelROCSVG() -> String {
        let curves = ([clean] + attacks).compactMap { p in
            p.pixel.map { (name: p.name, fpr: $0.pixel.roc.fpr, tpr: $0.pixel.roc.tpr, auc: $0.pixel.auroc) }
        }
        return rocSVG(curves: curves, title: "\(report.category): pixel ROC"
                      + (curves.isEmpty ? " (n/a: no anomalous pixel)" : ""))
    }

    /// Writes `metrics.json`, `metrics.md`, `roc_image.svg` and `roc_pixel.svg` into `directory` (created if
    /// needed), each atomically. Returns the paths written.
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
            (Self.rocImageSVG, Data(imageROCSVG().utf8)),
            (Self.rocPixelSVG, Data(pixelROCSVG().utf8)),
        ]
        for (name, data) in files { try AtomicFile.write(data, to: path(name)) }
        return files.map { path($0.0) }
    }
}
