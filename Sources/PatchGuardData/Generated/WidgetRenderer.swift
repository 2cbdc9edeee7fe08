import Foundation
import PatchGuardCore
import PatchGuardImage

/// What a generated scene renders to: RGB pixels, the true foreground and the defect weight, each per pixel.
struct RenderedScene {
    /// (3, S, S) planar RGB in [0, 1]
    var image: [Float]
    /// (S, S) object coverage in [0, 1] (after the defect: a hole or a missing part is not foreground)
    var foreground: [Float]
    /// (S, S) how much of the defect covers each pixel, in [0, 1] (0 everywhere for a good image)
    var defect: [Float]
}

/// The "widget": a painted disc on a plain background, seen from above — a dome-shaded body with a groove ring,
/// three rivets, a machined hub with a slot, and a tab on the rim. Position, size, rotation, colours, light
/// direction and strength vary per image; the body has a grainy paint texture; a soft shadow falls on the
/// background; every pixel gets a little sensor noise. The rotation is visible (slot, rivets, tab), so a detector
/// must learn the object, not a template.
///
/// Defects, all on the object (placement checks the defect's outline against the body's radius):
/// `scratch` (thin light curve), `crack` (branching dark tapered walk), `hole` (a through-hole: background seen
/// through it plus a dark wall crescent), `stain` (a soft irregular colour blob), `missing` (a segment of the rim
/// broken off along a jagged chord), `bent` (the tab swung by 35–50° about its root and bent out of the plane:
/// shorter, brighter or darker, creased at its root; ground truth: its old and new places).
struct WidgetScene {
    static let defectTypes = ["bent", "crack", "hole", "missing", "scratch", "stain"]

    let size: Int
    var center: P2
    var radius: Float
    /// Rotation of the tab, slot and rivets.
    var rotation: Float
    var body: RGB
    var hub: RGB
    var background: RGB
    /// Unit vector toward the light, in the image plane (y down).
    var light: P2
    var lightStrength: Float
    var backgroundGradient: Float
    var noiseSeed: UInt32

    enum Defect {
        case surface(SurfaceDefect)
        case hole(Blob, wallShift: P2)
        /// The rim beyond the chord at distance `(1 − depth)·radius` along `direction` is gone.
        case missing(direction: Float, depth: Float, jagSeed: UInt32)
        /// The tab swung by `angle` about its root on the rim and bent out of the plane: seen from above it is
        /// `length` of its length (foreshortened), lit by `shade` (brighter or darker than the body), with a crease
        /// across its root.
        case bent(angle: Float, length: Float, shade: Float)
    }

    static func random(size: Int, using rng: inout SeededRNG) -> WidgetScene {
        let s = Float(size)
        let radius = 0.34 * s * rng.float(0.95, 1.05)
        let reach = 1.32 * radius + 2
        let cx = min(s - reach, max(reach, s / 2 + Float(rng.normal()) * 0.035 * s))
        let cy = min(s - reach, max(reach, s / 2 + Float(rng.normal()) * 0.035 * s))
        let lightAngle = -0.75 * Float.pi + rng.float(-0.5, 0.5)        // from the upper left, ±30°
        let tone = rng.float(-0.03, 0.03)
        return WidgetScene(
            size: size, center: P2(cx, cy), radius: radius, rotation: rng.float(0, 2 * .pi),
            body: RGB(0.13 + tone + rng.float(-0.02, 0.02), 0.42 + tone + rng.float(-0.03, 0.03),
                      0.60 + tone + rng.float(-0.03, 0.03)),
            hub: RGB(0.80, 0.80, 0.82) * rng.float(0.92, 1.04),
            background: RGB(0.80, 0.79, 0.76) * rng.float(0.93, 1.05),
            light: P2.unit(lightAngle), lightStrength: rng.float(0.85, 1.12),
            backgroundGradient: rng.float(0.08, 0.2), noiseSeed: rng.seed32())
    }

    /// A random defect of `type` (one of ``defectTypes``), placed on the body.
    func randomDefect(_ type: String, using rng: inout SeededRNG) -> Defect {
        // Widths scale with the image: `px` is one pixel of a 64-pixel rendering (the size the default job trains at),
        // so a scratch or crack stays at least about a pixel wide there and is not lost to downsampling.
        let r = radius, c = center, px = max(Float(0.5), Float(size) / 64)
        let inside: (P2, Float) -> Bool = { p, margin in (p - c).length + margin < 0.86 * r }
        func pointInDisc(maxRadius: Float) -> P2 {
            let rr = maxRadius * rng.float(0, 1).squareRoot()
            return c + P2.unit(rng.float(0, 2 * .pi)) * rr
        }
        switch type {
        case "scratch":
            var length = r * rng.float(0.45, 0.8)
            let hw = max(0.6, rng.float(1.3, 1.7) * px)
            let bend = rng.float(0.08, 0.3) * rng.sign()
            var a = c, b = c
            for attempt in 0..<40 {
                a = pointInDisc(maxRadius: 0.7 * r)
                b = a + P2.unit(rng.float(0, 2 * .pi)) * length
                let d = SurfaceDefect.scratch(from: a, to: b, bend: bend, halfWidth: hw, paint: RGB(0, 0, 0),
                                              opacity: 1, size: size)
                // On the painted body, off the light hub (a light scratch across the hub would be invisible).
                if case let .strokes(s) = d.shape,
                   s.points.allSatisfy({ inside($0, hw + 1) && ($0 - c).length > 0.3 * r + hw }) { break }
                if attempt % 8 == 7 { length *= 0.8 }
            }
            let paint = RGB(0.95, 0.95, 0.92) * rng.float(0.92, 1.05)
            return .surface(.scratch(from: a, to: b, bend: bend, halfWidth: hw, paint: paint,
                                     opacity: rng.float(0.85, 0.95), size: size))
        case "crack":
            let hw = max(0.6, rng.float(0.95, 1.25) * px)
            let strokes = Strokes.crack(start: pointInDisc(maxRadius: 0.55 * r), heading: rng.float(0, 2 * .pi),
                                        steps: rng.int(in: 8..<13), stepLength: 0.075 * r,
                                        branches: rng.int(in: 1..<3), hwStart: hw, size: size,
                                        accept: { inside($0, hw + 1) }, using: &rng)
            return .surface(SurfaceDefect(shape: .strokes(strokes), paint: RGB(0.05, 0.045, 0.04),
                                          opacity: rng.float(0.85, 0.95), mottle: 0, noiseSeed: 0))
        case "stain":
            var a = r * rng.float(0.2, 0.3)
            let soft = rng.float(0.75, 1.5) * px
            var blob = Blob.random(center: c, a: a, b: a, roughness: 0.3, harmonics: 3, softness: soft, size: size,
                                   using: &rng)
            for attempt in 0..<40 {
                blob = Blob.random(center: pointInDisc(maxRadius: 0.6 * r), a: a, b: a * rng.float(0.6, 1),
                                   roughness: 0.3, harmonics: 3, softness: soft, size: size, using: &rng)
                if blob.outline().allSatisfy({ inside($0, soft) }) { break }
                if attempt % 8 == 7 { a *= 0.85 }
            }
            let paint = SurfaceDefect.objectStainPaints[rng.int(in: 0..<SurfaceDefect.objectStainPaints.count)]
            return .surface(SurfaceDefect(shape: .blob(blob), paint: paint, opacity: rng.float(0.7, 0.9),
                                          mottle: 0.35, noiseSeed: rng.seed32()))
        case "hole":
            var a = r * rng.float(0.13, 0.2)
            var blob = Blob.random(center: c, a: a, b: a, roughness: 0.08, harmonics: 2, softness: 1, size: size,
                                   using: &rng)
            for attempt in 0..<40 {
                let angle = rng.float(0, 2 * .pi), dist = r * rng.float(0.42, 0.68)
                blob = Blob.random(center: c + P2.unit(angle) * dist, a: a, b: a * rng.float(0.65, 1),
                                   roughness: 0.08, harmonics: 2, softness: 1, size: size, using: &rng)
                let clear = blob.outline().allSatisfy { q in
                    let d = (q - c).length
                    return d > 0.3 * r && d + 1 < 0.86 * r
                }
                if clear { break }
                if attempt % 8 == 7 { a *= 0.85 }
            }
            return .hole(blob, wallShift: light * (-0.35 * min(blob.a, blob.b)))
        case "missing":
            let away = rng.float(0.35, 1.65) * .pi                      // keep the tab intact
            return .missing(direction: rotation + away, depth: rng.float(0.28, 0.4), jagSeed: rng.seed32())
        default: // "bent"
            return .bent(angle: rng.float(0.6, 0.9) * rng.sign(), length: rng.float(0.72, 0.85),
                         shade: rng.sign() > 0 ? rng.float(0.3, 0.45) : rng.float(1.6, 1.9))
        }
    }

    // MARK: - Rendering

    /// Signed distance to the tab swung by `bend` about its root (the rim point at `rotation`), its length scaled
    /// by `length` from its inner end (foreshortening of a tab bent out of the plane).
    @inline(__always) func tabDistance(_ p: P2, bend: Float, length: Float = 1) -> Float {
        let pivot = center + P2.unit(rotation) * radius
        let local = (p - pivot).rotated(-(rotation + bend))
        let half = 0.26 * radius * length
        return roundedBoxDistance(local - P2(half - 0.2 * radius, 0), half: P2(half, 0.18 * radius),
                                  radius: 0.06 * radius)
    }

    /// Coverage of the crease across the root of a bent tab (a dark line just outside the rim).
    @inline(__always) func creaseCoverage(_ p: P2, bend: Float) -> Float {
        let pivot = center + P2.unit(rotation) * radius
        let local = (p - pivot).rotated(-(rotation + bend))
        return coverage(max(abs(local.x - 0.03 * radius) - 0.6, abs(local.y) - 0.18 * radius))
    }

    /// Renders the scene, with `defect` when given.
    func render(defect: Defect?) -> RenderedScene {
        let n = size, plane = n * n, r = radius, c = center
        var image = [Float](repeating: 0, count: 3 * plane)
        var foreground = [Float](repeating: 0, count: plane)
        var weight = [Float](repeating: 0, count: plane)
        let l3 = (x: light.x * 0.55, y: light.y * 0.55, z: Float(0.835))
        let highlight = c + light * (0.42 * r)
        let shadowCenter = c - light * (0.07 * r) + P2(0, 0.03 * r)
        let rivets = (0..<3).map { k in c + P2.unit(rotation + .pi / 3 + Float(k) * 2 * .pi / 3) * (0.47 * r) }
        let rivetRadius = 0.075 * r, hubRadius = 0.26 * r, grooveRadius = 0.66 * r
        let half = Float(n) / 2
        var bend: Float = 0, tabLength: Float = 1, tabShade: Float = 1
        var cut: (dir: P2, offset: Float, seed: UInt32)? = nil
        if case let .bent(angle, length, shade) = defect { bend = angle; tabLength = length; tabShade = shade }
        if case let .missing(direction, depth, seed) = defect { cut = (P2.unit(direction), (1 - depth) * r, seed) }

        for y in 0..<n {
            for x in 0..<n {
                let p = P2(Float(x) + 0.5, Float(y) + 0.5)
                let d = p - c, dist = d.length, rho = dist / r

                // Background: lit paper with a vignette, a fine grain and the object's soft shadow.
                let fromMiddle = (p - P2(half, half)).length / (0.75 * Float(n))
                var bgShade = 1 + backgroundGradient * (p - P2(half, half)).dot(light) / Float(n)
                bgShade *= 1 - 0.1 * fromMiddle * fromMiddle
                bgShade *= 0.985 + 0.03 * valueNoise(p.x / 2, p.y / 2, noiseSeed &+ 7)
                let shadow = 0.32 * coverage((p - shadowCenter).length - r, softness: 0.28 * r)
                let bg = background * (bgShade * (1 - shadow))

                // Silhouette: the disc and the tab (the tab shows only outside the disc).
                var disc = coverage(dist - r)
                var brokenEdge: Float = 0
                if let cut {
                    let along = d.dot(P2(-cut.dir.y, cut.dir.x))
                    let jag = (valueNoise(along / (0.06 * r), 3.7, cut.seed) - 0.5) * 0.12 * r
                    let t = d.dot(cut.dir) - cut.offset + jag           // > 0: broken off
                    let removed = coverage(-t)
                    let edge = coverage(abs(t + 1.2) - 1)               // the fresh broken edge, on the body
                    weight[y * n + x] = disc * max(removed, edge * (1 - removed))
                    disc *= 1 - removed
                    brokenEdge = edge * disc
                }
                let tabNominal = coverage(tabDistance(p, bend: 0))
                let tab = bend == 0 ? tabNominal : coverage(tabDistance(p, bend: bend, length: tabLength))
                if bend != 0 {
                    weight[y * n + x] = max(tabNominal, tab) * (1 - coverage(dist - r))
                }

                var colour = bg
                if tab > 0 {
                    let q = (p - c).rotated(-(rotation + bend))
                    let ridge = 0.86 + 0.14 * cosf(min(1, abs(q.y) / (0.18 * r)) * .pi / 2)
                    let shade = (0.5 + 0.55 * max(0, 0.3 * light.x * cosf(rotation + bend)
                                                      + 0.3 * light.y * sinf(rotation + bend) + 0.6)) * ridge
                    let tabColour = body * (shade * lightStrength * tabShade)
                    colour = RGB.mix(colour, tabColour, tab)
                    if bend != 0 { colour = RGB.mix(colour, body * 0.25, tab * creaseCoverage(p, bend: bend)) }
                }
                if disc > 0 {
                    // Dome shading of the painted body.
                    let k: Float = 0.7
                    let nx = d.x / r * k, ny = d.y / r * k
                    let nz = max(0, 1 - (nx * nx + ny * ny)).squareRoot()
                    let diffuse = max(0, nx * l3.x + ny * l3.y + nz * l3.z)
                    var shade = (0.3 + 0.8 * diffuse) * lightStrength
                    shade *= 0.93 + 0.14 * fractalNoise(p.x / 2.2, p.y / 2.2, noiseSeed)      // paint grain
                    shade *= 1 - 0.3 * smoothstep(0.86, 1.0, rho)                            // bevelled rim
                    shade *= 1 - 0.45 * coverage(abs(dist - grooveRadius) - 0.7, softness: 1.2)
                    var surface = body * shade
                    surface = surface + RGB(1, 1, 1) * (0.06 * coverage(abs(dist - grooveRadius - 1.8) - 0.5))
                    // Rivets.
                    for rp in rivets {
                        let rd = p - rp
                        let cov = coverage(rd.length - rivetRadius)
                        if cov > 0 {
                            let u = rd * (1 / rivetRadius)
                            let z = max(0, 1 - u.dot(u)).squareRoot()
                            let lit = max(0, u.x * l3.x + u.y * l3.y + z * l3.z)
                            let metal = RGB(0.8, 0.8, 0.83) * ((0.35 + 0.8 * lit) * lightStrength)
                            surface = RGB.mix(surface, metal, cov)
                            let ring = coverage(abs(rd.length - rivetRadius) - 0.4)
                            surface = RGB.mix(surface, body * 0.35, ring * 0.6)
                        }
                    }
                    // Machined hub with a slot.
                    let hubCov = coverage(dist - hubRadius)
                    if hubCov > 0 {
                        let hubShade = (0.55 + 0.45 * diffuse + 0.06 * cosf(dist * 2.1)) * lightStrength
                        var metal = hub * hubShade
                        let q = d.rotated(-rotation)
                        let slot = coverage(roundedBoxDistance(q, half: P2(0.19 * r, 0.038 * r),
                                                               radius: 0.02 * r))
                        metal = RGB.mix(metal, RGB(0.1, 0.1, 0.11), slot)
                        surface = RGB.mix(surface, metal, hubCov)
                        surface = RGB.mix(surface, body * 0.3, coverage(abs(dist - hubRadius) - 0.5) * 0.7)
                    }
                    // Specular highlight.
                    let h = p - highlight
                    surface = surface + RGB(1, 1, 1) * (0.22 * lightStrength
                                                        * expf(-h.dot(h) / (2 * 0.15 * r * 0.15 * r)))
                    colour = RGB.mix(colour, surface, disc)
                    colour = RGB.mix(colour, colour * 0.5, brokenEdge)
                }
                var object = max(disc, tab)

                // Defects that change the body.
                if let defect {
                    switch defect {
                    case let .hole(blob, wallShift):
                        let hole = blob.coverage(x: x, y: y)
                        if hole > 0 {
                            let q = P2(Float(x) + 0.5, Float(y) + 0.5) - wallShift
                            let through = coverage(blob.distance(q), softness: 1)
                            colour = RGB.mix(colour, body * 0.18, hole)                       // the wall
                            colour = RGB.mix(colour, bg * 0.62, hole * through)                // seen through
                            object *= 1 - hole * through
                            weight[y * n + x] = hole
                        }
                    case let .surface(s):
                        let (painted, w) = s.apply(colour, x: x, y: y)
                        colour = painted
                        weight[y * n + x] = w
                    case .missing, .bent:
                        break
                    }
                }

                // Sensor noise, keyed by position: identical in a scene with and without its defect.
                let grain = (hashUnit(Int32(x), Int32(y), noiseSeed) - 0.5) * 0.03
                let i = y * n + x
                image[i] = clamp01(colour.r + grain)
                image[plane + i] = clamp01(colour.g + grain)
                image[2 * plane + i] = clamp01(colour.b + grain)
                foreground[i] = object
            }
        }
        return RenderedScene(image: image, foreground: foreground, defect: weight)
    }
}
