import Foundation

/// A self-contained SVG in ``rocSVG(curves:title:)``'s style of certified AUROC against the L2 radius: x from 0 to
/// the largest radius, y from 0 to 1 (ticks every 0.2, light grid), one coloured polyline per curve (σ), the
/// detector's unsmoothed clean AUROC as a dashed grey line (`reference`), chance (0.5) dotted, and a legend with
/// each curve's value at r = 0.
public func certifiedCurveSVG(curves: [(name: String, radius: [Double], auroc: [Double])], reference: Double?,
                              title: String) -> String {
    let width = 520.0, height = 520.0
    let left = 70.0, right = 20.0, top = 50.0, bottom = 60.0
    let plotW = width - left - right, plotH = height - top - bottom
    let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    let rMax = max(1e-9, curves.flatMap(\.radius).max() ?? 1)
    func f(_ v: Double) -> String { String(format: "%.2f", v) }
    func px(_ r: Double) -> String { f(left + min(1, max(0, r / rMax)) * plotW) }
    func py(_ y: Double) -> String { f(top + (1 - min(1, max(0, y))) * plotH) }

    var s = """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
    viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
    <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="#ffffff"/>
    <text x="\(f(left + plotW / 2))" y="30" text-anchor="middle" font-size="15" font-weight="bold">\
    \(xmlEscape(title))</text>

    """
    for i in 0...5 {
        let v = Double(i) / 5, r = rMax * v
        s += "<line x1=\"\(px(r))\" y1=\"\(py(0))\" x2=\"\(px(r))\" y2=\"\(py(1))\" stroke=\"#e6e6e6\"/>\n"
        s += "<line x1=\"\(px(0))\" y1=\"\(py(v))\" x2=\"\(px(rMax))\" y2=\"\(py(v))\" stroke=\"#e6e6e6\"/>\n"
        s += "<line x1=\"\(px(r))\" y1=\"\(py(0))\" x2=\"\(px(r))\" y2=\"\(f(top + plotH + 5))\" stroke=\"#000\"/>\n"
        s += "<line x1=\"\(f(left - 5))\" y1=\"\(py(v))\" x2=\"\(px(0))\" y2=\"\(py(v))\" stroke=\"#000\"/>\n"
        s += "<text x=\"\(px(r))\" y=\"\(f(top + plotH + 20))\" text-anchor=\"middle\">\(String(format: "%.3g", r))</text>\n"
        s += "<text x=\"\(f(left - 9))\" y=\"\(f(top + (1 - v) * plotH + 4))\" text-anchor=\"end\">\(String(format: "%.1f", v))</text>\n"
    }
    s += "<rect x=\"\(px(0))\" y=\"\(py(1))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#000\"/>\n"
    s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 15))\" text-anchor=\"middle\" font-size=\"13\">L2 radius r</text>\n"
    s += "<text x=\"20\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 20 \(f(top + plotH / 2)))\">Certified AUROC</text>\n"
    s += "<line x1=\"\(px(0))\" y1=\"\(py(0.5))\" x2=\"\(px(rMax))\" y2=\"\(py(0.5))\" stroke=\"#888888\" stroke-dasharray=\"2,3\"/>\n"
    if let reference, reference.isFinite {
        s += "<line x1=\"\(px(0))\" y1=\"\(py(reference))\" x2=\"\(px(rMax))\" y2=\"\(py(reference))\" stroke=\"#555555\" stroke-dasharray=\"6,4\"/>\n"
    }
    for (k, c) in curves.enumerated() {
        var points = [String]()
        for i in 0..<min(c.radius.count, c.auroc.count) where c.radius[i].isFinite && c.auroc[i].isFinite {
            points.append("\(px(c.radius[i])),\(py(c.auroc[i]))")
        }
        guard !points.isEmpty else { continue }
        s += "<polyline fill=\"none\" stroke=\"\(palette[k % palette.count])\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"\(points.joined(separator: " "))\"/>\n"
    }
    // Legend, top right.
    var entries = curves.enumerated().map { k, c in
        (colour: palette[k % palette.count], dash: "", text: "\(c.name) (r=0: \(c.auroc.first.map { String(format: "%.4f", $0) } ?? "n/a"))")
    }
    if let reference, reference.isFinite {
        entries.append((colour: "#555555", dash: "6,4", text: String(format: "unsmoothed clean (%.4f)", reference)))
    }
    if !entries.isEmpty {
        let rowH = 18.0, longest = entries.map(\.text.count).max() ?? 0
        let boxW = min(plotW - 20, max(150, 46 + 6.8 * Double(longest))), boxH = rowH * Double(entries.count) + 10
        let x0 = left + plotW - boxW - 10, y0 = top + 10
        s += "<rect x=\"\(f(x0))\" y=\"\(f(y0))\" width=\"\(f(boxW))\" height=\"\(f(boxH))\" fill=\"#ffffff\" fill-opacity=\"0.9\" stroke=\"#999999\"/>\n"
        for (k, e) in entries.enumerated() {
            let y = y0 + 5 + rowH * (Double(k) + 0.5)
            let dash = e.dash.isEmpty ? "" : " stroke-dasharray=\"\(e.dash)\""
            s += "<line x1=\"\(f(x0 + 8))\" y1=\"\(f(y))\" x2=\"\(f(x0 + 32))\" y2=\"\(f(y))\" stroke=\"\(e.colour)\" stroke-width=\"3\"\(dash)/>\n"
            s += "<text x=\"\(f(x0 + 38))\" y=\"\(f(y + 4))\">\(xmlEscape(e.text))</text>\n"
        }
    }
    s += "</svg>\n"
    return s
}
