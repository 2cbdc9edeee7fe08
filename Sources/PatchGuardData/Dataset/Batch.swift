import PatchGuardCore
import PatchGuardImage

/// Samples packed into contiguous buffers, the layout the model consumes.
///
/// Shapes (`B` batch, `S` image side): `images` (B, 3, S, S), `masks` (B, 1, S, S), `labels` (B),
/// `foregrounds` (B, 1, S, S) — a sample without a foreground mask gets all ones (the whole image is foreground).
public struct Batch: Sendable, Equatable {
    public var count: Int
    public var imageSize: Int
    /// (B, 3, S, S)
    public var images: [Float]
    /// (B, 1, S, S), values 0/1
    public var masks: [Float]
    /// (B, 1, S, S), values 0/1
    public var foregrounds: [Float]
    /// (B)
    public var labels: [Int]

    /// Packs `samples[indices[k]]` as batch item `k`.
    ///
    /// - Throws: ``PatchGuardError/invalidArgument(_:)`` when an index is out of range or a sample is not
    ///   `3 × S × S` / `1 × S × S` for one common `S`.
    public static func pack(_ samples: [LoadedSample], indices: [Int]) throws -> Batch {
        guard let first = indices.first else {
            return Batch(count: 0, imageSize: 0, images: [], masks: [], foregrounds: [], labels: [])
        }
        guard samples.indices.contains(first) else {
            throw PatchGuardError.invalidArgument("batch index \(first) outside 0..<\(samples.count)")
        }
        let s = samples[first].image.width
        let b = indices.count
        var images = [Float](repeating: 0, count: b * 3 * s * s)
        var masks = [Float](repeating: 0, count: b * s * s)
        var foregrounds = [Float](repeating: 0, count: b * s * s)
        try images.withUnsafeMutableBufferPointer { img in
            try masks.withUnsafeMutableBufferPointer { msk in
                try foregrounds.withUnsafeMutableBufferPointer { fg in
                    try pack(samples, indices: indices, imageSize: s, images: img, masks: msk, foregrounds: fg)
                }
            }
        }
        return Batch(count: b, imageSize: s, images: images, masks: masks, foregrounds: foregrounds,
                     labels: indices.map { samples[$0].label })
    }

    /// Packs `samples[indices[k]]` into caller-owned buffers (an arena's input slot): `images` needs at least
    /// `B·3·S·S` floats, `masks` and `foregrounds` (each optional) `B·S·S`.
    public static func pack(_ samples: [LoadedSample], indices: [Int], imageSize s: Int,
                            images: UnsafeMutableBufferPointer<Float>,
                            masks: UnsafeMutableBufferPointer<Float>?,
                            foregrounds: UnsafeMutableBufferPointer<Float>? = nil) throws {
        let b = indices.count, plane = s * s
        guard images.count >= b * 3 * plane, (masks?.count ?? .max) >= b * plane,
              (foregrounds?.count ?? .max) >= b * plane else {
            throw PatchGuardError.invalidArgument("batch buffers too small for \(b)×3×\(s)×\(s)")
        }
        for (k, index) in indices.enumerated() {
            guard samples.indices.contains(index) else {
                throw PatchGuardError.invalidArgument("batch index \(index) outside 0..<\(samples.count)")
            }
            let sample = samples[index]
            guard sample.image.channels == 3, sample.image.width == s, sample.image.height == s,
                  sample.mask.channels == 1, sample.mask.width == s, sample.mask.height == s else {
                throw PatchGuardError.invalidArgument(
                    "\(sample.imagePath): image \(sample.image.channels)×\(sample.image.height)×"
                    + "\(sample.image.width), mask \(sample.mask.channels)×\(sample.mask.height)×"
                    + "\(sample.mask.width); the batch needs 3×\(s)×\(s) and 1×\(s)×\(s)")
            }
            sample.image.pixels.withUnsafeBufferPointer { src in
                images.baseAddress!.advanced(by: k * 3 * plane).update(from: src.baseAddress!, count: 3 * plane)
            }
            if let masks {
                sample.mask.pixels.withUnsafeBufferPointer { src in
                    masks.baseAddress!.advanced(by: k * plane).update(from: src.baseAddress!, count: plane)
                }
            }
            if let foregrounds {
                let dst = foregrounds.baseAddress!.advanced(by: k * plane)
                if let fg = sample.foreground {
                    guard fg.channels == 1, fg.width == s, fg.height == s else {
                        throw PatchGuardError.invalidArgument("\(sample.imagePath): foreground mask is "
                                                              + "\(fg.channels)×\(fg.height)×\(fg.width)")
                    }
                    fg.pixels.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: plane) }
                } else {
                    dst.update(repeating: 1, count: plane)
                }
            }
        }
    }
}
