import Foundation
import PatchGuardCore
import PatchGuardImage

// Defect geometry for the generated dataset, drawn procedurally (thin strokes, irregular blobs), never by copying
// image content, so that the test anomalies differ from the cut-paste pseudo-anomalies the detector trains on.

/// A union of tapered polylines (scratches, cracks): each vertex carries a half-width, interpolated along segments.
struct Strokes {
    var lines: [[P2]] = []
    var halfWidths: [[Float]] = []
    var box = PixelBox.empty

    mutating func add(_ points: [P2], halfWidths hw: [Float], size: Int) {
        lines.append(points); halfWidths.append(hw)
        var lo = P2(.infinity, .infinity), hi = P2(-.infinity, -.infinity)
        for l in lines { for p in l { lo = P2(min(lo.x, p.x), min(lo.y, p.y)); hi = P2(max(hi.x, p.x), max(hi.y, p.y)) } }
        let maxHW = halfWidths.flatMap { $0 }.max() ?? 1
        box = PixelBox(lo: lo, hi: hi, margin: maxHW + 2, size: size)
    }

    /// Signed distance to the union at pixel centre `p`.
    func distance(_ p: P2) -> Float {
        var best = Float.infinity
        for (line, hw) in zip(lines, halfWidths) where line.count > 1 {
            for k in 0..<(line.count - 1) {
                let (d, t) = segmentDistance(p, line[k], line[k + 1])
                best = min(best, d - (hw[k] + (hw[k + 1] - hw[k]) * t))
            }
        }
        return best
    }

    /// Anti-aliased coverage at pixel `(x, y)` (0 outside the bounding box).
    func coverage(x: Int, y: Int) -> Float {
        guard box.contains(x, y) else { return 0 }
        return PatchGuardData.coverage(distance(P2(Float(x) + 0.5, Float(y) + 0.5)))
    }

    /// Every vertex of every line.
    var points: [P2] { lines.flatMap { $0 } }

    /// A quadratic Bézier from `a` to `b` bending by `bend` (fraction of the length, signed), sampled at `n + 1`
    /// points, with half-width tapering from `hw0` at the ends to `hw1` in the middle.
    static func curve(from a: P2, to b: P2, bend: Float, n: Int = 16, hwEnds hw0: Float, hwMiddle hw1: Float)
        -> (points: [P2], halfWidths: [Float]) {
        let mid = (a + b) * 0.5, dir = b - a
        let normal = P2(-dir.y, dir.x)
        let control = mid + normal * bend
        var pts: [P2] = [], hws: [Float] = []
        for i in 0...n {
            let t = Float(i) / Float(n), u = 1 - t
            pts.append(a * (u * u) + control * (2 * u * t) + b * (t * t))
            let edge = 1 - abs(2 * t - 1)                 // 0 at the ends, 1 in the middle
            hws.append(hw0 + (hw1 - hw0) * edge.squareRoot())
        }
        return (pts, hws)
    }

    /// A crack: a jittered random walk from `start` (`steps` steps of `stepLength`), with `branches` shorter walks
    /// forking from it; half-widths taper from `hwStart` to ~40 % at the tips. `accept` rejects vertices (the walk
    /// turns back toward `start` when a step would leave the allowed region).
    static func crack(start: P2, heading: Float, steps: Int, stepLength: Float, branches: Int, hwStart: Float,
                      size: Int, accept: (P2) -> Bool, using rng: inout SeededRNG) -> Strokes {
        var strokes = Strokes()
        func walk(from p0: P2, heading h0: Float, steps: Int, hw: Float) -> [P2] {
            var pts = [p0], p = p0, h = h0
            for _ in 0..<steps {
                h += rng.float(-0.55, 0.55)
                var next = p + P2.unit(h) * (stepLength * rng.float(0.7, 1.3))
                var tries = 0
                while !accept(next) && tries < 8 {
                    h += rng.float(1.2, 2.4) * rng.sign()
                    next = p + P2.unit(h) * stepLength
                    tries += 1
                }
                if !accept(next) { break }
                pts.append(next); p = next
            }
            return pts
        }
        let main = walk(from: start, heading: heading, steps: steps, hw: hwStart)
        strokes.add(main, halfWidths: taper(main.count, from: hwStart), size: size)
        if main.count > 2 {
            for _ in 0..<branches {
                let k = rng.int(in: 1..<(main.count - 1))
                let dirMain = main[k + 1] - main[k]
                let h = atan2f(dirMain.y, dirMain.x) + rng.float(0.5, 1.1) * rng.sign()
                let hw = hwStart * rng.float(0.55, 0.75)
                let branch = walk(from: main[k], heading: h, steps: max(2, steps / 2 - rng.int(in: 0..<3)), hw: hw)
                if branch.count > 1 { strokes.add(branch, halfWidths: taper(branch.count, from: hw), size: size) }
            }
        }
        return strokes
    }

    static func taper(_ n: Int, from hw: Float) -> [Float] {
        (0..<n).map { i in hw * (1 - 0.6 * Float(i) / Float(max(1, n - 1))) }
    }
}

/// An irregular blob: an ellipse (semi-axes `a`, `b`, rotated by `angle`) whose radius is modulated by a few
/// angular harmonics `1 + Σ aₖ cos(kθ + φₖ)`, with an edge ramp `softness` pixels wide. Used for stains and holes.
struct Blob {
    var center: P2
    var a: Float
    var b: Float
    var angle: Float
    /// (harmonic k, amplitude, phase)
    var harmonics: [(k: Float, amplitude: Float, phase: Float)]
    var softness: Float
    var box: PixelBox

    init(center: P2, a: Float, b: Float, angle: Float, harmonics: [(k: Float, amplitude: Float, phase: Float)],
         softness: Float, size: Int) {
        self.center = center; self.a = a; self.b = b; self.angle = angle; self.harmonics = harmonics
        self.softness = softness
        let wobble = harmonics.reduce(Float(0)) { $0 + abs($1.amplitude) }
        let reach = max(a, b) * (1 + wobble) + softness + 2
        box = PixelBox(lo: center - P2(reach, reach), hi: center + P2(reach, reach), margin: 0, size: size)
    }

    /// A random irregular blob: `harmonics` random harmonics k = 2… of total amplitude about `roughness`.
    static func random(center: P2, a: Float, b: Float, roughness: Float, harmonics count: Int, softness: Float,
                       size: Int, using rng: inout SeededRNG) -> Blob {
        var hs: [(k: Float, amplitude: Float, phase: Float)] = []
        for i in 0..<count {
            let k = Float(2 + i + (i > 1 ? rng.int(in: 0..<4) : 0))
            hs.append((k, roughness / Float(count) * rng.float(0.5, 1.5) / (1 + 0.15 * Float(i)),
                       rng.float(0, 2 * .pi)))
        }
        return Blob(center: center, a: a, b: b, angle: rng.float(0, .pi), harmonics: hs, softness: softness,
                    size: size)
    }

    /// Approximate signed distance (exact for a circle; first-order for the ellipse and the wobble).
    func distance(_ p: P2) -> Float {
        let d = (p - center).rotated(-angle)
        let qx = d.x / a, qy = d.y / b
        let rho = (qx * qx + qy * qy).squareRoot()
        guard rho > 1e-6 else { return -min(a, b) }
        let theta = atan2f(qy, qx)
        var radius: Float = 1
        for h in harmonics { radius += h.amplitude * cosf(h.k * theta + h.phase) }
        // |∇ρ| = |(x/a², y/b²)| / ρ converts the normalised excess to pixels.
        let gx = d.x / (a * a), gy = d.y / (b * b)
        let grad = (gx * gx + gy * gy).squareRoot() / rho
        return (rho - radius) / max(grad, 1e-6)
    }

    /// Coverage at pixel `(x, y)` with this blob's edge softness (0 outside the bounding box).
    func coverage(x: Int, y: Int) -> Float {
        guard box.contains(x, y) else { return 0 }
        return PatchGuardData.coverage(distance(P2(Float(x) + 0.5, Float(y) + 0.5)), softness: softness)
    }

    /// Points on the blob's outline (for checking it stays inside a region).
    func outline(_ n: Int = 24) -> [P2] {
        (0..<n).map { i in
            let theta = Float(i) / Float(n) * 2 * .pi
            var radius: Float = 1
            for h in harmonics { radius += h.amplitude * cosf(h.k * theta + h.phase) }
            return center + P2(a * radius * cosf(theta), b * radius * sinf(theta)).rotated(angle)
        }
    }
}
