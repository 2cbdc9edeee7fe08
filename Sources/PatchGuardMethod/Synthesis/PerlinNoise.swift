import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// Ken Perlin's improved gradient noise in 2-D (2002 reference: quintic fade, 8 gradient directions), with a
/// permutation table shuffled by a seeded generator so every patch gets a different field.
///
/// `fractal(x, y, octaves)` sums octaves `k = 0..<octaves` of `0.5ᵏ · noise(2ᵏ x, 2ᵏ y)` (persistence 0.5,
/// lacunarity 2), the defaults of the `noise` package's `pnoise2` that the official code calls.
public struct PerlinNoise: Sendable {
    /// 512 entries: a permutation of 0..<256, repeated (so `perm[i + 1]` never wraps).
    let perm: [Int]

    public init(using rng: inout SeededRNG) {
        let p = Array(0..<256).shuffled(using: &rng)
        perm = p + p
    }

    @inline(__always) static func fade(_ t: Double) -> Double { t * t * t * (t * (t * 6 - 15) + 10) }
    @inline(__always) static func lerp(_ t: Double, _ a: Double, _ b: Double) -> Double { a + t * (b - a) }

    @inline(__always) static func grad(_ hash: Int, _ x: Double, _ y: Double) -> Double {
        switch hash & 7 {
        case 0: return x + y
        case 1: return -x + y
        case 2: return x - y
        case 3: return -x - y
        case 4: return x
        case 5: return -x
        case 6: return y
        default: return -y
        }
    }

    /// One octave, in about [−1, 1]; 0 at integer lattice points.
    public func noise(_ x: Double, _ y: Double) -> Double {
        let fx = x.rounded(.down), fy = y.rounded(.down)
        let xi = Int(fx) & 255, yi = Int(fy) & 255
        let xf = x - fx, yf = y - fy
        let u = Self.fade(xf), v = Self.fade(yf)
        let aa = perm[perm[xi] + yi], ab = perm[perm[xi] + yi + 1]
        let ba = perm[perm[xi + 1] + yi], bb = perm[perm[xi + 1] + yi + 1]
        let bottom = Self.lerp(u, Self.grad(aa, xf, yf), Self.grad(ba, xf - 1, yf))
        let top = Self.lerp(u, Self.grad(ab, xf, yf - 1), Self.grad(bb, xf - 1, yf - 1))
        return Self.lerp(v, bottom, top)
    }

    /// Sum of `octaves` octaves (persistence 0.5, lacunarity 2), divided by the total amplitude.
    public func fractal(_ x: Double, _ y: Double, octaves: Int) -> Double {
        var sum = 0.0, amplitude = 1.0, frequency = 1.0, total = 0.0
        for _ in 0..<max(1, octaves) {
            sum += amplitude * noise(x * frequency, y * frequency)
            total += amplitude
            amplitude *= 0.5
            frequency *= 2
        }
        return sum / total
    }
}
