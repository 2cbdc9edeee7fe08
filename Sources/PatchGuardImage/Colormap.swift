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
}
