import Foundation
import PatchGuardCore
import PatchGuardImage

// Small rasterisation kit for the generated dataset: 2-D points, signed distances, anti-aliased coverage and
// hash-based (position-keyed, order-free) noise. Pixel (x, y) is sampled at its centre (x + ½, y + ½); all lengths
// are in pixels. A signed distance is negative inside a shape; `coverage(sd)` turns it into the fraction of a
// pixel the shape covers, which is what makes edges anti-aliased without supersampling.

struct P2: Equatable {
    var x: Float
    var y: Float
    init(_ x: Float, _ y: Float) { self.x = x; self.y = y }
    static func + (a: P2, b: P2) -> P2 { P2(a.x + b.x, a.y + b.y) }
    static func - (a: P2, b: P2) -> P2 { P2(a.x - b.x, a.y - b.y) }
    static func * (a: P2, s: Float) -> P2 { P2(a.x * s, a.y * s) }
    var length: Float { (x * x + y * y).squareRoot() }
    func dot(_ b: P2) -> Float { x * b.x + y * b.y }
    /// Unit vector at `angle` radians.
    static func unit(_ angle: Float) -> P2 { P2(cosf(angle), sinf(angle)) }
    /// Rotated by `angle` radians.
    func rotated(_ angle: Float) -> P2 {
        let c = cosf(angle), s = sinf(angle)
        return P2(c * x - s * y, s * x + c * y)
    }
}

/// An RGB colour (linear blend space = the stored [0, 1] values).
struct RGB: Equatable {
    var r: Float, g: Float, b: Float
    init(_ r: Float, _ g: Float, _ b: Float) { self.r = r; self.g = g; self.b = b }
    static func * (a: RGB, s: Float) -> RGB { RGB(a.r * s, a.g * s, a.b * s) }
    static func * (a: RGB, b: RGB) -> RGB { RGB(a.r * b.r, a.g * b.g, a.b * b.b) }
    static func + (a: RGB, b: RGB) -> RGB { RGB(a.r + b.r, a.g + b.g, a.b + b.b) }
    /// `a·(1 − t) + b·t`.
    static func mix(_ a: RGB, _ b: RGB, _ t: Float) -> RGB {
        RGB(a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t)
    }
}

@inline(__always) func clamp01(_ v: Float) -> Float { min(1, max(0, v)) }

/// Hermite smoothstep of `x` between `e0` and `e1`.
@inline(__always) func smoothstep(_ e0: Float, _ e1: Float, _ x: Float) -> Float {
    let t = clamp01((x - e0) / (e1 - e0))
    return t * t * (3 - 2 * t)
}

/// Fraction of a pixel inside a shape whose signed distance at the pixel centre is `sd`, for an edge ramp
/// `softness` pixels wide (1 = a crisp anti-aliased edge, larger = blurrier).
@inline(__always) func coverage(_ sd: Float, softness: Float = 1) -> Float { clamp01(0.5 - sd / softness) }

/// Distance from `p` to the segment `a`–`b`, and the segment parameter `t ∈ [0, 1]` of the nearest point.
@inline(__always) func segmentDistance(_ p: P2, _ a: P2, _ b: P2) -> (distance: Float, t: Float) {
    let ab = b - a, ap = p - a
    let len2 = ab.dot(ab)
    let t = len2 > 0 ? clamp01(ap.dot(ab) / len2) : 0
    return ((ap - ab * t).length, t)
}

/// Signed distance to a box of half-sizes `half` centred at the origin with corner radius `radius`.
@inline(__always) func roundedBoxDistance(_ p: P2, half: P2, radius: Float) -> Float {
    let qx = abs(p.x) - half.x + radius, qy = abs(p.y) - half.y + radius
    let outside = P2(max(qx, 0), max(qy, 0)).length
    return outside + min(max(qx, qy), 0) - radius
}

// MARK: - Hash noise (keyed by integer lattice position and a seed, so it never depends on drawing order)

@inline(__always) func hash3(_ x: Int32, _ y: Int32, _ seed: UInt32) -> UInt32 {
    var h = UInt32(bitPattern: x) &* 0x8DA6_B343 ^ UInt32(bitPattern: y) &* 0xD816_3841 ^ seed &* 0xCB1A_B31F
    h ^= h >> 15; h = h &* 0x2C1B_3C6D
    h ^= h >> 12; h = h &* 0x297A_2D39
    h ^= h >> 15
    return h
}

/// Uniform in [0, 1) for a lattice point.
@inline(__always) func hashUnit(_ x: Int32, _ y: Int32, _ seed: UInt32) -> Float {
    Float(hash3(x, y, seed) >> 8) * (1.0 / 16_777_216.0)
}

/// Smooth value noise in [0, 1): lattice values at integer points, smoothstep-interpolated.
@inline(__always) func valueNoise(_ x: Float, _ y: Float, _ seed: UInt32) -> Float {
    let fx = x.rounded(.down), fy = y.rounded(.down)
    let ix = Int32(fx), iy = Int32(fy)
    var tx = x - fx, ty = y - fy
    tx = tx * tx * (3 - 2 * tx); ty = ty * ty * (3 - 2 * ty)
    let a = hashUnit(ix, iy, seed), b = hashUnit(ix &+ 1, iy, seed)
    let c = hashUnit(ix, iy &+ 1, seed), d = hashUnit(ix &+ 1, iy &+ 1, seed)
    let top = a + (b - a) * tx, bottom = c + (d - c) * tx
    return top + (bottom - top) * ty
}

/// Two octaves of value noise, in [0, 1).
@inline(__always) func fractalNoise(_ x: Float, _ y: Float, _ seed: UInt32) -> Float {
    (valueNoise(x, y, seed) * 2 + valueNoise(x * 2.03 + 17.1, y * 2.03 - 5.3, seed &+ 1)) * (1.0 / 3.0)
}

// MARK: - Random helpers

extension SeededRNG {
    mutating func float(_ lo: Float, _ hi: Float) -> Float { Float(uniform(Double(lo), Double(hi))) }
    mutating func sign() -> Float { next() & 1 == 0 ? -1 : 1 }
    mutating func seed32() -> UInt32 { UInt32(truncatingIfNeeded: next() >> 32) }
}

/// A rectangle of pixels `[x0, x1) × [y0, y1)` clipped to an image; shapes use it to skip far pixels.
struct PixelBox {
    var x0: Int, y0: Int, x1: Int, y1: Int
    static let empty = PixelBox(x0: 0, y0: 0, x1: 0, y1: 0)

    /// The box around points `lo…hi` grown by `margin` pixels, clipped to `size × size`.
    init(lo: P2, hi: P2, margin: Float, size: Int) {
        x0 = max(0, Int((lo.x - margin).rounded(.down))); y0 = max(0, Int((lo.y - margin).rounded(.down)))
        x1 = min(size, Int((hi.x + margin).rounded(.up)) + 1); y1 = min(size, Int((hi.y + margin).rounded(.up)) + 1)
    }
    init(x0: Int, y0: Int, x1: Int, y1: Int) { self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1 }

    @inline(__always) func contains(_ x: Int, _ y: Int) -> Bool { x >= x0 && x < x1 && y >= y0 && y < y1 }
}
