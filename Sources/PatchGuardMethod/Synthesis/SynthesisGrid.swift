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
    let width = originals.map { 3 * $0.width + 2 * gap }.max()!
    let height = originals.reduce(0) { $0 + $1.height } + gap * (originals.count - 1)
    var grid = Image(width: width, height: height, channels: 3, value: 1)
    func blit(_ image: Image, x0: Int, y0: Int) {
        for c in 0..<3 {
            let src = min(c, image.channels - 1)
            for y in 0..<image.height {
                for x in 0..<image.width {
                    grid[c, y0 + y, x0 + x] = min(1, max(0, image[src, y, x]))
                }
            }
        }
    }
    var y0 = 0
    for i in originals.indices {
        let w = originals[i].width
        blit(originals[i], x0: 0, y0: y0)
        blit(results[i], x0: w + gap, y0: y0)
        blit(masks[i], x0: 2 * (w + gap), y0: y0)
        y0 += originals[i].height + gap
    }
    return grid
}

/// Writes ``synthesisGrid(originals:results:masks:gap:)`` as one 8-bit RGB PNG at `path`.
public func writeSynthesisGrid(originals: [Image], results: [Image], masks: [Image], to path: String) throws {
    let grid = try synthesisGrid(originals: originals, results: results, masks: masks)
    try ImageIO.writePNG(grid, path: path, bitDepth: 8)
}
