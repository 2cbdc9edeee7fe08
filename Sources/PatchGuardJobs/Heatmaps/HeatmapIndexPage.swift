import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// `index.html` of a heat-map folder: one self-contained page (inline CSS, no scripts, relative image paths) with
/// the summary, the metrics table, the column captions, a colour bar with the global normalisation bounds, and
/// one card per test image sorted by clean image score, highest first (ties: test-set order). Each card shows
/// rank, score (and attacked scores), label, defect type and file, and carries `data-score` / `data-index`
/// attributes for tools.
struct HeatmapIndexPage {
    var title: String
    var result: EvaluationResult
    /// Relative PNG path per test image, in test-set order.
    var files: [String]
    var columns: [String]
    var normalization: HeatmapNormalization
    var rawMapsFile: String?
    var panelSize: Int
    var panelCount: Int
    var gap: Int

    /// Test-set indices sorted by clean score, descending (NaN last), ties by index.
    static func order(_ images: [EvaluatedImage]) -> [Int] {
        images.indices.sorted { a, b in
            let sa = images[a].cleanScore, sb = images[b].cleanScore
            if sa.isNaN != sb.isNaN { return sb.isNaN }
            if sa != sb, !sa.isNaN { return sa > sb }
            return a < b
        }
    }

    func html() -> String {
        let r = result.report
        var h = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(esc(title))</title>
        <style>
        body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1500px;
               padding: 0 16px; color: #222; background: #f6f6f6; line-height: 1.4; }
        h1 { font-size: 22px; margin-bottom: 4px; }
        .summary, .legend { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
        table.metrics { border-collapse: collapse; font-size: 14px; }
        table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
        table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
        .bar { height: 18px; width: 420px; max-width: 100%; border: 1px solid #888;
               background: linear-gradient(to right, \(gradientStops())); }
        .ticks { display: flex; justify-content: space-between; width: 420px; max-width: 100%; font-size: 12px; }
        ol.columns { margin: 4px 0; padding-left: 22px; font-size: 14px; }
        .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; margin: 0 0 14px; }
        .card img { display: block; max-width: 100%; height: auto; margin-top: 6px; }
        .meta { font-size: 14px; }
        .meta code { font-size: 12px; color: #555; }
        .badge { display: inline-block; padding: 0 8px; border-radius: 9px; font-size: 12px; color: #fff; }
        .normal { background: #2e7d32; } .anomalous { background: #c62828; }
        .score { font-weight: bold; font-variant-numeric: tabular-nums; }
        </style>
        </head>
        <body>
        <h1>\(esc(title))</h1>

        """
        h += "<div class=\"summary\">\n<p>\(r.images) test images (\(r.normalImages) normal, \(r.anomalousImages) "
        h += "anomalous) at \(r.imageSize)×\(r.imageSize), sorted by clean image score (mean of the top-\(r.scoring.topK) "
        h += "patch logits), highest first.</p>\n"
        h += metricsTable()
        for note in r.notes { h += "<p><em>\(esc(note))</em></p>\n" }
        if let rawMapsFile {
            h += "<p>Raw (unnormalised) maps and scores: <a href=\"\(esc(rawMapsFile))\">\(esc(rawMapsFile))</a> (safetensors, F32).</p>\n"
        }
        h += "</div>\n"

        h += "<div class=\"legend\">\n<p>Columns, left to right:</p>\n<ol class=\"columns\">\n"
        for c in columns { h += "<li>\(esc(c))</li>\n" }
        h += "</ol>\n<p>Colour scale (jet), the same for every image and every attacked map: \(esc(normalization.method))"
        h += " over the clean maps of the whole test set; values outside saturate.</p>\n"
        h += "<div class=\"bar\" role=\"img\" aria-label=\"colour bar\"></div>\n<div class=\"ticks\">"
        for k in 0...4 {
            let v = normalization.lower + (normalization.upper - normalization.lower) * Float(k) / 4
            h += "<span>\(String(format: "%.4g", v))</span>"
        }
        h += "</div>\n</div>\n\n"

        // Small inputs (64 px jobs) are shown enlarged (integer factor, so ≥ ~200 px per panel); CSS caps the width.
        let scale = max(1, 200 / max(1, panelSize))
        let width = (panelCount * panelSize + (panelCount - 1) * max(0, gap)) * scale
        for (rank, i) in Self.order(result.images).enumerated() {
            let e = result.images[i]
            let kind = e.label == 1 ? "anomalous" : "normal"
            let file = (e.imagePath as NSString).lastPathComponent
            h += "<div class=\"card\" id=\"img-\(e.index)\" data-index=\"\(e.index)\" data-score=\"\(e.cleanScore)\">\n"
            h += "<div class=\"meta\">#\(rank + 1) · score <span class=\"score\">\(String(format: "%.4f", e.cleanScore))</span>"
            for (a, attacked) in zip(result.attacks, e.attacked) {
                h += " · \(esc(a.name)): \(String(format: "%.4f", attacked.score))"
            }
            h += " · <span class=\"badge \(kind)\">\(kind)</span> · \(esc(e.defectType)) · <code>\(esc(file))</code></div>\n"
            h += "<img src=\"\(esc(files[i]))\" width=\"\(width)\" height=\"\(panelSize * scale)\" loading=\"lazy\" "
            h += "alt=\"\(esc(kind)) \(esc(e.defectType)) \(esc(file))\">\n</div>\n"
        }
        h += "</body>\n</html>\n"
        return h
    }

    func metricsTable() -> String {
        let r = result.report
        var t = "<table class=\"metrics\">\n<tr><th>run</th><th>ε</th><th>steps</th><th>image AUROC</th>"
        t += "<th>pixel AUROC</th><th>pixel AUPRO</th></tr>\n"
        func row(_ name: String, _ eps: String, _ steps: String, _ m: MetricSet) -> String {
            "<tr><td>\(esc(name))</td><td>\(eps)</td><td>\(steps)</td>"
                + [m.imageAUROC, m.pixelAUROC, m.pixelAUPRO].map { "<td>\(EvaluationReport.formatMetric($0))</td>" }.joined()
                + "</tr>\n"
        }
        t += row("clean", "–", "–", r.clean)
        for a in r.attacks {
            t += row(a.displayName, EvaluationReport.fractionOf255(a.epsilon), "\(a.steps)", a.metrics)
        }
        return t + "</table>\n"
    }

    /// CSS gradient stops sampling ``JetColormap`` every 1/16.
    func gradientStops() -> String {
        (0...16).map { k in "\(JetColormap.hex(Float(k) / 16)) \(String(format: "%.2f", Double(k) * 100 / 16))%" }
            .joined(separator: ", ")
    }

    func esc(_ s: String) -> String { xmlEscape(s) }
}
