import Foundation
import PatchGuardCore
import PatchGuardImage

/// A sample decoded and resized to the model's input size `S`.
public struct LoadedSample: Sendable, Equatable {
    /// RGB in [0, 1], `3 × S × S` (a gray file replicated into R, G, B).
    public var image: Image
    /// Ground truth, `1 × S × S`, values exactly 0 or 1 (all zeros for good images).
    public var mask: Image
    /// 0 good, 1 defective.
    public var label: Int
    /// Precomputed foreground mask, `1 × S × S` binary, when the dataset has one (`train/foreground_mask`).
    public var foreground: Image?
    /// `"good"` or the defect type.
    public var defectType: String
    /// The file the image came from (for reports and error messages).
    public var imagePath: String

    public init(image: Image, mask: Image, label: Int, foreground: Image? = nil, defectType: String,
                imagePath: String) {
        self.image = image; self.mask = mask; self.label = label; self.foreground = foreground
        self.defectType = defectType; self.imagePath = imagePath
    }

    /// Bytes of pixel storage (what the cache counts).
    public var byteCount: Int {
        (image.pixels.count + mask.pixels.count + (foreground?.pixels.count ?? 0)) * MemoryLayout<Float>.stride
    }
}

/// Decodes and resizes samples to `imageSize × imageSize`, in parallel, with an in-memory cache.
///
/// - Images: ``ImageIO/read(path:)`` (always RGB), resized with ``ResizeFilter/auto`` (area when shrinking,
///   bilinear when enlarging, per axis; a non-square image is stretched to the square, as the reference code's
///   `transforms.Resize((S, S))` does).
/// - Masks (ground truth and foreground): ``ImageIO/readMask(path:)``, resized with ``ResizeFilter/nearest``, then
///   binarised: **any non-zero pixel is foreground** (as the paper's loader does), so 0/255 masks (MVTec) and
///   0/1 masks (saved by other tools) read the same. Ground truth follows `maskResize` (`data.mask_resize`):
///   ``MaskResizeRule/lanczosAny`` resizes it with Pillow's Lanczos instead, as the official code does (larger
///   defects; README "Fidelity to the official code"); foreground masks are always nearest (so are the official's). A good sample gets an all-zero mask. A mask whose size
///   differs from its image's is still resized, with a warning naming both files and sizes (once per file).
///
/// Decoding runs `parallelFor` over the samples. Errors are collected per sample and the one with the lowest index
/// is thrown (so the error does not depend on the thread count); it names the file.
///
/// Cache: a decoded, resized sample is kept (keyed by image path) while the total stays within `cacheBudgetBytes`;
/// once the budget is full, later samples are decoded on every call and not cached (no eviction, so which samples
/// are cached does not depend on access order after the first full pass). Thread-safe.
public final class SampleLoader: @unchecked Sendable {
    /// Output side `S`.
    public let imageSize: Int
    /// Cache budget in bytes (default 2 GiB; 0 disables the cache).
    public let cacheBudgetBytes: Int
    /// How ground-truth masks are resized and binarised (`data.mask_resize`).
    public let maskResize: MaskResizeRule

    /// Where warnings go (a mask of another size than its image); default: standard error.
    private let warn: @Sendable (String) -> Void
    private var warned: Set<String> = []
    private let lock = NSLock()
    private var cache: [String: LoadedSample] = [:]
    private var cacheBytes = 0

    public init(imageSize: Int, cacheBudgetBytes: Int = 2 << 30, maskResize: MaskResizeRule = .nearest,
                warn: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data("\($0)\n".utf8)) }) throws {
        guard imageSize > 0 else {
            throw PatchGuardError.invalidArgument("image size must be positive, got \(imageSize)")
        }
        guard cacheBudgetBytes >= 0 else {
            throw PatchGuardError.invalidArgument("cache budget must be ≥ 0 bytes, got \(cacheBudgetBytes)")
        }
        self.imageSize = imageSize
        self.cacheBudgetBytes = cacheBudgetBytes
        self.maskResize = maskResize
        self.warn = warn
    }

    /// Bytes of samples held in the cache.
    public var cachedBytes: Int { lock.lock(); defer { lock.unlock() }; return cacheBytes }
    /// Number of samples held in the cache.
    public var cachedCount: Int { lock.lock(); defer { lock.unlock() }; return cache.count }

    public func clearCache() {
        lock.lock(); cache.removeAll(); cacheBytes = 0; lock.unlock()
    }

    /// Loads every sample (in parallel), in the order given.
    public func load(_ samples: [Sample]) throws -> [LoadedSample] {
        var results = [Result<LoadedSample, Error>?](repeating: nil, count: samples.count)
        results.withUnsafeMutableBufferPointer { out in
            parallelFor(samples.count) { i in
                out[i] = Result { try self.load(samples[i]) }
            }
        }
        var loaded: [LoadedSample] = []
        loaded.reserveCapacity(samples.count)
        for r in results {
            // Every slot was written by parallelFor; `nil` cannot happen.
            guard let r else { throw PatchGuardError.dataset("internal: a sample was not loaded") }
            loaded.append(try r.get())
        }
        return loaded
    }

    /// Loads one sample (from the cache when it is there).
    public func load(_ sample: Sample) throws -> LoadedSample {
        lock.lock()
        if let hit = cache[sample.imagePath] { lock.unlock(); return hit }
        lock.unlock()

        let s = imageSize
        let original = try ImageIO.read(path: sample.imagePath)
        let image = original.resized(width: s, height: s, filter: .auto)
        func loadMask(_ path: String, _ rule: MaskResizeRule) throws -> Image {
            let m = try Self.readMask(path: path)
            if m.width != original.width || m.height != original.height { warnOnce(path: path, mask: m, image: original,
                                                                                   imagePath: sample.imagePath) }
            return rule.binarize(m, size: s)
        }
        let mask = try sample.maskPath.map { try loadMask($0, maskResize) } ?? Image(width: s, height: s, channels: 1, value: 0)
        let foreground = try sample.foregroundMaskPath.map { try loadMask($0, .nearest) }
        let loaded = LoadedSample(image: image, mask: mask, label: sample.label, foreground: foreground,
                                  defectType: sample.defectType, imagePath: sample.imagePath)

        lock.lock()
        if cache[sample.imagePath] == nil, cacheBytes + loaded.byteCount <= cacheBudgetBytes {
            cache[sample.imagePath] = loaded
            cacheBytes += loaded.byteCount
        }
        lock.unlock()
        return loaded
    }

    /// A mask file as stored (1 channel in [0, 1]).
    static func readMask(path: String) throws -> Image {
        let m = try ImageIO.readMask(path: path)
        if m.channels != 1 {
            throw PatchGuardError.io(path: path, reason: "mask has \(m.channels) channels, expected 1")
        }
        return m
    }

    /// A mask as a binary `1 × size × size` image: nearest resize, then any non-zero pixel → 1, else 0.
    public static func binarize(_ mask: Image, size: Int) -> Image {
        MaskResizeRule.nearest.binarize(mask, size: size)
    }

    /// A mask of another size than its image: resized anyway (the stretch may misplace the defect), said once.
    private func warnOnce(path: String, mask: Image, image: Image, imagePath: String) {
        lock.lock()
        let first = warned.insert(path).inserted
        lock.unlock()
        guard first else { return }
        warn("warning: mask \(path) is \(mask.width)×\(mask.height) but its image \(imagePath) is " +
             "\(image.width)×\(image.height); the mask is resized to the image's size, which may misplace the defect")
    }
}
