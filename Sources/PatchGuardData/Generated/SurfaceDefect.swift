import Foundation
import PatchGuardCore
import PatchGuardImage

/// A defect painted on top of a surface (object or texture): a scratch or crack (strokes) or a stain (blob).
///
/// Per pixel: `colour ← mix(colour, paint, opacity·coverage·mottle)`, where `coverage` is the shape's
/// anti-aliased coverage; the ground-truth weight is `coverage` itself (the mask is `coverage ≥ 0.3`).
struct SurfaceDefect {
    enum Shape {
        case strokes(Strokes)
        case blob(Blob)
    }
    var shape: Shape
    var paint: RGB
    var opacity: Float
    /// 0: flat paint; > 0: the paint's opacity varies by this fraction with value noise (stains).
    var mottle: Float
    var noiseSeed: UInt32

    /// Coverage of the shape at pixel `(x, y)`.
    @inline(__always) func coverage(x: Int, y: Int) -> Float {
        switch shape {
        case let .strokes(s): return s.coverage(x: x, y: y)
        case let .blob(b): return b.coverage(x: x, y: y)
        }
    }

    /// The pixel after painting, and the ground-truth weight.
    @inline(__always) func apply(_ colour: RGB, x: Int, y: Int) -> (RGB, Float) {
        let c = coverage(x: x, y: y)
        guard c > 0 else { return (colour, 0) }
        var alpha = opacity * c
        if mottle > 0 {
            alpha *= 1 - mottle + mottle * valueNoise(Float(x) / 3.1, Float(y) / 3.1, noiseSeed)
        }
        return (RGB.mix(colour, paint, alpha), c)
    }

    /// A thin light curve (a scratch on paint, a loose thread on fabric) between two points.
    static func scratch(from a: P2, to b: P2, bend: Float, halfWidth: Float, paint: RGB, opacity: Float,
                        size: Int) -> SurfaceDefect {
        let curve = Strokes.curve(from: a, to: b, bend: bend, hwEnds: max(0.5, halfWidth * 0.55),
                                  hwMiddle: halfWidth)
        var s = Strokes()
        s.add(curve.points, halfWidths: curve.halfWidths, size: size)
        return SurfaceDefect(shape: .strokes(s), paint: paint, opacity: opacity, mottle: 0, noiseSeed: 0)
    }

    /// Stain paints on the (blue) widget: rust, ochre, oil, white residue.
    static let objectStainPaints: [RGB] = [RGB(0.58, 0.28, 0.10), RGB(0.80, 0.66, 0.22), RGB(0.10, 0.09, 0.07),
                                           RGB(0.92, 0.91, 0.86)]
    /// Stain paints on the (beige) weave: rust, oil, blue ink, wine.
    static let textureStainPaints: [RGB] = [RGB(0.55, 0.24, 0.08), RGB(0.12, 0.1, 0.08), RGB(0.16, 0.26, 0.55),
                                            RGB(0.45, 0.08, 0.15)]
}
