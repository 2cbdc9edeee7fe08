import PatchGuardCore

/// A binary `height × width` mask (row-major `UInt8` 0/1) with the morphology foreground masks and placement need
/// (square dilation and erosion, hole filling) and O(1) "is this rectangle all foreground" through a summed-area table.
public struct BinaryMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `height × width` values in {0, 1}.
    public var bits: [UInt8]

    public init(width: Int, height: Int, bits: [UInt8]) {
        precondition(bits.count == width * height, "\(bits.count) bits for \(height)×\(width)")
        self.width = width; self.height = height; self.bits = bits
    }

    public init(width: Int, height: Int, value: UInt8) {
        self.init(width: width, height: height, bits: [UInt8](repeating: value, count: width * height))
    }

    /// Pixels of a 1-channel image above `threshold` (default 0.5).
    public init(_ image: Image, threshold: Float = 0.5) throws {
        guard image.channels == 1 else {
            throw PatchGuardError.invalidArgument("a mask has 1 channel, found \(image.channels)")
        }
        self.init(width: image.width, height: image.height, bits: image.pixels.map { $0 > threshold ? 1 : 0 })
    }

    public var count: Int { bits.reduce(0) { $0 + Int($1) } }
    public var isEmpty: Bool { !bits.contains(1) }

    @inlinable public subscript(y: Int, x: Int) -> UInt8 { bits[y * width + x] }

    /// As a 1-channel image with values 0 and 1.
    public var image: Image {
        Image(width: width, height: height, channels: 1, pixels: bits.map { Float($0) })
    }

    /// Square (Chebyshev) dilation by `radius`: `out[y, x] = max over |dy|, |dx| ≤ radius of in[y+dy, x+dx]`
    /// (pixels outside the image count as background) — OpenCV's `dilate` with a `(2r+1)²` box, equal to a 3×3 box
    /// applied `r` times. Separable: a row pass then a column pass, each O(H·W) through running counts.
    public func dilated(radius: Int) -> BinaryMask {
        guard radius > 0 else { return self }
        let w = width, h = height
        var rows = [UInt8](repeating: 0, count: w * h)
        var prefix = [Int](repeating: 0, count: max(w, h) + 1)
        for y in 0..<h {
            for x in 0..<w { prefix[x + 1] = prefix[x] + Int(bits[y * w + x]) }
            for x in 0..<w where prefix[min(w, x + radius + 1)] - prefix[max(0, x - radius)] > 0 {
                rows[y * w + x] = 1
            }
        }
        var out = [UInt8](repeating: 0, count: w * h)
        for x in 0..<w {
            for y in 0..<h { prefix[y + 1] = prefix[y] + Int(rows[y * w + x]) }
            for y in 0..<h where prefix[min(h, y + radius + 1)] - prefix[max(0, y - radius)] > 0 {
                out[y * w + x] = 1
            }
        }
        return BinaryMask(width: w, height: h, bits: out)
    }

    /// Square erosion by `radius` (pixels outside the image count as foreground): the dual of
    /// ``dilated(radius:)``, `out = ¬ dilate(¬ in)`.
    public func eroded(radius: Int) -> BinaryMask {
        guard radius > 0 else { return self }
        let inverse = BinaryMask(width: width, height: height, bits: bits.map { 1 - $0 })
        return BinaryMask(width: width, height: height, bits: inverse.dilated(radius: radius).bits.map { 1 - $0 })
    }

    /// The holes filled: background pixels not 4-connected to the image border become foreground.
    public func fillingHoles() -> BinaryMask {
        let w = width, h = height
        var outside = [Bool](repeating: false, count: w * h)
        var stack: [Int] = []
        func push(_ i: Int) { if bits[i] == 0 && !outside[i] { outside[i] = true; stack.append(i) } }
        for x in 0..<w { push(x); push((h - 1) * w + x) }
        for y in 0..<h { push(y * w); push(y * w + w - 1) }
        while let p = stack.popLast() {
            let y = p / w, x = p - y * w
            if x > 0 { push(p - 1) }
            if x + 1 < w { push(p + 1) }
            if y > 0 { push(p - w) }
            if y + 1 < h { push(p + w) }
        }
        return BinaryMask(width: w, height: h, bits: outside.map { $0 ? 0 : 1 })
    }

    /// Summed-area table, `(height+1) × (width+1)`: `S[y][x] = Σ bits[0..<y, 0..<x]`.
    public func summedArea() -> [Int32] {
        let w1 = width + 1
        var s = [Int32](repeating: 0, count: (height + 1) * w1)
        for y in 0..<height {
            var row: Int32 = 0
            for x in 0..<width {
                row += Int32(bits[y * width + x])
                s[(y + 1) * w1 + x + 1] = s[y * w1 + x + 1] + row
            }
        }
        return s
    }
}

/// An axis-aligned rectangle of pixels `x..<x+width, y..<y+height`.
public struct PixelRect: Sendable, Equatable, Codable, CustomStringConvertible {
    public var x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }
    public var description: String { "\(width)×\(height)@(\(x),\(y))" }
}

/// Token labels of a pixel mask for a ViT with `patchSize × patchSize` patches: a `(H/P) × (W/P)` row-major grid
/// where a token is 1 if ANY of its pixels is in the mask (value > 0.5), else 0 — DESIGN.md §2.
///
/// - Throws: `invalidArgument` if the mask is not 1-channel or its sides are not multiples of `patchSize`.
public func patchLabels(mask: Image, patchSize: Int) throws -> [Float] {
    guard mask.channels == 1 else {
        throw PatchGuardError.invalidArgument("patchLabels: mask has \(mask.channels) channels, expected 1")
    }
    guard patchSize > 0, mask.width % patchSize == 0, mask.height % patchSize == 0 else {
        throw PatchGuardError.invalidArgument(
            "patchLabels: mask \(mask.height)×\(mask.width) is not a multiple of patch size \(patchSize)")
    }
    let gw = mask.width / patchSize, gh = mask.height / patchSize
    var labels = [Float](repeating: 0, count: gw * gh)
    for y in 0..<mask.height {
        let row = y * mask.width, gy = y / patchSize
        for x in 0..<mask.width where mask.pixels[row + x] > 0.5 { labels[gy * gw + x / patchSize] = 1 }
    }
    return labels
}
