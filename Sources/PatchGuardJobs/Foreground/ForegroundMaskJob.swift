import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// One image's foreground mask with the Grad-CAM map it came from.
public struct ForegroundMaskOutput: Sendable {
    /// 1 × H × W in {0, 1}, never all zero, the size of the input image.
    public var mask: Image
    /// The Grad-CAM map upsampled to H × W and min–max normalised to [0, 1] (row-major).
    public var heatMap: [Float]
    /// The classes whose logits were explained.
    public var targets: [Int]
    /// Set when the mask fell back to the whole image (see ``ForegroundMaskResult/warning``).
    public var warning: String?
}

/// Foreground masks of `images` (RGB, any sizes) by Grad-CAM on `model`.
///
/// Each image is resized to the model's input size (bilinear when enlarging, area when shrinking), Grad-CAM runs in
/// batches of `model.maxBatch`, and each grid map is upsampled bilinearly to the image's own size before
/// ``foregroundMask(map:width:height:options:)``. Deterministic: the same images and model give the same masks.
public func foregroundMasks(images: [Image], model: ViT<Float>, layer: Int = 0, target: GradCAMTarget = .top1,
                            options: ForegroundMaskOptions = ForegroundMaskOptions()) throws -> [ForegroundMaskOutput] {
    let S = model.config.imageSize, G = model.config.gridSize, Np = model.config.numPatches
    var batch = [Float](repeating: 0, count: images.count * 3 * S * S)
    for (i, image) in images.enumerated() {
        guard image.channels == 3 || image.channels == 1, image.width > 0, image.height > 0 else {
            throw PatchGuardError.invalidArgument("foreground mask: image \(i) has \(image.channels) channels")
        }
        let resized = image.toRGB().resized(width: S, height: S)
        batch.replaceSubrange((i * 3 * S * S)..<((i + 1) * 3 * S * S), with: resized.pixels)
    }
    let cam = try batch.withUnsafeBufferPointer { p in
        try gradCAM(model: model, images: p.baseAddress!, count: images.count, layer: layer, target: target)
    }
    var outputs: [ForegroundMaskOutput] = []
    outputs.reserveCapacity(images.count)
    for (i, image) in images.enumerated() {
        let grid = Array(cam.maps[(i * Np)..<((i + 1) * Np)])
        let map = try bilinearUpsample(grid, inHeight: G, inWidth: G, outHeight: image.height, outWidth: image.width)
        let r = try foregroundMask(map: map, width: image.width, height: image.height, options: options)
        outputs.append(ForegroundMaskOutput(mask: r.mask, heatMap: r.normalizedMap, targets: cam.targets[i],
                                            warning: r.warning))
    }
    return outputs
}

/// The mask of one image (see ``foregroundMasks(images:model:layer:target:options:)``).
public func foregroundMask(image: Image, model: ViT<Float>, config: ForegroundConfig) throws -> ForegroundMaskOutput {
    try config.validate()
    let out = try foregroundMasks(images: [image], model: model, layer: config.layer, target: config.gradCAMTarget,
                                  options: config.maskOptions)
    return out[0]
}

/// What ``computeForegroundMasks(category:config:force:outputDir:previewDir:maxBatch:progress:)`` did.
public struct ForegroundMaskSummary: Sendable, Equatable {
    /// Where the masks are (`CATEGORY/train/foreground_mask` unless an output folder was given).
    public var outputDirectory: String
    /// Masks computed and written.
    public var written: Int
    /// Training images whose mask already existed (kept, as `force` was false).
    public var skipped: Int
    /// `"<stem>: <warning>"` for every mask that fell back to the whole image.
    public var warnings: [String]
    /// Mean fraction of foreground pixels over the written masks (0 when none was written).
    public var meanForegroundFraction: Double
    /// Where the previews went, if asked for.
    public var previewDirectory: String?

    /// One line for the end of the command.
    public var description: String {
        var s = "foreground masks: \(written) written, \(skipped) kept → \(outputDirectory)"
        if written > 0 { s += String(format: " (mean foreground %.1f %%)", 100 * meanForegroundFraction) }
        if !warnings.isEmpty { s += "; \(warnings.count) fell back to the whole image" }
        if let previewDirectory { s += "; previews in \(previewDirectory)" }
        return s
    }
}

/// Computes Grad-CAM foreground masks for every training image of `category` and writes them as 8-bit PNGs
/// (white = foreground) named `<stem>.png`, into `outputDir` or `CATEGORY/train/foreground_mask/` (the folder
/// the dataset scanner reads, so training picks them up).
///
/// - Parameters:
///   - force: recompute masks that already exist (otherwise they are kept and counted as skipped).
///   - previewDir: when set, also writes `<stem>.png` = image | Grad-CAM heat map (jet) | mask there, for every
///     image computed.
///   - maxBatch: images per forward/backward (memory: about 100 MB per image for ViT-S at 224).
///   - progress: called with (done, total) after each batch; total counts the images to compute.
/// - Throws: ``PatchGuardError/config(_:)`` without `config.weights` (see
///   ``ForegroundClassifier/missingWeightsMessage``) — never writes all-ones masks instead;
///   ``PatchGuardError/io(path:reason:)`` for unreadable images or unwritable folders.
public func computeForegroundMasks(category: MVTecCategory, config: ForegroundConfig, force: Bool = false,
                                   outputDir: String? = nil, previewDir: String? = nil, maxBatch: Int = 4,
                                   progress: (Int, Int) -> Void = { _, _ in }) throws -> ForegroundMaskSummary {
    try config.validate()
    let outDir = outputDir ?? joinPath(category.directory, "train", "foreground_mask")
    let fm = FileManager.default
    let pending = category.train.filter { force || !fm.fileExists(atPath: joinPath(outDir, "\($0.stem).png")) }
    var summary = ForegroundMaskSummary(outputDirectory: outDir, written: 0, skipped: category.train.count - pending.count,
                                        warnings: [], meanForegroundFraction: 0, previewDirectory: previewDir)
    if pending.isEmpty { return summary }
    // The method: how many images a chunk holds and how a chunk of loaded images becomes masks.
    typealias Masks = [(mask: Image, heatMap: [Float], warning: String?)]
    let chunkSize: Int
    let masks: ([Image]) throws -> Masks
    if config.method == .border {
        let options = config.borderOptions
        chunkSize = 8
        masks = { images in
            var results = [Result<ForegroundMaskResult, Error>?](repeating: nil, count: images.count)
            results.withUnsafeMutableBufferPointer { out in
                parallelFor(images.count) { i in
                    out[i] = Result { try borderContrastMask(image: images[i], options: options) }
                }
            }
            return try results.map { r in let m = try r!.get(); return (m.mask, m.normalizedMap, m.warning) }
        }
    } else {
        let model = try ForegroundClassifier.load(config: config, maxBatch: max(1, maxBatch))
        let target = try config.gradCAMTarget, options = try config.maskOptions
        _ = try GradCAM.resolveLayer(config.layer, depth: model.config.depth)
        if case let .classIndex(c) = target, c >= model.config.numClasses {
            throw PatchGuardError.config("foreground.class_index \(c) is outside the classifier's "
                                         + "\(model.config.numClasses) classes")
        }
        if case let .topK(k) = target, k > model.config.numClasses {
            throw PatchGuardError.config("foreground.top_k \(k) exceeds the classifier's \(model.config.numClasses) classes")
        }
        chunkSize = model.maxBatch
        masks = { images in
            try foregroundMasks(images: images, model: model, layer: config.layer, target: target, options: options)
                .map { ($0.mask, $0.heatMap, $0.warning) }
        }
    }
    for dir in [outDir] + (previewDir.map { [$0] } ?? []) {
        do { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw PatchGuardError.io(path: dir, reason: "cannot create the folder (\(error.localizedDescription))")
        }
    }
    var fractionSum = 0.0
    var start = 0
    progress(0, pending.count)
    while start < pending.count {
        let chunk = Array(pending[start..<min(pending.count, start + chunkSize)])
        var images = [Image?](repeating: nil, count: chunk.count)
        var errors = [Error?](repeating: nil, count: chunk.count)
        images.withUnsafeMutableBufferPointer { img in
            errors.withUnsafeMutableBufferPointer { err in
                parallelFor(chunk.count) { i in
                    do { img[i] = try ImageIO.read(path: chunk[i].imagePath) } catch { err[i] = error }
                }
            }
        }
        if let e = errors.lazy.compactMap({ $0 }).first { throw e }
        let loaded = images.compactMap { $0 }
        for (i, out) in try masks(loaded).enumerated() {
            let stem = chunk[i].stem
            try ImageIO.writePNG(out.mask, path: joinPath(outDir, "\(stem).png"))
            if let previewDir {
                try ImageIO.writePNG(foregroundPreview(image: loaded[i], heatMap: out.heatMap, mask: out.mask),
                                     path: joinPath(previewDir, "\(stem).png"))
            }
            if let w = out.warning { summary.warnings.append("\(stem): \(w)") }
            fractionSum += foregroundFraction(out.mask)
            summary.written += 1
        }
        start += chunk.count
        progress(start, pending.count)
    }
    summary.meanForegroundFraction = fractionSum / Double(max(1, summary.written))
    return summary
}

// MARK: - Pictures

/// A `height × width` map with values in [0, 1] as a jet-coloured RGB image (``JetColormap/image(_:width:height:)``,
/// the heat maps' colours).
public func jetImage(_ map: [Float], width: Int, height: Int) throws -> Image {
    try JetColormap.image(map, width: width, height: height)
}

/// Image | Grad-CAM heat map (jet, from the normalised map) | mask side by side, separated by 4 white columns.
public func foregroundPreview(image: Image, heatMap: [Float], mask: Image) throws -> Image {
    let w = image.width, h = image.height
    guard mask.width == w, mask.height == h, mask.channels == 1, heatMap.count == w * h else {
        throw PatchGuardError.invalidArgument("preview: image \(h)×\(w), heat map \(heatMap.count) values, "
                                              + "mask \(mask.channels)×\(mask.height)×\(mask.width)")
    }
    return ImagePanel.row([image, try JetColormap.image(heatMap, width: w, height: h), mask], gap: 4, background: 1)
}

/// `a/b/c` without doubled slashes.
func joinPath(_ parts: String...) -> String {
    var out = ""
    for p in parts where !p.isEmpty {
        if out.isEmpty { out = p } else { out = (out.hasSuffix("/") ? out : out + "/") + p }
    }
    return out
}
