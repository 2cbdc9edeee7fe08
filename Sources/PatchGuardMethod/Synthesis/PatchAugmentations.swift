import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// The augmentations applied to a cut patch before it is rotated and pasted (DESIGN.md §2), after the official
/// PatchGuard `RandomAugmentations`. Each takes a 3-channel patch in [0, 1] and explicit parameters, returns a patch
/// of the same shape with values in [0, 1], and never reads outside the patch. ``augment(_:level:using:)`` draws the
/// level's augmentations and parameters.
///
/// Shapes: a patch is an ``Image`` `3 × h × w` (planar RGB); planes are `h × w` row-major.
public enum PatchAugment {

    // MARK: - Drawing a level's augmentations

    /// Applies colour jitter plus `k ~ U{0…max_extra_augmentations}` distinct augmentations drawn (in random order)
    /// from the level's pool, with the colour jitter inserted at a uniformly random position in that list — as the
    /// official `RandomAugmentations.apply` does. Returns the patch and the augmentations in the order applied.
    public static func augment(_ patch: Image, level: SynthesisLevelConfig,
                               using rng: inout SeededRNG) throws -> (patch: Image, applied: [PatchAugmentation]) {
        var pool = level.augmentations
        let count = min(pool.count, Int.random(in: 0...max(0, level.maxExtraAugmentations), using: &rng))
        // Partial Fisher–Yates: the first `count` entries become a uniformly random ordered sample.
        for i in 0..<count { pool.swapAt(i, Int.random(in: i..<pool.count, using: &rng)) }
        var chosen = Array(pool.prefix(count))
        chosen.insert(.colorJitter, at: Int.random(in: 0...count, using: &rng))
        var out = patch
        for kind in chosen { out = try apply(kind, to: out, level: level, using: &rng) }
        return (out, chosen)
    }

    /// Applies one augmentation with parameters drawn from `level`.
    public static func apply(_ kind: PatchAugmentation, to patch: Image, level: SynthesisLevelConfig,
                             using rng: inout SeededRNG) throws -> Image {
        var p = patch
        switch kind {
        case .colorJitter:
            colorJitter(&p, brightness: level.brightness.sample(using: &rng),
                        contrast: level.contrast.sample(using: &rng),
                        saturation: level.saturation.sample(using: &rng),
                        hue: level.hue.sample(using: &rng), using: &rng)
            return p
        case .gaussianBlur:
            return gaussianBlur(p, sigma: level.blurSigma.sample(using: &rng))
        case .elastic:
            return elastic(p, alpha: level.elasticAlpha.sample(using: &rng), sigma: level.elasticSigma, using: &rng)
        case .swirl:
            return swirl(p, strength: level.swirlStrength.sample(using: &rng))
        case .jpegArtifacts:
            return try jpegArtifacts(p, quality: level.jpegQuality.sampleInt(using: &rng))
        case .perlinFill:
            return perlinFill(p, scale: level.perlinScale.sample(using: &rng),
                              threshold: level.perlinThreshold.sample(using: &rng),
                              octaves: level.perlinOctaves, using: &rng)
        case .randomErasing:
            return randomErasing(p, areaRatio: level.eraseRatio.sample(using: &rng),
                                 rectangles: level.eraseRects.sampleInt(using: &rng), using: &rng)
        case .tornLines:
            return tornLines(p, lines: level.tornLines.sampleInt(using: &rng), width: level.tornLineWidth,
                             using: &rng)
        }
    }

    // MARK: - Colour jitter (torchvision ColorJitter semantics on float pixels)

    /// torchvision's `ColorJitter(brightness: b, contrast: c, saturation: s, hue: h)`: factors uniform in
    /// `[max(0, 1−b), 1+b]` (same for c, s), hue shift uniform in `[−h, h]`, the four applied in a random order;
    /// a zero strength skips its adjustment.
    public static func colorJitter(_ p: inout Image, brightness: Double, contrast: Double, saturation: Double,
                                   hue: Double, using rng: inout SeededRNG) {
        func factor(_ s: Double) -> Float? {
            s > 0 ? Float(rng.uniform(max(0, 1 - s), 1 + s)) : nil
        }
        let b = factor(brightness), c = factor(contrast), s = factor(saturation)
        let h: Float? = hue > 0 ? Float(rng.uniform(-hue, hue)) : nil
        for step in Array(0..<4).shuffled(using: &rng) {
            switch step {
            case 0: if let b { adjustBrightness(&p, factor: b) }
            case 1: if let c { adjustContrast(&p, factor: c) }
            case 2: if let s { adjustSaturation(&p, factor: s) }
            default: if let h { adjustHue(&p, shift: h) }
            }
        }
    }

    /// `x ← clamp(f·x)`.
    public static func adjustBrightness(_ p: inout Image, factor: Float) {
        for i in p.pixels.indices { p.pixels[i] = clamp01(p.pixels[i] * factor) }
    }

    /// `x ← clamp(f·x + (1−f)·m)`, `m` the mean of the patch's luma `0.299R + 0.587G + 0.114B`.
    public static func adjustContrast(_ p: inout Image, factor: Float) {
        let n = p.planeSize
        var sum: Float = 0
        for i in 0..<n { sum += luma(p, i) }
        let m = (1 - factor) * sum / Float(max(1, n))
        for i in p.pixels.indices { p.pixels[i] = clamp01(factor * p.pixels[i] + m) }
    }

    /// `x ← clamp(f·x + (1−f)·luma)` per pixel.
    public static func adjustSaturation(_ p: inout Image, factor: Float) {
        let n = p.planeSize
        for i in 0..<n {
            let g = (1 - factor) * luma(p, i)
            for c in 0..<3 { p.pixels[c * n + i] = clamp01(factor * p.pixels[c * n + i] + g) }
        }
    }

    /// Rotates the hue by `shift` turns (HSV, hue in [0, 1)), keeping saturation and value.
    public static func adjustHue(_ p: inout Image, shift: Float) {
        let n = p.planeSize
        for i in 0..<n {
            let r = p.pixels[i], g = p.pixels[n + i], b = p.pixels[2 * n + i]
            let maxc = max(r, g, b), minc = min(r, g, b), delta = maxc - minc
            guard delta > 0 else { continue } // gray: hue undefined, unchanged
            var h: Float
            if maxc == r { h = (g - b) / delta } else if maxc == g { h = 2 + (b - r) / delta } else { h = 4 + (r - g) / delta }
            h = h / 6 + shift
            h -= h.rounded(.down)
            let s = delta / maxc, v = maxc
            let h6 = h * 6, sector = min(5, Int(h6)), f = h6 - Float(sector)
            let pp = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
            let (nr, ng, nb): (Float, Float, Float)
            switch sector {
            case 0: (nr, ng, nb) = (v, t, pp)
            case 1: (nr, ng, nb) = (q, v, pp)
            case 2: (nr, ng, nb) = (pp, v, t)
            case 3: (nr, ng, nb) = (pp, q, v)
            case 4: (nr, ng, nb) = (t, pp, v)
            default: (nr, ng, nb) = (v, pp, q)
            }
            p.pixels[i] = clamp01(nr); p.pixels[n + i] = clamp01(ng); p.pixels[2 * n + i] = clamp01(nb)
        }
    }

    // MARK: - Blur, elastic, swirl

    /// Separable Gaussian blur of every channel, standard deviation `sigma` pixels, kernel radius `⌈3σ⌉`, mirrored
    /// borders (`d c b a | a b c d | d c b a`). `sigma ≤ 0` returns the patch unchanged.
    public static func gaussianBlur(_ p: Image, sigma: Double) -> Image {
        guard sigma > 0 else { return p }
        var out = p
        let n = p.planeSize
        for c in 0..<p.channels {
            let plane = gaussianFilter(Array(p.pixels[(c * n)..<((c + 1) * n)]), width: p.width, height: p.height,
                                       sigma: sigma)
            for i in 0..<n { out.pixels[c * n + i] = clamp01(plane[i]) }
        }
        return out
    }

    /// Elastic deformation (Simard et al.; the official code's `elastic_transform`): displacement fields
    /// `dx, dy = alpha · (G_σ ∗ U(−1, 1))` (Gaussian filter with mirrored borders), then every pixel reads the patch
    /// at `(x + dx, y + dy)` by bilinear interpolation with mirrored borders.
    public static func elastic(_ p: Image, alpha: Double, sigma: Double, using rng: inout SeededRNG) -> Image {
        let w = p.width, h = p.height, n = p.planeSize
        var noiseX = [Float](repeating: 0, count: n), noiseY = [Float](repeating: 0, count: n)
        for i in 0..<n { noiseX[i] = Float(rng.uniform(-1, 1)) }
        for i in 0..<n { noiseY[i] = Float(rng.uniform(-1, 1)) }
        let dx = gaussianFilter(noiseX, width: w, height: h, sigma: sigma)
        let dy = gaussianFilter(noiseY, width: w, height: h, sigma: sigma)
        var out = p
        for y in 0..<h {
            for x in 0..<w {
                let i = y * w + x
                let sx = Float(x) + Float(alpha) * dx[i], sy = Float(y) + Float(alpha) * dy[i]
                for c in 0..<p.channels {
                    out.pixels[c * n + i] = clamp01(bilinearMirrored(p, c, sx, sy))
                }
            }
        }
        return out
    }

    /// Swirl about the patch centre `(w/2, h/2)` (integer division, as the official code): a pixel at offset
    /// `(x, y)` reads the patch at the offset rotated by `θ = strength · exp(−r² / (2 s²))`, `s = max(1, min(w,h)/3)`,
    /// with bilinear interpolation; source coordinates are clamped to the patch.
    public static func swirl(_ p: Image, strength: Double) -> Image {
        let w = p.width, h = p.height, n = p.planeSize
        let cx = Double(w / 2), cy = Double(h / 2)
        let s = Double(max(1, min(w, h) / 3))
        var out = p
        for y in 0..<h {
            for x in 0..<w {
                let ox = Double(x) - cx, oy = Double(y) - cy
                let angle = strength * Foundation.exp(-(ox * ox + oy * oy) / (2 * s * s))
                let ca = Foundation.cos(angle), sa = Foundation.sin(angle)
                let sx = min(Double(w - 1), max(0, cx + ox * ca - oy * sa))
                let sy = min(Double(h - 1), max(0, cy + ox * sa + oy * ca))
                for c in 0..<p.channels {
                    out.pixels[c * n + y * w + x] = clamp01(bilinearMirrored(p, c, Float(sx), Float(sy)))
                }
            }
        }
        return out
    }

    // MARK: - JPEG artifacts

    /// A real baseline-JPEG round trip through libjpeg (``ImageIO``) at `quality` (1–100): 8-bit quantisation,
    /// chroma subsampling and DCT block artifacts.
    public static func jpegArtifacts(_ p: Image, quality: Int) throws -> Image {
        let bytes = try ImageIO.encodeJPEG(p, quality: min(100, max(1, quality)))
        let decoded = try ImageIO.decode(bytes, name: "jpeg-artifacts patch")
        guard decoded.width == p.width, decoded.height == p.height, decoded.channels == p.channels else {
            throw PatchGuardError.numeric("JPEG round trip changed the patch shape \(p.channels)×\(p.height)×"
                                          + "\(p.width) to \(decoded.channels)×\(decoded.height)×\(decoded.width)")
        }
        return decoded
    }

    // MARK: - Perlin fill, random erasing, torn lines

    /// Perlin-noise fill: a fractal Perlin field `N(x/scale, y/scale)` (`octaves` octaves, a freshly shuffled
    /// permutation) is min–max normalised to [0, 1]; pixels where it exceeds `threshold` take one random colour —
    /// blob-shaped stains and holes inside the patch (the official `perlin_noise_mask`).
    public static func perlinFill(_ p: Image, scale: Double, threshold: Double, octaves: Int,
                                  using rng: inout SeededRNG) -> Image {
        let w = p.width, h = p.height, n = p.planeSize
        let perlin = PerlinNoise(using: &rng)
        // A random offset so the lattice zeros do not always sit on the patch's top-left corner.
        let ox = rng.uniform(0, 256), oy = rng.uniform(0, 256)
        var field = [Double](repeating: 0, count: n)
        for y in 0..<h {
            for x in 0..<w {
                field[y * w + x] = perlin.fractal(ox + Double(x) / scale, oy + Double(y) / scale, octaves: octaves)
            }
        }
        let colour = (0..<3).map { _ in Float(rng.int(in: 0..<256)) / 255 }
        guard let lo = field.min(), let hi = field.max(), hi > lo else { return p }
        var out = p
        for i in 0..<n where (field[i] - lo) / (hi - lo) > threshold {
            for c in 0..<p.channels { out.pixels[c * n + i] = colour[min(c, 2)] }
        }
        return out
    }

    /// Random erasing: `rectangles` rectangles, each of area `areaRatio · w·h`, aspect ratio (w/h) uniform in
    /// [0.3, 3.3], at a uniformly random position inside the patch, filled with a random colour each.
    public static func randomErasing(_ p: Image, areaRatio: Double, rectangles: Int,
                                     using rng: inout SeededRNG) -> Image {
        let w = p.width, h = p.height, n = p.planeSize
        var out = p
        for _ in 0..<max(0, rectangles) {
            let area = areaRatio * Double(w * h)
            let aspect = rng.uniform(0.3, 3.3)
            let eh = min(h, max(1, Int((area / aspect).squareRoot())))
            let ew = min(w, max(1, Int(aspect * Double(eh))))
            let x0 = rng.int(in: 0..<(w - ew + 1)), y0 = rng.int(in: 0..<(h - eh + 1))
            let colour = (0..<3).map { _ in Float(rng.int(in: 0..<256)) / 255 }
            for c in 0..<p.channels {
                for y in y0..<(y0 + eh) {
                    for x in x0..<(x0 + ew) { out.pixels[c * n + y * w + x] = colour[min(c, 2)] }
                }
            }
        }
        return out
    }

    /// Torn lines: `lines` straight segments between two uniformly random pixels of the patch (Bresenham), `width`
    /// pixels wide (a square brush), each in a random corner colour of the RGB cube (every channel 0 or 1) — the
    /// official `torn_paper_effect`.
    public static func tornLines(_ p: Image, lines: Int, width lineWidth: Int, using rng: inout SeededRNG) -> Image {
        let w = p.width, h = p.height, n = p.planeSize
        var out = p
        let lo = -(max(1, lineWidth) - 1) / 2, hi = lo + max(1, lineWidth) - 1
        for _ in 0..<max(0, lines) {
            var x0 = rng.int(in: 0..<w), y0 = rng.int(in: 0..<h)
            let x1 = rng.int(in: 0..<w), y1 = rng.int(in: 0..<h)
            let colour: [Float] = (0..<3).map { _ in rng.int(in: 0..<2) == 0 ? 0 : 1 }
            let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
            var err = dx + dy
            while true {
                for by in lo...hi {
                    for bx in lo...hi {
                        let x = x0 + bx, y = y0 + by
                        guard x >= 0, x < w, y >= 0, y < h else { continue }
                        for c in 0..<p.channels { out.pixels[c * n + y * w + x] = colour[min(c, 2)] }
                    }
                }
                if x0 == x1 && y0 == y1 { break }
                let e2 = 2 * err
                if e2 >= dy { err += dy; x0 += sx }
                if e2 <= dx { err += dx; y0 += sy }
            }
        }
        return out
    }

    // MARK: - Helpers

    @inline(__always) static func clamp01(_ v: Float) -> Float { min(1, max(0, v)) }

    @inline(__always) static func luma(_ p: Image, _ i: Int) -> Float {
        let n = p.planeSize
        return 0.299 * p.pixels[i] + 0.587 * p.pixels[n + i] + 0.114 * p.pixels[2 * n + i]
    }

    /// Bilinear sample of channel `c` at continuous pixel coordinates `(x, y)` (pixel centres at integers),
    /// mirrored outside the patch with the edge repeated (``BorderMode/symmetric``).
    @inline(__always) static func bilinearMirrored(_ p: Image, _ c: Int, _ x: Float, _ y: Float) -> Float {
        p.bilinearSample(channel: c, x: x, y: y, border: .symmetric)
    }

    /// Separable Gaussian filter of one `height × width` plane: radius `max(1, ⌈3σ⌉)`, the kernel normalised in
    /// Float, mirrored borders with the edge repeated (``BorderMode/symmetric``) — the Image module's
    /// ``gaussianBlur(_:height:width:sigma:radius:normalization:border:)`` with this step's settings.
    static func gaussianFilter(_ plane: [Float], width w: Int, height h: Int, sigma: Double) -> [Float] {
        // A σ that is not positive and finite blurs nothing (validated configs never pass one); with it, the plane
        // matches its size, so the Image module's checks cannot throw.
        guard sigma > 0, sigma.isFinite else { return plane }
        return try! PatchGuardImage.gaussianBlur(plane, height: h, width: w, sigma: sigma, radius: gaussianRadius(sigma: sigma, minimum: 1),
                          normalization: .float, border: .symmetric)
    }
}
