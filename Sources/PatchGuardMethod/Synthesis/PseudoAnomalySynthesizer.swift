import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// One synthesized pseudo-anomaly and how it was made.
public struct PseudoAnomaly: Sendable, Equatable {
    /// The image with the pasted patch, `3 × H × W` in [0, 1]; bit-identical to the input outside `mask`.
    public var image: Image
    /// `1 × H × W`, 1 on every pasted pixel, 0 elsewhere; always inside the dilated foreground.
    public var mask: Image
    public var level: AnomalyLevel
    /// Augmentations in the order applied (always contains `.colorJitter`).
    public var augmentations: [PatchAugmentation]
    /// Where the patch was cut and where it was pasted (same size).
    public var source: PixelRect
    public var destination: PixelRect
    /// Rotation in degrees.
    public var angle: Double
    public var placement: Placement
    /// True when the given foreground mask was empty and the whole image was used instead.
    public var usedWholeImage: Bool

    /// How the rectangles were found (see ``PseudoAnomalySynthesizer``).
    public enum Placement: String, Sendable, Equatable {
        /// A random size in `[min_size, max_size]²`, both rectangles entirely in the dilated foreground.
        case sampled
        /// `min_size × min_size`, both rectangles entirely in the dilated foreground.
        case smallest
        /// The dilated foreground holds no `min_size × min_size` square: rectangles centred on foreground pixels
        /// (clamped into the image) and the mask clipped to the dilated foreground.
        case clipped
    }
}

/// Foreground-aware CutPaste pseudo-anomalies (DESIGN.md §2), after the official PatchGuard `AnomalyGenerator`.
///
/// For an image `I` (`3 × H × W`, [0, 1]) and a foreground mask `F` (`1 × H × W`, > 0.5 = foreground):
/// 1. `F` is binarised; an empty `F` (or none) means the whole image is foreground (textures; documented fallback,
///    flagged in ``PseudoAnomaly/usedWholeImage``). `D = dilate(F, dilation)` (square structuring element).
/// 2. **Placement.** Up to `max_attempts` times: draw `w, h ~ U{min_size…max_size}` independently (so the aspect
///    ratio varies; both capped at the image sides) and a source and a destination pixel uniformly from `D`; the
///    rectangles are centred on them. Accept when *every* pixel of both rectangles lies in the image and in `D`
///    (checked in O(1) with a summed-area table), so accepted rectangles are uniform over the fitting positions of
///    that size. Otherwise fall back to `min_size × min_size`: `max_attempts` more random tries, then an exhaustive
///    scan for fitting positions (uniform choice among them). If `D` holds no such square at all, the rectangles
///    are centred on random pixels of `D`, clamped into the image, and the mask is clipped to `D` (``Placement``).
///    No step loops without a bound, so synthesis never hangs.
/// 3. The source patch is cut and augmented (``PatchAugment/augment(_:level:using:)``; level drawn with
///    `level_probabilities`).
/// 4. **Rotation.** The patch is rotated by `θ ~ U[−max_rotation, max_rotation]` degrees onto an expanded canvas
///    (`W' = w|cos θ| + h|sin θ|`, `H' = w|sin θ| + h|cos θ|`) that is scaled back into the `w × h` destination
///    rectangle — the official code's `rotate(expand=True)` followed by `resize((w, h))`, so the pasted region never
///    leaves the destination rectangle. Colour and coverage `α` are bilinear with zero padding (colour divided by
///    `α`); the rotated-away corners have `α < 0.5`.
/// 5. **Paste.** Destination pixels with `α > 0.5` that lie in `D` are replaced by the rotated patch; they form the
///    mask. All other pixels are untouched (bit-identical).
///
/// Determinism: every random choice comes from the `SeededRNG` passed in; batches give each item its own stream
/// (``sampleRNG(seed:batchIndex:item:)``), so a parallel batch equals the serial loop.
public struct PseudoAnomalySynthesizer: Sendable {
    public let config: SynthesisConfig

    /// - Throws: `config` if a setting is out of range (``SynthesisConfig/validate()``).
    public init(config: SynthesisConfig = SynthesisConfig()) throws {
        try config.validate()
        self.config = config
    }

    /// The generator of item `item` of batch `batchIndex` under a job seed: independent streams, so the result of a
    /// batch does not depend on how it is split over threads.
    public static func sampleRNG(seed: UInt64, batchIndex: Int, item: Int) -> SeededRNG {
        var batch = SeededRNG(seed: seed, stream: UInt64(truncatingIfNeeded: batchIndex))
        return SeededRNG(seed: batch.next(), stream: UInt64(truncatingIfNeeded: item))
    }

    /// Pseudo-anomalies for a batch, items in parallel (`parallelFor`), item `i` drawn with
    /// `sampleRNG(seed:batchIndex:item: i)`. `foregrounds` = nil means whole images (textures).
    public func synthesizeBatch(images: [Image], foregrounds: [Image]?, seed: UInt64,
                                batchIndex: Int) throws -> [PseudoAnomaly] {
        if let foregrounds, foregrounds.count != images.count {
            throw PatchGuardError.invalidArgument(
                "synthesizeBatch: \(images.count) images but \(foregrounds.count) foreground masks")
        }
        var results = [Result<PseudoAnomaly, Error>?](repeating: nil, count: images.count)
        results.withUnsafeMutableBufferPointer { out in
            parallelFor(images.count) { i in
                var rng = Self.sampleRNG(seed: seed, batchIndex: batchIndex, item: i)
                out[i] = Result { try synthesize(image: images[i], foreground: foregrounds?[i], using: &rng) }
            }
        }
        return try results.map { try $0!.get() }
    }

    /// One pseudo-anomaly (see the type's documentation for the algorithm).
    /// - Parameters:
    ///   - image: `3 × H × W` in [0, 1].
    ///   - foreground: `1 × H × W` (> 0.5 = foreground), or nil for the whole image.
    /// - Throws: `invalidArgument` on shape mismatches; errors of the JPEG round trip.
    public func synthesize(image: Image, foreground: Image?, using rng: inout SeededRNG) throws -> PseudoAnomaly {
        guard image.channels == 3, image.width > 0, image.height > 0 else {
            throw PatchGuardError.invalidArgument(
                "synthesize: image is \(image.channels)×\(image.height)×\(image.width), expected 3×H×W")
        }
        let W = image.width, H = image.height
        var fg = BinaryMask(width: W, height: H, value: 1)
        if let foreground {
            guard foreground.width == W, foreground.height == H, foreground.channels == 1 else {
                throw PatchGuardError.invalidArgument(
                    "synthesize: foreground is \(foreground.channels)×\(foreground.height)×\(foreground.width), "
                    + "expected 1×\(H)×\(W)")
            }
            fg = try BinaryMask(foreground)
        }
        let usedWholeImage = fg.isEmpty
        if usedWholeImage { fg = BinaryMask(width: W, height: H, value: 1) }
        let dilated = fg.dilated(radius: config.dilation)

        let (src, dst, placement) = place(in: dilated, using: &rng)
        let level = config.levelProbabilities.sample(using: &rng)
        let patch = crop(image, src)
        let (augmented, applied) = try PatchAugment.augment(patch, level: config.level(level), using: &rng)
        let angle = config.maxRotation > 0 ? rng.uniform(-config.maxRotation, config.maxRotation) : 0
        let (rotated, alpha) = Self.rotateIntoRectangle(augmented, degrees: angle)

        var out = image
        var mask = Image(width: W, height: H, channels: 1, value: 0)
        let n = image.planeSize, pw = dst.width
        for v in 0..<dst.height {
            for u in 0..<dst.width {
                let x = dst.x + u, y = dst.y + v
                guard alpha[v * pw + u] > 0.5, dilated[y, x] == 1 else { continue }
                for c in 0..<3 { out.pixels[c * n + y * W + x] = rotated.pixels[c * rotated.planeSize + v * pw + u] }
                mask.pixels[y * W + x] = 1
            }
        }
        return PseudoAnomaly(image: out, mask: mask, level: level, augmentations: applied, source: src,
                             destination: dst, angle: angle, placement: placement, usedWholeImage: usedWholeImage)
    }

    // MARK: - Placement

    /// Source and destination rectangles of equal size (algorithm step 2). `dilated` must not be empty.
    func place(in dilated: BinaryMask, using rng: inout SeededRNG) -> (PixelRect, PixelRect, PseudoAnomaly.Placement) {
        let W = dilated.width, H = dilated.height
        let sat = dilated.summedArea()
        var fgPixels: [Int32] = []
        fgPixels.reserveCapacity(W * H)
        for i in 0..<(W * H) where dilated.bits[i] == 1 { fgPixels.append(Int32(i)) }

        func fits(_ r: PixelRect) -> Bool {
            guard r.x >= 0, r.y >= 0, r.x + r.width <= W, r.y + r.height <= H else { return false }
            let w1 = W + 1
            let sum = sat[(r.y + r.height) * w1 + r.x + r.width] - sat[r.y * w1 + r.x + r.width]
                - sat[(r.y + r.height) * w1 + r.x] + sat[r.y * w1 + r.x]
            return Int(sum) == r.width * r.height
        }
        func centred(_ w: Int, _ h: Int) -> PixelRect {
            let p = Int(fgPixels[rng.int(in: 0..<fgPixels.count)])
            return PixelRect(x: p % W - w / 2, y: p / W - h / 2, width: w, height: h)
        }

        let minW = min(config.minSize, W), minH = min(config.minSize, H)
        let maxW = min(config.maxSize, W), maxH = min(config.maxSize, H)
        for _ in 0..<config.maxAttempts {
            let w = Int.random(in: minW...max(minW, maxW), using: &rng)
            let h = Int.random(in: minH...max(minH, maxH), using: &rng)
            let s = centred(w, h), d = centred(w, h)
            if fits(s) && fits(d) { return (s, d, .sampled) }
        }
        for _ in 0..<config.maxAttempts {
            let s = centred(minW, minH), d = centred(minW, minH)
            if fits(s) && fits(d) { return (s, d, .smallest) }
        }
        var fitting: [PixelRect] = []
        if H - minH >= 0 && W - minW >= 0 {
            for y in 0...(H - minH) {
                for x in 0...(W - minW) {
                    let r = PixelRect(x: x, y: y, width: minW, height: minH)
                    if fits(r) { fitting.append(r) }
                }
            }
        }
        if !fitting.isEmpty {
            return (fitting[rng.int(in: 0..<fitting.count)], fitting[rng.int(in: 0..<fitting.count)], .smallest)
        }
        func clamped(_ r: PixelRect) -> PixelRect {
            PixelRect(x: min(max(0, r.x), W - r.width), y: min(max(0, r.y), H - r.height),
                      width: r.width, height: r.height)
        }
        return (clamped(centred(minW, minH)), clamped(centred(minW, minH)), .clipped)
    }

    func crop(_ image: Image, _ r: PixelRect) -> Image {
        var patch = Image(width: r.width, height: r.height, channels: image.channels, value: 0)
        for c in 0..<image.channels {
            for y in 0..<r.height {
                let from = (c * image.height + r.y + y) * image.width + r.x
                let to = (c * r.height + y) * r.width
                for x in 0..<r.width { patch.pixels[to + x] = image.pixels[from + x] }
            }
        }
        return patch
    }

    // MARK: - Rotation

    /// Rotates a `C × h × w` patch by `degrees` (counter-clockwise on screen) about its centre onto the expanded
    /// canvas `W' × H'` and scales that canvas back to `w × h` (algorithm step 4). Returns the colour (`C × h × w`,
    /// in [0, 1]) and the coverage `α` (`h × w`, in [0, 1]).
    ///
    /// Output pixel `(u, v)` ↦ canvas offset `(dx, dy) = ((u+½)·W'/w − W'/2, (v+½)·H'/h − H'/2)` ↦ patch point
    /// `(w/2 + dx cos θ − dy sin θ, h/2 + dx sin θ + dy cos θ)`, sampled bilinearly with zero padding:
    /// `α = Σ` weights of in-patch neighbours, colour = weighted in-patch sum / α. θ = 0 is the identity with α = 1.
    public static func rotateIntoRectangle(_ patch: Image, degrees: Double) -> (image: Image, alpha: [Float]) {
        let w = patch.width, h = patch.height, n = patch.planeSize
        let theta = degrees * Double.pi / 180
        let ct = Foundation.cos(theta), st = Foundation.sin(theta)
        let cw = Double(w) * abs(ct) + Double(h) * abs(st), ch = Double(w) * abs(st) + Double(h) * abs(ct)
        var out = Image(width: w, height: h, channels: patch.channels, value: 0)
        var alpha = [Float](repeating: 0, count: n)
        for v in 0..<h {
            for u in 0..<w {
                let dx = (Double(u) + 0.5) * cw / Double(w) - cw / 2
                let dy = (Double(v) + 0.5) * ch / Double(h) - ch / 2
                // Continuous patch coordinates with pixel centres at integers.
                let sx = Double(w) / 2 + dx * ct - dy * st - 0.5
                let sy = Double(h) / 2 + dx * st + dy * ct - 0.5
                let fx = sx.rounded(.down), fy = sy.rounded(.down)
                let tx = Float(sx - fx), ty = Float(sy - fy)
                let x0 = Int(fx), y0 = Int(fy)
                // Weights of the four neighbours, zero for those outside the patch.
                let inX0 = x0 >= 0 && x0 < w, inX1 = x0 + 1 >= 0 && x0 + 1 < w
                let inY0 = y0 >= 0 && y0 < h, inY1 = y0 + 1 >= 0 && y0 + 1 < h
                let w00: Float = inY0 && inX0 ? (1 - tx) * (1 - ty) : 0, w01: Float = inY0 && inX1 ? tx * (1 - ty) : 0
                let w10: Float = inY1 && inX0 ? (1 - tx) * ty : 0, w11: Float = inY1 && inX1 ? tx * ty : 0
                let a = w00 + w01 + w10 + w11
                let i = v * w + u
                alpha[i] = min(1, a)
                guard a > 0 else { continue }
                let i00 = w00 > 0 ? y0 * w + x0 : 0, i01 = w01 > 0 ? y0 * w + x0 + 1 : 0
                let i10 = w10 > 0 ? (y0 + 1) * w + x0 : 0, i11 = w11 > 0 ? (y0 + 1) * w + x0 + 1 : 0
                for c in 0..<patch.channels {
                    let b = c * n
                    let s = w00 * patch.pixels[b + i00] + w01 * patch.pixels[b + i01]
                        + w10 * patch.pixels[b + i10] + w11 * patch.pixels[b + i11]
                    out.pixels[b + i] = min(1, max(0, s / a))
                }
            }
        }
        return (out, alpha)
    }
}
