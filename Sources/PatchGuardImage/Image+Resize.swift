import PatchGuardCore

/// How ``Image/resized(width:height:filter:)`` resamples.
///
/// Every filter is separable: one horizontal pass, then one vertical pass, each an output-index → weighted sum of
/// input pixels along one axis. The filter may differ per axis (``auto`` enlarges one axis and shrinks the other).
public enum ResizeFilter: String, Sendable, CaseIterable, Codable {
    /// Linear interpolation with PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` semantics:
    /// output index `i` samples the input at `s = max(0, (i + ½)·in/out − ½)`, between `⌊s⌋` and
    /// `min(⌊s⌋ + 1, in − 1)` with weights `1 − (s − ⌊s⌋)` and `s − ⌊s⌋`. Not antialiased: when shrinking it
    /// skips pixels exactly like PyTorch's `antialias=False`.
    case bilinear
    /// Box filter with fractional coverage (OpenCV's `INTER_AREA` when shrinking): output index `i` is the
    /// average of the input over `[i·in/out, (i+1)·in/out)`, each input pixel `[j, j+1)` weighted by its overlap
    /// with that interval. An integer factor `k` averages `k × k` blocks exactly. Antialiased; meant for shrinking.
    case area
    /// Nearest neighbour at pixel centres (PIL's `NEAREST`, PyTorch's `nearest-exact`): output index `i` copies
    /// input `min(⌊(i + ½)·in/out⌋, in − 1)`. Keeps masks binary.
    case nearest
    /// ``bilinear`` along an axis that grows, ``area`` along an axis that shrinks (per axis).
    case auto
}

extension Image {
    /// This image resampled to `width × height` (every channel alike).
    ///
    /// - Parameters:
    ///   - width: output width, > 0.
    ///   - height: output height, > 0.
    ///   - filter: see ``ResizeFilter``; ``ResizeFilter/auto`` by default. Use ``ResizeFilter/nearest`` for masks
    ///     (or resize with ``ResizeFilter/area`` and ``binarized(threshold:)``).
    /// - Returns: an image of `channels × height × width`. An axis whose size does not change is copied as is.
    ///   Linear filters' weights sum to 1, so a constant image stays constant (to float rounding) and values stay
    ///   in the input's range.
    public func resized(width outWidth: Int, height outHeight: Int, filter: ResizeFilter = .auto) -> Image {
        precondition(outWidth > 0 && outHeight > 0, "resize to \(outWidth)×\(outHeight)")
        if outWidth == width && outHeight == height { return self }
        let horizontal = ResampleTable(inSize: width, outSize: outWidth, filter: filter)
        let vertical = ResampleTable(inSize: height, outSize: outHeight, filter: filter)

        // Horizontal pass: (C, H, W) → (C, H, W').
        var stage = pixels
        if outWidth != width {
            stage = [Float](unsafeUninitializedCapacity: channels * height * outWidth) { out, count in
                pixels.withUnsafeBufferPointer { src in
                    Self.resampleRows(out.baseAddress!, src.baseAddress!, rows: channels * height,
                                      inWidth: width, table: horizontal)
                }
                count = channels * height * outWidth
            }
        }
        // Vertical pass: (C, H, W') → (C, H', W').
        if outHeight == height {
            return Image(width: outWidth, height: outHeight, channels: channels, pixels: stage)
        }
        let result = [Float](unsafeUninitializedCapacity: channels * outHeight * outWidth) { out, count in
            stage.withUnsafeBufferPointer { src in
                Self.resampleColumns(out.baseAddress!, src.baseAddress!, channels: channels, inHeight: height,
                                     width: outWidth, table: vertical)
            }
            count = channels * outHeight * outWidth
        }
        return Image(width: outWidth, height: outHeight, channels: channels, pixels: result)
    }

    /// A mask with every value `≥ threshold` set to 1 and every other value (NaN included) set to 0.
    public func binarized(threshold: Float = 0.5) -> Image {
        Image(width: width, height: height, channels: channels, pixels: pixels.map { $0 >= threshold ? 1 : 0 })
    }

    /// Three channels: a gray image replicated into R, G and B; an RGB image unchanged.
    /// - Precondition: `channels` is 1 or 3.
    public func toRGB() -> Image {
        if channels == 3 { return self }
        precondition(channels == 1, "toRGB of a \(channels)-channel image")
        return Image(width: width, height: height, channels: 3, pixels: pixels + pixels + pixels)
    }

    /// One channel: an RGB image's luma `Y = 0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601, as PIL's
    /// `convert("L")`, without its rounding to 8 bits); a gray image unchanged.
    /// (``ImageIO/readMask(path:)`` uses the plain channel mean instead.)
    /// - Precondition: `channels` is 1 or 3.
    public func toGray() -> Image {
        if channels == 1 { return self }
        precondition(channels == 3, "toGray of a \(channels)-channel image")
        return combinedChannels(0.299, 0.587, 0.114)
    }

    /// One channel `wR·R + wG·G + wB·B` of a 3-channel image.
    func combinedChannels(_ wR: Float, _ wG: Float, _ wB: Float) -> Image {
        let n = planeSize
        let out = [Float](unsafeUninitializedCapacity: n) { dst, count in
            pixels.withUnsafeBufferPointer { p in
                for i in 0..<n { dst[i] = wR * p[i] + wG * p[n + i] + wB * p[2 * n + i] }
            }
            count = n
        }
        return Image(width: width, height: height, channels: 1, pixels: out)
    }

    // MARK: Kernels

    /// `out[r, x] = Σ_k w[x, k] · in[r, start[x] + k]` for each of `rows` rows.
    static func resampleRows(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, rows: Int,
                             inWidth: Int, table: ResampleTable) {
        let outWidth = table.outSize, taps = table.taps
        table.starts.withUnsafeBufferPointer { starts in
            table.weights.withUnsafeBufferPointer { weights in
                let starts = starts.baseAddress!, weights = weights.baseAddress!
                parallelFor(rows, minChunk: max(1, 16384 / max(1, outWidth * taps))) { r in
                    let src = input + r * inWidth, dst = out + r * outWidth
                    for x in 0..<outWidth {
                        let s = src + starts[x], w = weights + x * taps
                        var acc: Float = 0
                        for k in 0..<taps { acc += w[k] * s[k] }
                        dst[x] = acc
                    }
                }
            }
        }
    }

    /// `out[c, y, :] = Σ_k w[y, k] · in[c, start[y] + k, :]`: whole rows at a time, so the inner loop is a
    /// contiguous axpy the compiler vectorises.
    static func resampleColumns(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, channels: Int,
                                inHeight: Int, width: Int, table: ResampleTable) {
        let outHeight = table.outSize, taps = table.taps
        table.starts.withUnsafeBufferPointer { starts in
            table.weights.withUnsafeBufferPointer { weights in
                let starts = starts.baseAddress!, weights = weights.baseAddress!
                parallelFor(channels * outHeight, minChunk: max(1, 16384 / max(1, width * taps))) { row in
                    let c = row / outHeight, y = row % outHeight
                    let src = input + (c * inHeight + starts[y]) * width, dst = out + row * width
                    let w = weights + y * taps
                    let w0 = w[0]
                    for x in 0..<width { dst[x] = w0 * src[x] }
                    for k in 1..<max(1, taps) {
                        let wk = w[k], s = src + k * width
                        if wk == 0 { continue }
                        for x in 0..<width { dst[x] += wk * s[x] }
                    }
                }
            }
        }
    }
}

/// 1-D resampling weights for one axis: output index `i` reads input `starts[i] ..< starts[i] + taps` with
/// weights `weights[i·taps ..< (i+1)·taps]` (zero-padded, so every output uses the same tap count and every
/// read stays inside the input).
struct ResampleTable {
    let inSize: Int
    let outSize: Int
    let taps: Int
    let starts: [Int]
    let weights: [Float]

    init(inSize: Int, outSize: Int, filter: ResizeFilter) {
        self.inSize = inSize
        self.outSize = outSize
        let scale = Double(inSize) / Double(outSize)
        var kind = filter
        if kind == .auto { kind = outSize > inSize ? .bilinear : .area }

        let linear = kind == .bilinear ? LinearTaps(inSize: inSize, outSize: outSize) : nil
        // Sparse (start, weights) per output, then padded to a common tap count.
        var spans: [(start: Int, w: [Double])] = []
        spans.reserveCapacity(outSize)
        for i in 0..<outSize {
            switch kind {
            case .nearest:
                spans.append((min(Int(((Double(i) + 0.5) * scale).rounded(.down)), inSize - 1), [1]))
            case .bilinear, .auto:
                // The taps of ``LinearTaps`` (the one implementation of PyTorch's bilinear source index); a tap
                // that lands on one pixel (zero fraction, or clamped at the last pixel) is the single weight 1.
                let x0 = Int(linear!.i0[i]), x1 = Int(linear!.i1[i])
                let w0 = linear!.w0[i], w1 = linear!.w1[i]
                if x1 == x0 || w1 <= 0 { spans.append((x0, [1])) } else { spans.append((x0, [Double(w0), Double(w1)])) }
            case .area:
                let lo = Double(i) * scale, hi = Double(i + 1) * scale
                let first = min(Int(lo.rounded(.down)), inSize - 1)
                let last = max(first, min(Int(hi.rounded(.up)) - 1, inSize - 1))
                var w: [Double] = []
                for j in first...last {
                    w.append(max(0, min(Double(j + 1), hi) - max(Double(j), lo)))
                }
                // Trim zero-overlap ends (float noise at exact boundaries) and normalise to sum 1.
                var start = first
                while w.count > 1, w[0] <= 1e-12 { w.removeFirst(); start += 1 }
                while w.count > 1, w[w.count - 1] <= 1e-12 { w.removeLast() }
                let total = w.reduce(0, +)
                spans.append((start, total > 0 ? w.map { $0 / total } : [1]))
            }
        }
        let taps = min(inSize, spans.map(\.w.count).max() ?? 1)
        var starts = [Int](repeating: 0, count: outSize)
        var weights = [Float](repeating: 0, count: outSize * taps)
        for (i, span) in spans.enumerated() {
            // Shift the window left where it would run past the end; the weights move right by as much.
            let start = min(span.start, inSize - taps)
            let offset = span.start - start
            starts[i] = start
            for (k, w) in span.w.enumerated() { weights[i * taps + offset + k] = Float(w) }
        }
        self.taps = taps
        self.starts = starts
        self.weights = weights
    }
}
