import Foundation

/// Pillow's `Image.resize(size, Image.LANCZOS)` on 8-bit single-channel data, bit for bit (Pillow 13's
/// `libImaging/Resample.c`): separable, one pass per axis whose size changes, each pass rounding to 8 bits. The
/// vertical pass goes first when the height shrinks by more than twice as many pixels as the width
/// (`inH ≥ outH && inH − outH > 2·(inW − outW)`), else the horizontal one (Pillow 13's order; older Pillows always
/// ran the horizontal pass first, which changes a few low values).
///
/// Per output pixel `i` of a pass (input size `n`, output size `m`, `scale = n/m`, `fs = max(scale, 1)`,
/// support `3·fs`): `center = (i + ½)·scale`, taps `x ∈ [trunc(center − 3fs + ½), trunc(center + 3fs + ½))`
/// clipped to `[0, n)`, weights `w(x) = L((x − center + ½)/fs)` normalised to sum 1, with the Lanczos-3 kernel
/// `L(t) = sinc(t)·sinc(t/3)` on `[−3, 3)`; the weights are fixed point (22 fraction bits, rounded half away from
/// zero) and the output is `clamp(⌊(2²¹ + Σ w·p) / 2²²⌋, 0, 255)`. Shrinking widens the kernel (antialiasing);
/// the negative lobes ring, so a binary 0/255 mask comes out with small non-zero values around its edges.
///
/// This is how the official PatchGuard code resizes ground-truth masks (`transforms.Resize(…, Image.LANCZOS)` on
/// the PIL mask); with "any non-zero pixel is defective" that ringing enlarges the defects (``MaskResizeRule``).
public enum LanczosResize {
    static let precisionBits = 22

    /// The Lanczos-3 kernel `sinc(t)·sinc(t/3)` for `−3 ≤ t < 3`, else 0.
    public static func kernel(_ t: Double) -> Double {
        func sinc(_ x: Double) -> Double { x == 0 ? 1 : sin(x * .pi) / (x * .pi) }
        return t >= -3 && t < 3 ? sinc(t) * sinc(t / 3) : 0
    }

    /// One pass's taps: per output pixel its first input index and fixed-point weights.
    static func coefficients(inSize n: Int, outSize m: Int) -> [(first: Int, weights: [Int])] {
        let scale = Double(n) / Double(m)
        let fs = max(scale, 1), support = 3 * fs
        return (0..<m).map { i in
            let center = (Double(i) + 0.5) * scale
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), n)
            var w = (lo..<max(lo, hi)).map { kernel((Double($0) - center + 0.5) / fs) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            let one = Double(1 << precisionBits)
            return (lo, w.map { $0 < 0 ? Int(-0.5 + $0 * one) : Int(0.5 + $0 * one) })
        }
    }

    /// One pass along rows (`horizontal`) or columns of a `width × height` 8-bit image.
    static func pass(_ src: [UInt8], width: Int, height: Int, horizontal: Bool, outSize: Int) -> [UInt8] {
        let (outW, outH) = horizontal ? (outSize, height) : (width, outSize)
        let taps = coefficients(inSize: horizontal ? width : height, outSize: outSize)
        var out = [UInt8](repeating: 0, count: outW * outH)
        let half = 1 << (precisionBits - 1)
        for y in 0..<outH {
            for x in 0..<outW {
                let (first, w) = taps[horizontal ? x : y]
                var s = half
                for (k, wk) in w.enumerated() {
                    s += wk * Int(horizontal ? src[y * width + first + k] : src[(first + k) * width + x])
                }
                out[y * outW + x] = UInt8(clamping: min(255, max(0, s >> precisionBits)))
            }
        }
        return out
    }

    /// `width × height` row-major bytes resized to `outWidth × outHeight` (a pass whose size does not change is
    /// skipped, as Pillow skips it).
    public static func resize(_ bytes: [UInt8], width: Int, height: Int, outWidth: Int, outHeight: Int) -> [UInt8] {
        precondition(bytes.count == width * height && width > 0 && height > 0 && outWidth > 0 && outHeight > 0)
        var b = bytes, w = width, h = height
        func horizontal() {
            if outWidth != w { b = pass(b, width: w, height: h, horizontal: true, outSize: outWidth); w = outWidth }
        }
        func vertical() {
            if outHeight != h { b = pass(b, width: w, height: h, horizontal: false, outSize: outHeight); h = outHeight }
        }
        if height >= outHeight && height - outHeight > 2 * (width - outWidth) { vertical(); horizontal() } else {
            horizontal(); vertical()
        }
        return b
    }
}

/// How a ground-truth mask is brought to the model's input size and binarised.
public enum MaskResizeRule: String, Sendable, CaseIterable {
    /// Ours (default): nearest-neighbour resize, then any non-zero pixel is defective. A defect keeps its area
    /// (up to the grid): no pixel is added around it.
    case nearest
    /// The official code's: Pillow's Lanczos resize of the 8-bit mask (``LanczosResize``), then any non-zero
    /// pixel is defective. Lanczos ringing adds a rim of pixels with values 1…few around each defect (and, when
    /// shrinking, small ghosts a few pixels away), all of which count: defects come out larger than ``nearest``'s.
    case lanczosAny = "lanczos_any"

    /// `mask` (1 channel, values in [0, 1]) as a binary `1 × size × size` image (values 0 and 1) by this rule.
    public func binarize(_ mask: Image, size: Int) -> Image {
        switch self {
        case .nearest:
            let m = mask.resized(width: size, height: size, filter: .nearest)
            return Image(width: size, height: size, channels: 1, pixels: m.pixels.map { $0 > 0 ? 1 : 0 })
        case .lanczosAny:
            // The stored 8-bit values (a 16-bit mask is rounded to 8 bits, as `convert('RGB')` does).
            let bytes = mask.pixels.map { UInt8(clamping: Int(($0 * 255).rounded())) }
            let r = LanczosResize.resize(bytes, width: mask.width, height: mask.height, outWidth: size, outHeight: size)
            return Image(width: size, height: size, channels: 1, pixels: r.map { $0 > 0 ? 1 : 0 })
        }
    }
}
