import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// Lays out pseudo-anomalies for inspection: one row per sample, `original | pseudo-anomaly | mask` (the mask in
/// gray), separated by `gap` white pixels. All images of a row must share a size; rows may differ (each row is as
/// wide as its triple, narrower rows are padded with white).
///
/// - Parameters:
///   - originals, results: `3 × H × W` (1-channel images are shown as gray).
///   - masks: `1 × H × W`.
/// - Returns: a `3 × rowsHeight × width` image in [0, 1].
/// - Throws: `invalidArgument` if the counts or a row's sizes disagree, or there is nothing to draw.
public func synthesisGrid(originals: [Image], results: [Image], masks: [Image], gap: Int = 4) throws -> Image {
    guard !originals.isEmpty, originals.count == results.count, originals.count == masks.count else {
        throw PatchGuardError.invalidArgument(
            "synthesis grid: \(originals.count) originals, \(results.count) results, \(masks.count) masks "
            + "(need the same positive number of each)")
    }
    for (i, (o, r)) in zip(originals, results).enumerated() {
        let m = masks[i]
        guard o.width == r.width, o.height == r.height, o.width == m.width, o.height == m.height else {
            throw PatchGuardError.invalidArgument(
                "synthesis grid row \(i): sizes \(o.width)×\(o.height), \(r.width)×\(r.height), "
                + "\(m.width)×\(m.height) differ")
        }
    }
    // ImagePanel's layout is exactly this grid's: rows `gap` apart, each `original | result | mask` `gap` apart,
    // white elsewhere, values clamped to [0, 1], gray shown as gray.
    let rows = originals.indices.map { [originals[$0], results[$0], masks[$0]] }
    return ImagePanel.compose(rows: rows, gap: gap, background: 1, clamp: true)
}

/// Writes ``synthesisGrid(originals:results:masks:gap:)`` as one 8-bit RGB PNG at `path`.
public func writeSynthesisGrid(originals: [Image], results: [Image], masks: [Image], to path: String) throws {
    let grid = try synthesisGrid(originals: originals, results: results, masks: masks)
    try ImageIO.writePNG(grid, path: path, bitDepth: 8)
}
