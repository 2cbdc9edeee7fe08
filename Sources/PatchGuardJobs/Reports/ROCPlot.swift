import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// A self-contained SVG (no scripts, no external fonts or styles) of one or more ROC curves: axes with ticks every
/// 0.2 and a light grid, the chance diagonal (dashed), one coloured polyline per curve, and a legend with each
/// curve's name and AUC (4 decimals).
///
/// `fpr` and `tpr` of a curve are paired by index (extra values of the longer array are ignored); non-finite
/// points are skipped and values are clamped to [0, 1]. Names and the title are XML-escaped. Typical input is
/// ``BinaryCurveResult/roc``: `(name: "clean", fpr: r.roc.fpr, tpr: r.roc.tpr, auc: r.auroc)`.
public func rocSVG(curves: [(name: String, fpr: [Double], tpr: [Double], auc: Double)], title: String) -> String {
    let width = 520.0, height = 520.0
    let left = 70.0, right = 20.0, top = 50.0, bottom = 60.0
    let plotW = width - left - right, plotH = height - top - bottom
    let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    func px(_ x: Double) -> String { fmt(left + min(1, max(0, x)) * plotW) }
    func py(_ y: Double) -> String { fmt(top + (1 - min(1, max(0, y))) * plotH) }

    var s = """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
    viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
    <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="#ffffff"/>
    <text x="\(fmt(left + plotW / 2))" y="30" text-anchor="middle" font-size="16" font-weight="bold">\
    \(xmlEscape(title))</text>

    """
    // Grid, ticks and tick labels.
    for i in 0...5 {
        let v = Double(i) / 5
        let label = String(format: "%.1f", v)
        s += "<line x1=\"\(px(v))\" y1=\"\(py(0))\" x2=\"\(px(v))\" y2=\"\(py(1))\" stroke=\"#e6e6e6\"/>\n"
        s += "<line x1=\"\(px(0))\" y1=\"\(py(v))\" x2=\"\(px(1))\" y2=\"\(py(v))\" stroke=\"#e6e6e6\"/>\n"
        s += "<line x1=\"\(px(v))\" y1=\"\(py(0))\" x2=\"\(px(v))\" y2=\"\(fmt(top + plotH + 5))\" stroke=\"#000\"/>\n"
        s += "<line x1=\"\(fmt(left - 5))\" y1=\"\(py(v))\" x2=\"\(px(0))\" y2=\"\(py(v))\" stroke=\"#000\"/>\n"
        s += "<text x=\"\(px(v))\" y=\"\(fmt(top + plotH + 20))\" text-anchor=\"middle\">\(label)</text>\n"
        s += "<text x=\"\(fmt(left - 9))\" y=\"\(fmt(top + (1 - v) * plotH + 4))\" text-anchor=\"end\">\(label)</text>\n"
    }
    // Axes box, labels and the chance diagonal.
    s += "<rect x=\"\(px(0))\" y=\"\(py(1))\" width=\"\(fmt(plotW))\" height=\"\(fmt(plotH))\" fill=\"none\" stroke=\"#000\"/>\n"
    s += "<text x=\"\(fmt(left + plotW / 2))\" y=\"\(fmt(height - 15))\" text-anchor=\"middle\" font-size=\"13\">False positive rate</text>\n"
    s += "<text x=\"20\" y=\"\(fmt(top + plotH / 2))\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 20 \(fmt(top + plotH / 2)))\">True positive rate</text>\n"
    s += "<line x1=\"\(px(0))\" y1=\"\(py(0))\" x2=\"\(px(1))\" y2=\"\(py(1))\" stroke=\"#888888\" stroke-dasharray=\"5,4\"/>\n"

    // Curves.
    for (k, c) in curves.enumerated() {
        let colour = palette[k % palette.count]
        var points = [String]()
        for i in 0..<min(c.fpr.count, c.tpr.count) where c.fpr[i].isFinite && c.tpr[i].isFinite {
            points.append("\(px(c.fpr[i])),\(py(c.tpr[i]))")
        }
        guard !points.isEmpty else { continue }
        s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"\(points.joined(separator: " "))\"/>\n"
    }

    // Legend (bottom right, inside the plot, where ROC curves rarely are).
    if !curves.isEmpty {
        // Width from the longest entry (≈ 6.8 px per character at 12 px), kept inside the plot.
        let longest = curves.map { $0.name.count + 13 }.max() ?? 0
        let rowH = 18.0, boxW = min(plotW - 20, max(150, 46 + 6.8 * Double(longest)))
        let boxH = rowH * Double(curves.count) + 10
        let x0 = left + plotW - boxW - 10, y0 = top + plotH - boxH - 10
        s += "<rect x=\"\(fmt(x0))\" y=\"\(fmt(y0))\" width=\"\(fmt(boxW))\" height=\"\(fmt(boxH))\" fill=\"#ffffff\" fill-opacity=\"0.9\" stroke=\"#999999\"/>\n"
        for (k, c) in curves.enumerated() {
            let colour = palette[k % palette.count]
            let y = y0 + 5 + rowH * (Double(k) + 0.5)
            let auc = c.auc.isFinite ? String(format: "%.4f", c.auc) : "n/a"
            s += "<line x1=\"\(fmt(x0 + 8))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x0 + 32))\" y2=\"\(fmt(y))\" stroke=\"\(colour)\" stroke-width=\"3\"/>\n"
            s += "<text x=\"\(fmt(x0 + 38))\" y=\"\(fmt(y + 4))\">\(xmlEscape(c.name)) (AUC \(auc))</text>\n"
        }
    }
    s += "</svg>\n"
    return s
}

private func fmt(_ v: Double) -> String { String(format: "%.2f", v) }

/// Escapes text for XML and HTML (`&`, `<`, `>`, quotes).
func xmlEscape(_ s: String) -> String {
    var out = ""
    for ch in s {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(ch)
        }
    }
    return out
}
