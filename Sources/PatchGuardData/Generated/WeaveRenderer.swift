import Foundation
import PatchGuardCore
import PatchGuardImage

/// The "weave": a plain-woven fabric texture filling the whole image — warp threads (horizontal) and weft threads
/// (vertical) crossing over and under in a checkerboard, on a dark backing showing through the gaps. Each thread is
/// a shaded cylinder that arches over the thread it crosses and dips under the next; threads vary in tint, carry a
/// fibre grain along their length, and the whole cloth is lit by a gentle gradient. Period (8.5–10.5 threads per
/// image), small rotation (±4°), phase, colours and lighting vary per image.
///
/// Defects (anywhere, at least 8 % of the side from the border): `scratch` (a light loose thread lying across the
/// cloth), `crack` (a branching dark tear), `hole` (an irregular, frayed opening onto the dark backing), `stain`
/// (a soft mottled colour blob).
struct WeaveScene {
    static let defectTypes = ["crack", "hole", "scratch", "stain"]

    let size: Int
    /// Thread spacing in pixels.
    var period: Float
    var angle: Float
    var phase: P2
    var warp: RGB
    var weft: RGB
    var backing: RGB
    var light: P2
    var gradient: Float
    var brightness: Float
    var noiseSeed: UInt32

    enum Defect {
        case surface(SurfaceDefect)
        case hole(Blob)
    }

    static func random(size: Int, using rng: inout SeededRNG) -> WeaveScene {
        let period = Float(size) / rng.float(8.5, 10.5)
        let tone = rng.float(-0.03, 0.03)
        let warp = RGB(0.80 + tone, 0.68 + tone, 0.50 + tone) * rng.float(0.95, 1.04)
        return WeaveScene(
            size: size, period: period, angle: rng.float(-0.07, 0.07),
            phase: P2(rng.float(0, period), rng.float(0, period)), warp: warp,
            weft: warp * RGB(rng.float(0.9, 0.97), rng.float(0.92, 0.99), rng.float(0.95, 1.05)),
            backing: RGB(0.16, 0.13, 0.1), light: P2.unit(rng.float(0, 2 * .pi)), gradient: rng.float(0.06, 0.16),
            brightness: rng.float(0.9, 1.08), noiseSeed: rng.seed32())
    }

    func randomDefect(_ type: String, using rng: inout SeededRNG) -> Defect {
        let s = Float(size), px = max(Float(1), s / 128)
        let margin = 0.08 * s
        let inside: (P2, Float) -> Bool = { p, m in
            p.x - m > margin && p.y - m > margin && p.x + m < s - margin && p.y + m < s - margin
        }
        func point(_ border: Float) -> P2 { P2(rng.float(border, s - border), rng.float(border, s - border)) }
        switch type {
        case "scratch":
            var length = s * rng.float(0.25, 0.45)
            let hw = max(0.55, rng.float(0.7, 1.0) * px)
            let bend = rng.float(0.1, 0.35) * rng.sign()
            var a = P2(s / 2, s / 2), b = a
            for attempt in 0..<40 {
                a = point(0.2 * s)
                b = a + P2.unit(rng.float(0, 2 * .pi)) * length
                let d = SurfaceDefect.scratch(from: a, to: b, bend: bend, halfWidth: hw, paint: RGB(0, 0, 0),
                                              opacity: 1, size: size)
                if case let .strokes(st) = d.shape, st.points.allSatisfy({ inside($0, hw + 1) }) { break }
                if attempt % 8 == 7 { length *= 0.8 }
            }
            return .surface(.scratch(from: a, to: b, bend: bend, halfWidth: hw,
                                     paint: RGB(0.97, 0.95, 0.88) * rng.float(0.92, 1.02),
                                     opacity: rng.float(0.8, 0.95), size: size))
        case "crack":
            let hw = max(0.7, rng.float(1.1, 1.5) * px)
            let strokes = Strokes.crack(start: point(0.3 * s), heading: rng.float(0, 2 * .pi),
                                        steps: rng.int(in: 8..<13), stepLength: 0.045 * s,
                                        branches: rng.int(in: 1..<4), hwStart: hw, size: size,
                                        accept: { inside($0, hw + 1) }, using: &rng)
            return .surface(SurfaceDefect(shape: .strokes(strokes), paint: RGB(0.07, 0.055, 0.045),
                                          opacity: rng.float(0.85, 0.95), mottle: 0, noiseSeed: 0))
        case "stain":
            let a = s * rng.float(0.07, 0.13), soft = rng.float(1.5, 3) * px
            let blob = Blob.random(center: point(0.08 * s + 1.6 * a + soft), a: a, b: a * rng.float(0.6, 1),
                                   roughness: 0.3, harmonics: 3, softness: soft, size: size, using: &rng)
            let paint = SurfaceDefect.textureStainPaints[rng.int(in: 0..<SurfaceDefect.textureStainPaints.count)]
            return .surface(SurfaceDefect(shape: .blob(blob), paint: paint, opacity: rng.float(0.55, 0.8),
                                          mottle: 0.35, noiseSeed: rng.seed32()))
        default: // "hole"
            let a = s * rng.float(0.05, 0.09)
            let blob = Blob.random(center: point(0.08 * s + 1.8 * a + 2), a: a, b: a * rng.float(0.6, 1),
                                   roughness: 0.35, harmonics: 5, softness: 1, size: size, using: &rng)
            return .hole(blob)
        }
    }

    /// Renders the cloth, with `defect` when given. The foreground is the whole image.
    func render(defect: Defect?) -> RenderedScene {
        let n = size, plane = n * n
        var image = [Float](repeating: 0, count: 3 * plane)
        var weight = [Float](repeating: 0, count: plane)
        let cosA = cosf(angle), sinA = sinf(angle)
        let inv = 1 / period
        let half = Float(n) / 2
        let threadHalf: Float = 0.4          // thread half-width, in periods
        let aa = inv                          // one pixel, in periods

        for y in 0..<n {
            for x in 0..<n {
                let px = Float(x) + 0.5 - half, py = Float(y) + 0.5 - half
                let u = (cosA * px + sinA * py + phase.x) * inv, v = (-sinA * px + cosA * py + phase.y) * inv
                let fi = u.rounded(.down), fj = v.rounded(.down)
                let i = Int32(fi), j = Int32(fj)
                let fu = u - fi - 0.5, fv = v - fj - 0.5                 // in [−½, ½): 0 at the crossing
                let over: Float = (i &+ j) & 1 == 0 ? 1 : -1             // +1: warp over weft in this cell

                // Cross-section of each thread (a cylinder), and its elevation along its length.
                let warpCov = coverage((abs(fv) - threadHalf) / aa)
                let weftCov = coverage((abs(fu) - threadHalf) / aa)
                let warpProfile = max(0, 1 - (fv / threadHalf) * (fv / threadHalf)).squareRoot()
                let weftProfile = max(0, 1 - (fu / threadHalf) * (fu / threadHalf)).squareRoot()
                let warpLift = over * cosf(.pi * fu)
                let weftLift = -over * cosf(.pi * fv)
                let warpTop = clamp01(0.5 + 3 * ((warpLift + 0.6 * warpProfile) - (weftLift + 0.6 * weftProfile)))

                // Fibre grain along each thread and a per-thread tint.
                let warpTint = 0.93 + 0.14 * hashUnit(0, j, noiseSeed &+ 11)
                let weftTint = 0.93 + 0.14 * hashUnit(i, 0, noiseSeed &+ 13)
                let warpGrain = 0.88 + 0.24 * valueNoise(u * 5, v * 22, noiseSeed &+ 3)
                let weftGrain = 0.88 + 0.24 * valueNoise(u * 22, v * 5, noiseSeed &+ 5)
                let warpShade = (0.42 + 0.48 * warpProfile + 0.16 * warpLift) * warpTint * warpGrain
                let weftShade = (0.42 + 0.48 * weftProfile + 0.16 * weftLift) * weftTint * weftGrain
                let warpColour = warp * warpShade, weftColour = weft * weftShade

                // Composite: backing, then the lower thread, then the upper one.
                let backingShade = 0.8 + 0.4 * valueNoise(u * 3, v * 3, noiseSeed &+ 9)
                let base = backing * backingShade
                let warpOnTop = RGB.mix(RGB.mix(base, weftColour, weftCov), warpColour, warpCov)
                let weftOnTop = RGB.mix(RGB.mix(base, warpColour, warpCov), weftColour, weftCov)
                var colour = RGB.mix(weftOnTop, warpOnTop, warpTop)
                let p = P2(Float(x) + 0.5 - half, Float(y) + 0.5 - half)
                colour = colour * (brightness * (1 + gradient * p.dot(light) / Float(n)))

                if let defect {
                    switch defect {
                    case let .surface(s):
                        let (painted, w) = s.apply(colour, x: x, y: y)
                        colour = painted
                        weight[y * n + x] = w
                    case let .hole(blob):
                        let hole = blob.coverage(x: x, y: y)
                        if hole > 0 {
                            let dark = backing * (0.45 + 0.2 * valueNoise(Float(x) / 2, Float(y) / 2, noiseSeed))
                            colour = RGB.mix(colour, dark, hole)
                            weight[y * n + x] = hole
                        }
                    }
                }

                let grain = (hashUnit(Int32(x), Int32(y), noiseSeed) - 0.5) * 0.03
                let k = y * n + x
                image[k] = clamp01(colour.r + grain)
                image[plane + k] = clamp01(colour.g + grain)
                image[2 * plane + k] = clamp01(colour.b + grain)
            }
        }
        return RenderedScene(image: image, foreground: [Float](repeating: 1, count: plane), defect: weight)
    }
}
