import PatchGuardCore

// Compositing for pictures meant to be looked at: contact sheets, heat-map rows, synthesis grids, foreground
// previews. One layout rule and one copy loop for all of them.

extension Image {
    /// Copies `image` into this 3-channel canvas with its top-left corner at `(x0, y0)`. A 1-channel image is
    /// shown as gray (replicated into R, G and B). With `clamp`, values go through `min(1, max(0, v))` (NaN → 0).
    /// - Precondition: this image has 3 channels, `image` 1 or 3, and it fits inside.
    public mutating func place(_ image: Image, x x0: Int, y y0: Int, clamp: Bool = false) {
        precondition(channels == 3 && (image.channels == 1 || image.channels == 3),
                     "place a \(image.channels)-channel image on a \(channels)-channel canvas")
        precondition(x0 >= 0 && y0 >= 0 && x0 + image.width <= width && y0 + image.height <= height,
                     "\(image.width)×\(image.height) at (\(x0), \(y0)) does not fit in \(width)×\(height)")
        let w = image.width, n = image.planeSize
        for c in 0..<3 {
            let src = min(c, image.channels - 1) * n
            for y in 0..<image.height {
                let dst = (c * height + y0 + y) * width + x0, row = src + y * w
                if clamp {
                    for x in 0..<w { pixels[dst + x] = min(1, max(0, image.pixels[row + x])) }
                } else {
                    for x in 0..<w { pixels[dst + x] = image.pixels[row + x] }
                }
            }
        }
    }
}

/// Rows of images composed into one RGB picture.
///
/// Layout: images of a row sit side by side, top-aligned, `gap` pixels apart; rows are `gap` pixels apart, each as
/// tall as its tallest image; `margin` pixels surround the whole. The canvas is as wide as the widest row (shorter
/// rows leave background on the right) and everything not covered is `background`:
///
///     width  = 2·margin + max over rows of (Σ widths + gap·(count − 1))
///     height = 2·margin + Σ row heights + gap·(rows − 1)
///
/// 1-channel images are shown as gray; see ``Image/place(_:x:y:clamp:)`` for `clamp`.
public enum ImagePanel {
    /// Where each image of `rows` goes (its top-left corner), and the canvas size.
    public static func layout(_ rows: [[(width: Int, height: Int)]], gap: Int, margin: Int)
        -> (width: Int, height: Int, origins: [[(x: Int, y: Int)]]) {
        var origins: [[(x: Int, y: Int)]] = []
        var y = margin, widest = 0
        for (r, row) in rows.enumerated() {
            if r > 0 { y += gap }
            var x = margin, placed: [(x: Int, y: Int)] = []
            for (k, size) in row.enumerated() {
                if k > 0 { x += gap }
                placed.append((x, y))
                x += size.width
            }
            widest = max(widest, x - margin)
            origins.append(placed)
            y += row.map(\.height).max() ?? 0
        }
        return (widest + 2 * margin, y + margin, origins)
    }

    /// The picture of `rows` (see the type's documentation).
    public static func compose(rows: [[Image]], gap: Int, margin: Int = 0, background: Float,
                               clamp: Bool = false) -> Image {
        let plan = layout(rows.map { $0.map { (width: $0.width, height: $0.height) } }, gap: gap, margin: margin)
        var canvas = Image(width: max(1, plan.width), height: max(1, plan.height), channels: 3, value: background)
        for (r, row) in rows.enumerated() {
            for (k, image) in row.enumerated() {
                canvas.place(image, x: plan.origins[r][k].x, y: plan.origins[r][k].y, clamp: clamp)
            }
        }
        return canvas
    }

    /// One row: `images` side by side, `gap` pixels apart.
    public static func row(_ images: [Image], gap: Int, background: Float, clamp: Bool = false) -> Image {
        compose(rows: [images], gap: gap, background: background, clamp: clamp)
    }
}
