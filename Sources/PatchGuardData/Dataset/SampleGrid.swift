import PatchGuardCore
import PatchGuardImage

/// Contact sheets of dataset samples, to look at what a loader produces.
public enum SampleGrid {
    /// `image` with `mask` (1 channel, same size) shown in red: inside the mask the colour is blended 45 % toward
    /// pure red and the mask's boundary pixels are drawn solid red.
    public static func overlay(_ image: Image, mask: Image) -> Image {
        precondition(image.channels == 3 && mask.channels == 1 && mask.width == image.width
                     && mask.height == image.height, "overlay needs a 3-channel image and a matching mask")
        var out = image
        let w = image.width, h = image.height, n = w * h
        for y in 0..<h {
            for x in 0..<w where mask.pixels[y * w + x] >= 0.5 {
                var boundary = false
                for (dx, dy) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
                    let xx = x + dx, yy = y + dy
                    if xx < 0 || yy < 0 || xx >= w || yy >= h || mask.pixels[yy * w + xx] < 0.5 { boundary = true }
                }
                let i = y * w + x
                let t: Float = boundary ? 1 : 0.45
                out.pixels[i] += (1 - out.pixels[i]) * t
                out.pixels[n + i] *= 1 - t
                out.pixels[2 * n + i] *= 1 - t
            }
        }
        return out
    }

    /// Tiles (all `3 × S × S`) laid out row by row with `gap` pixels of dark gray between and around them;
    /// a short row is padded with background (``ImagePanel/compose(rows:gap:margin:background:clamp:)``).
    public static func compose(rows: [[Image]], gap: Int = 2) -> Image {
        let tile = rows.lazy.flatMap { $0 }.first?.width ?? 1
        for row in rows {
            for t in row { precondition(t.channels == 3 && t.width == tile && t.height == tile, "tiles must be 3×S×S") }
        }
        return ImagePanel.compose(rows: rows, gap: gap, margin: gap, background: 0.12)
    }

    /// A grid of loaded samples, `columns` per row: each sample is its image above the image with its mask in
    /// red (a good image's second tile is the image unchanged).
    public static func render(_ samples: [LoadedSample], columns: Int) -> Image {
        let columns = max(1, columns)
        var rows: [[Image]] = []
        var start = 0
        while start < samples.count {
            let chunk = samples[start..<min(samples.count, start + columns)]
            rows.append(chunk.map(\.image))
            rows.append(chunk.map { overlay($0.image, mask: $0.mask) })
            start += columns
        }
        return compose(rows: rows)
    }

    /// The samples a category grid shows: `count` good test images spread over `test/good` (training images when
    /// there are no good test images), and `count` defective ones taken round-robin over the defect types.
    public static func pick(_ category: MVTecCategory, count: Int) -> (good: [Sample], defective: [Sample]) {
        let count = max(1, count)
        var goodPool = category.test.filter { $0.label == 0 }
        if goodPool.isEmpty { goodPool = category.train }
        let good = (0..<min(count, goodPool.count)).map { goodPool[$0 * goodPool.count / min(count, goodPool.count)] }
        let byType = category.defectTypes.map { t in category.test.filter { $0.defectType == t } }
        var defective: [Sample] = []
        var round = 0
        while defective.count < count && byType.contains(where: { $0.count > round }) {
            for list in byType where list.count > round && defective.count < count { defective.append(list[round]) }
            round += 1
        }
        return (good, defective)
    }
}

/// Writes a PNG contact sheet of `category`: a row of `count` good images, then `count` defective images (round-
/// robin over defect types) above the same images with their ground truth in red. Images are loaded at
/// `imageSize` exactly as training sees them.
public func writeSampleGrid(category: MVTecCategory, imageSize: Int, count: Int, to path: String) throws {
    let picked = SampleGrid.pick(category, count: count)
    let loader = try SampleLoader(imageSize: imageSize, cacheBudgetBytes: 0)
    let good = try loader.load(picked.good)
    let defective = try loader.load(picked.defective)
    var rows: [[Image]] = [good.map(\.image)]
    if !defective.isEmpty {
        rows.append(defective.map(\.image))
        rows.append(defective.map { SampleGrid.overlay($0.image, mask: $0.mask) })
    }
    try ImageIO.writePNG(SampleGrid.compose(rows: rows), path: path)
}

/// Writes a PNG contact sheet of loaded samples (see ``SampleGrid/render(_:columns:)``).
public func writeSampleGrid(samples: [LoadedSample], columns: Int, to path: String) throws {
    guard !samples.isEmpty else { throw PatchGuardError.invalidArgument("no samples for the grid \(path)") }
    let s = samples[0].image.width
    guard samples.allSatisfy({ $0.image.width == s && $0.image.height == s && $0.image.channels == 3 }) else {
        throw PatchGuardError.invalidArgument("grid samples must all be 3×\(s)×\(s)")
    }
    try ImageIO.writePNG(SampleGrid.render(samples, columns: columns), path: path)
}
