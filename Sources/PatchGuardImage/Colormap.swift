import Foundation
import PatchGuardCore

/// Matplotlib's `jet` colour map (its `_jet_data` segments, linear between the break points):
///
///     red   (0, 0) (0.35, 0) (0.66, 1) (0.89, 1) (1, 0.5)
///     green (0, 0) (0.125, 0) (0.375, 1) (0.64, 1) (0.91, 0) (1, 0)
///     blue  (0, 0.5) (0.11, 1) (0.34, 1) (0.65, 0) (1, 0)
///
/// Dark blue (low, normal) → cyan → yellow → dark red (high, anomalous).
public enum JetColormap {
    static let red: [(Float, Float)] = [(0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)]
    static let green: [(Float, Float)] = [(0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)]
    static let blue: [(Float, Float)] = [(0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0)]

    /// RGB in [0, 1] of `t` (clamped to [0, 1]; NaN → 0).
    public static func rgb(_ t: Float) -> (r: Float, g: Float, b: Float) {
        let x = t.isNaN ? 0 : min(1, max(0, t))
        return (segment(red, x), segment(green, x), segment(blue, x))
    }

    /// `#rrggbb` of `t`, for CSS.
    public static func hex(_ t: Float) -> String {
        let c = rgb(t)
        func byte(_ v: Float) -> Int { Int((v * 255).rounded()) }
        return String(format: "#%02x%02x%02x", byte(c.r), byte(c.g), byte(c.b))
    }

    @inline(__always)
    static func segment(_ points: [(Float, Float)], _ x: Float) -> Float {
        for k in 1..<points.count where x <= points[k].0 {
            let (x0, y0) = points[k - 1], (x1, y1) = points[k]
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        }
        return points[points.count - 1].1
    }

    /// A 256-entry table (`rgb(i/255)`), what ``HeatmapWriter`` colours pixels with.
    public static let table: [(r: Float, g: Float, b: Float)] = (0..<256).map { rgb(Float($0) / 255) }

    /// A `height × width` map with values in [0, 1] as a jet-coloured RGB image, each value coloured exactly
    /// (``rgb(_:)``, not the 256-entry ``table``).
    /// - Throws: `invalidArgument` if `map` does not hold `width × height` values.
    public static func image(_ map: [Float], width: Int, height: Int) throws -> Image {
        guard map.count == width * height, width > 0, height > 0 else {
            throw PatchGuardError.invalidArgument("jet image: \(map.count) values for \(height)×\(width)")
        }
        let plane = width * height
        var px = [Float](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            let (r, g, b) = rgb(map[i])
            px[i] = r; px[plane + i] = g; px[2 * plane + i] = b
        }
        return Image(width: width, height: height, channels: 3, pixels: px)
    }

    /// `(1 − a)·image + a·jet(t)` per pixel of a planar RGB `image` (`3 × plane` values), `t = units[i]` in [0, 1]
    /// looked up in ``table`` at `round(255·t)`, `a = opacity` clamped to [0, 1]. The heat maps' overlay.
    public static func overlay(_ image: [Float], units: [Float], opacity: Float) -> [Float] {
        let plane = units.count, a = min(1, max(0, opacity))
        precondition(image.count == 3 * plane, "jet overlay: \(image.count) image values for \(plane) map values")
        var out = [Float](repeating: 0, count: 3 * plane)
        table.withUnsafeBufferPointer { table in
            for i in 0..<plane {
                let c = table[Int((units[i] * 255).rounded())]
                out[i] = (1 - a) * image[i] + a * c.r
                out[plane + i] = (1 - a) * image[plane + i] + a * c.g
                out[2 * plane + i] = (1 - a) * image[2 * plane + i] + a * c.b
            }
        }
        return out
    }
}
