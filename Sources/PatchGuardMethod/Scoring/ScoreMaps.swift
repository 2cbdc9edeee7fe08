import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

// Anomaly scores from patch logits (DESIGN.md §2, "Scores").
//
// Shapes: `B` images, `GH × GW` patch grid (16 × 16 for ViT-S/14 at 224), `H × W` image size (224 × 224).
//
//   patch logits (B, GH·GW) ──top-k mean──▶ image scores (B)
//                           ──bilinear (align_corners=False)──▶ (B, H, W) ──Gaussian σ, radius r──▶ pixel maps (B, H, W)
//
// Raw maps are kept for metrics: nothing here normalises to [0, 1] (display normalisation belongs to the heat-map
// writer and uses statistics over the whole test set).

/// Settings of ``AnomalyScorer``; defaults are the paper's (top-3 mean, σ = 6, radius 7 → 15 taps).
public struct ScoringConfig: Sendable, Codable, Equatable {
    /// Number of highest patch logits averaged into the image score.
    public var topK: Int
    /// Standard deviation of the Gaussian smoothing, in output pixels. `0` turns smoothing off.
    public var sigma: Double
    /// Kernel radius: the kernel has `2·radius + 1` taps.
    public var radius: Int

    public init(topK: Int = 3, sigma: Double = 6, radius: Int = 7) {
        self.topK = topK; self.sigma = sigma; self.radius = radius
    }

    enum CodingKeys: String, CodingKey {
        case topK = "top_k", sigma, radius
    }

    /// Throws ``PatchGuardError/invalidArgument(_:)`` on a non-positive `topK`, a negative or non-finite `sigma`,
    /// or a negative `radius`.
    public func validate() throws {
        guard topK >= 1 else { throw PatchGuardError.invalidArgument("scoring top_k must be ≥ 1, got \(topK)") }
        guard sigma.isFinite, sigma >= 0 else {
            throw PatchGuardError.invalidArgument("scoring sigma must be finite and ≥ 0, got \(sigma)")
        }
        guard radius >= 0 else { throw PatchGuardError.invalidArgument("scoring radius must be ≥ 0, got \(radius)") }
    }
}

/// A single-channel, row-major `height × width` map of raw anomaly scores (any real range).
public struct ScoreMap: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// `height × width` values, row after row.
    public var values: [Float]

    public init(width: Int, height: Int, values: [Float]) throws {
        guard width > 0, height > 0, values.count == width * height else {
            throw PatchGuardError.invalidArgument("score map: \(values.count) values for \(height)×\(width)")
        }
        self.width = width; self.height = height; self.values = values
    }

    @inlinable
    public subscript(y: Int, x: Int) -> Float { values[y * width + x] }
}

// MARK: - Building blocks (free-standing, each with a closed-form definition and a test)

/// Indices of the `k` largest values, largest first; ties keep the lower index first (deterministic).
///
/// The gradient of ``topKMean(_:k:)`` is `1/k` at these indices and 0 elsewhere (what an attack on the image score
/// back-propagates). Throws when `k` is not in `1...values.count`.
public func topKIndices<T: Comparable>(_ values: UnsafeBufferPointer<T>, k: Int) throws -> [Int] {
    guard k >= 1, k <= values.count else {
        throw PatchGuardError.invalidArgument("top-k: k = \(k) with \(values.count) values")
    }
    // Insertion into a sorted window of size k: O(n·k), and k is tiny (3) next to n (256).
    var best = [Int]()
    best.reserveCapacity(k + 1)
    for i in 0..<values.count {
        let v = values[i]
        if best.count == k, !(v > values[best[k - 1]]) { continue }
        var pos = best.count
        while pos > 0, v > values[best[pos - 1]] { pos -= 1 }
        best.insert(i, at: pos)
        if best.count > k { best.removeLast() }
    }
    return best
}

/// Mean of the `k` largest values: `s = (1/k) Σ_{i ∈ top-k} vᵢ` (accumulated in Double).
public func topKMean(_ values: UnsafeBufferPointer<Float>, k: Int) throws -> Float {
    let idx = try topKIndices(values, k: k)
    var s = 0.0
    for i in idx { s += Double(values[i]) }
    return Float(s / Double(k))
}

/// The gradient of ``topKMean(_:k:)`` w.r.t. `values` at `values`: `1/k` at the ``topKIndices(_:k:)`` (the
/// selection at this point; it changes as the values move), 0 elsewhere. What the exact image-score attack
/// back-propagates (``PatchLogitDetector``).
public func topKMeanGradient(_ values: [Float], k: Int) throws -> [Float] {
    var g = [Float](repeating: 0, count: values.count)
    for i in try values.withUnsafeBufferPointer({ try topKIndices($0, k: k) }) { g[i] = 1 / Float(k) }
    return g
}

/// Array convenience for ``topKMean(_:k:)-(UnsafeBufferPointer<Float>,_)``.
public func topKMean(_ values: [Float], k: Int) throws -> Float {
    try values.withUnsafeBufferPointer { try topKMean($0, k: k) }
}

// MARK: - The scorer

/// Turns patch logits into image scores and pixel maps, with interpolation taps and the kernel precomputed once.
///
/// - image score: mean of the `topK` largest patch logits;
/// - pixel map: logits on the `gridHeight × gridWidth` grid (row-major, patch `(i, j)` at `i·gridWidth + j`) →
///   bilinear upsampling to `imageHeight × imageWidth` (PyTorch `align_corners=False`) → separable Gaussian
///   (σ, `2·radius + 1` taps, normalised, `reflect` borders).
public struct AnomalyScorer: Sendable {
    public let config: ScoringConfig
    public let gridHeight: Int, gridWidth: Int
    public let imageHeight: Int, imageWidth: Int
    /// The normalised 1-D Gaussian used on both axes.
    public let kernel: [Float]
    let ty: LinearTaps, tx: LinearTaps

    public init(config: ScoringConfig = ScoringConfig(), gridHeight: Int, gridWidth: Int,
                imageHeight: Int, imageWidth: Int) throws {
        try config.validate()
        guard gridHeight > 0, gridWidth > 0, imageHeight > 0, imageWidth > 0 else {
            throw PatchGuardError.invalidArgument(
                "scorer: grid \(gridHeight)×\(gridWidth), image \(imageHeight)×\(imageWidth)")
        }
        guard config.topK <= gridHeight * gridWidth else {
            throw PatchGuardError.invalidArgument(
                "scoring top_k = \(config.topK) exceeds the \(gridHeight * gridWidth) patches")
        }
        self.config = config
        self.gridHeight = gridHeight; self.gridWidth = gridWidth
        self.imageHeight = imageHeight; self.imageWidth = imageWidth
        kernel = try gaussianKernel1D(sigma: config.sigma, radius: config.radius)
        ty = LinearTaps(inSize: gridHeight, outSize: imageHeight)
        tx = LinearTaps(inSize: gridWidth, outSize: imageWidth)
    }

    public var patchCount: Int { gridHeight * gridWidth }

    /// Mean of the `topK` largest of one image's `gridHeight·gridWidth` logits.
    public func imageScore(patchLogits: [Float]) throws -> Float {
        try checkPatchCount(patchLogits.count, images: 1)
        return try topKMean(patchLogits, k: config.topK)
    }

    /// The smoothed `imageHeight × imageWidth` map of one image.
    public func pixelMap(patchLogits: [Float]) throws -> ScoreMap {
        try checkPatchCount(patchLogits.count, images: 1)
        var values = [Float](repeating: 0, count: imageHeight * imageWidth)
        var scratch = values
        patchLogits.withUnsafeBufferPointer { src in
            values.withUnsafeMutableBufferPointer { dst in
                scratch.withUnsafeMutableBufferPointer { tmp in
                    fillMap(dst.baseAddress!, scratch: tmp.baseAddress!, logits: src.baseAddress!)
                }
            }
        }
        return try ScoreMap(width: imageWidth, height: imageHeight, values: values)
    }

    /// Scores a batch: `logits` is (B, gridHeight·gridWidth) row-major. Maps are built in parallel over images.
    public func score(batchLogits logits: [Float], count: Int) throws -> (imageScores: [Float], maps: [ScoreMap]) {
        try checkPatchCount(logits.count, images: count)
        let n = patchCount, plane = imageHeight * imageWidth
        var imageScores = [Float](repeating: 0, count: count)
        var flat = [Float](repeating: 0, count: count * plane)
        var scratch = [Float](repeating: 0, count: Parallel.threads * plane)
        let k = config.topK
        logits.withUnsafeBufferPointer { src in
            flat.withUnsafeMutableBufferPointer { dst in
                imageScores.withUnsafeMutableBufferPointer { scores in
                    scratch.withUnsafeMutableBufferPointer { tmp in
                        let s = src.baseAddress!, d = dst.baseAddress!, t = tmp.baseAddress!
                        let sc = scores.baseAddress!
                        // Contiguous chunks of images, one per worker, each with its own scratch plane.
                        let workers = min(Parallel.threads, max(1, count))
                        let chunk = (count + workers - 1) / workers
                        parallelFor(workers) { w in
                            for b in (w * chunk)..<min(count, (w + 1) * chunk) {
                                let patches = UnsafeBufferPointer(start: s + b * n, count: n)
                                // k ≤ patchCount was checked in init, so top-k cannot throw here.
                                sc[b] = (try? topKMean(patches, k: k)) ?? .nan
                                fillMap(d + b * plane, scratch: t + w * plane, logits: s + b * n)
                            }
                        }
                    }
                }
            }
        }
        var maps = [ScoreMap]()
        maps.reserveCapacity(count)
        for b in 0..<count {
            maps.append(try ScoreMap(width: imageWidth, height: imageHeight,
                                     values: Array(flat[(b * plane)..<((b + 1) * plane)])))
        }
        return (imageScores, maps)
    }

    func fillMap(_ out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                 logits: UnsafePointer<Float>) {
        bilinearResample(out, logits, inWidth: gridWidth, outHeight: imageHeight, outWidth: imageWidth, ty: ty, tx: tx)
        gaussianBlur(out, scratch: scratch, height: imageHeight, width: imageWidth, kernel: kernel)
    }

    func checkPatchCount(_ got: Int, images: Int) throws {
        guard images >= 0, got == images * patchCount else {
            throw PatchGuardError.invalidArgument(
                "scorer: \(got) logits for \(images) image(s) of \(gridHeight)×\(gridWidth) patches")
        }
    }
}
