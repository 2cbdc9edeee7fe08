import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// Settings of ``HeatmapWriter``.
public struct HeatmapOptions: Sendable {
    /// How the global display bounds are fitted (on the clean maps of the whole test set).
    public var normalization: HeatmapNormalization.Method
    /// Weight of the colour map over the image in the overlay panels: `out = (1 − a)·image + a·jet(t)`.
    public var overlayOpacity: Float
    /// White gap between panels, in pixels.
    public var gap: Int
    /// Add a "predicted mask" panel: clean pixel score ≥ the clean pixel F1-max threshold (when it exists).
    public var predictedMask: Bool
    /// Write `raw_maps.safetensors` with the raw (unnormalised) maps and scores.
    public var rawMaps: Bool
    /// Page title (default: "PatchGuard heat maps: CATEGORY").
    public var title: String?

    public init(normalization: HeatmapNormalization.Method = .minMax, overlayOpacity: Float = 0.5, gap: Int = 4,
                predictedMask: Bool = true, rawMaps: Bool = true, title: String? = nil) {
        self.normalization = normalization; self.overlayOpacity = overlayOpacity; self.gap = gap
        self.predictedMask = predictedMask; self.rawMaps = rawMaps; self.title = title
    }
}

/// What ``HeatmapWriter/write(_:samples:to:)`` produced.
public struct HeatmapSummary: Sendable {
    public var directory: String
    /// `DIR/index.html`.
    public var indexPath: String
    /// One PNG per test image, in test-set order (`DIR/images/NNNN_<defect>_<stem>.png`).
    public var pngPaths: [String]
    /// `DIR/raw_maps.safetensors`, when written.
    public var rawMapsPath: String?
    public var normalization: HeatmapNormalization
    /// The clean pixel F1-max threshold used for the predicted-mask panel, if any.
    public var maskThreshold: Float?
    /// Panel captions, left to right.
    public var columns: [String]
}

/// Writes one PNG per test image, the raw maps and an `index.html` page.
///
/// Each PNG is a row of `S × S` panels separated by `gap` white pixels:
///
///     image | heat map over the image | ground-truth mask | [predicted mask] | [attacked image | its heat map] per attack
///
/// Heat maps use ``JetColormap`` on ``HeatmapNormalization`` bounds fitted once over the clean maps of the whole
/// test set and reused for the attacked maps (see there). The raw maps (`raw_maps.safetensors`, F32) keep the
/// unnormalised values for other tools:
///
///     clean.maps (N, S, S)  clean.scores (N)  attack<i>.maps (N, S, S)  attack<i>.scores (N)
///     labels (N) 0/1        masks (N, S, S) U8 0/1
///     __metadata__: image_paths, defect_types, attacks (JSON arrays), normalization_lower/upper/method
///
/// Needs an ``EvaluationResult`` made with ``EvaluationSettings/keepMaps`` and the same samples, in order.
public struct HeatmapWriter: Sendable {
    public var options: HeatmapOptions

    public init(options: HeatmapOptions = HeatmapOptions()) { self.options = options }

    public static let index = "index.html", imagesFolder = "images", rawMapsFile = "raw_maps.safetensors"

    /// Writes everything into `directory` (created if needed).
    @discardableResult
    public func write(_ result: EvaluationResult, samples: [LoadedSample], to directory: String) throws -> HeatmapSummary {
        let n = samples.count
        guard n == result.images.count, n > 0 else {
            throw PatchGuardError.invalidArgument(
                "heat maps: \(n) samples for \(result.images.count) evaluated images (pass the evaluated samples)")
        }
        var cleanMaps = [ScoreMap]()
        cleanMaps.reserveCapacity(n)
        for (image, sample) in zip(result.images, samples) {
            guard image.imagePath == sample.imagePath else {
                throw PatchGuardError.invalidArgument(
                    "heat maps: sample \(image.index) is \(sample.imagePath), the evaluation had \(image.imagePath)")
            }
            guard let map = image.cleanMap, image.attacked.allSatisfy({ $0.map != nil && $0.image != nil }) else {
                throw PatchGuardError.invalidArgument(
                    "heat maps need the per-image maps: evaluate with EvaluationSettings.keepMaps = true")
            }
            cleanMaps.append(map)
        }
        let normalization = try HeatmapNormalization.fit(cleanMaps, method: options.normalization)
        let threshold: Float? = options.predictedMask
            ? result.clean.pixel.map { Float($0.pixel.f1Max.threshold) }.flatMap { $0.isFinite ? $0 : nil }
            : nil
        var columns = ["image", "heat map", "ground truth"]
        if let threshold {
            columns.append("predicted mask (score ≥ \(String(format: "%.4g", threshold)), clean pixel F1-max)")
        }
        for a in result.attacks { columns += ["\(a.name): attacked image", "\(a.name): heat map"] }

        let imagesDir = (directory as NSString).appendingPathComponent(Self.imagesFolder)
        do {
            try FileManager.default.createDirectory(atPath: imagesDir, withIntermediateDirectories: true)
        } catch {
            throw PatchGuardError.io(path: imagesDir, reason: "cannot create directory (\(error.localizedDescription))")
        }
        let names = result.images.map { Self.fileName(for: $0) }
        var errors = [Error?](repeating: nil, count: n)
        errors.withUnsafeMutableBufferPointer { errs in
            parallelFor(n) { i in
                do {
                    let picture = try panel(for: result.images[i], sample: samples[i], normalization: normalization,
                                            threshold: threshold)
                    try ImageIO.writePNG(picture, path: (imagesDir as NSString).appendingPathComponent(names[i]))
                } catch { errs[i] = error }
            }
        }
        if let first = errors.compactMap({ $0 }).first { throw first }

        var rawPath: String?
        if options.rawMaps {
            let path = (directory as NSString).appendingPathComponent(Self.rawMapsFile)
            try rawMapsWriter(result, samples: samples, normalization: normalization).write(to: path)
            rawPath = path
        }
        let page = HeatmapIndexPage(
            title: options.title ?? "PatchGuard heat maps: \(result.report.category)", result: result,
            files: names.map { Self.imagesFolder + "/" + $0 }, columns: columns, normalization: normalization,
            rawMapsFile: rawPath == nil ? nil : Self.rawMapsFile,
            panelSize: samples[0].image.width, panelCount: columns.count, gap: options.gap)
        let indexPath = (directory as NSString).appendingPathComponent(Self.index)
        try AtomicFile.write(page.html(), to: indexPath)
        return HeatmapSummary(directory: directory, indexPath: indexPath,
                              pngPaths: names.map { (imagesDir as NSString).appendingPathComponent($0) },
                              rawMapsPath: rawPath, normalization: normalization, maskThreshold: threshold,
                              columns: columns)
    }

    /// `0007_broken_large_003.png`: test-set index, defect type and image stem, reduced to `[A-Za-z0-9._-]`.
    public static func fileName(for image: EvaluatedImage) -> String {
        let stem = ((image.imagePath as NSString).lastPathComponent as NSString).deletingPathExtension
        func clean(_ s: String) -> String {
            String(s.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") ? $0 : "_" })
        }
        return String(format: "%04d", image.index) + "_" + clean(image.defectType) + "_" + clean(stem) + ".png"
    }

    /// The picture of one test image (see the type's documentation for the panel order), `3 × S × W` with
    /// `W = k·S + (k − 1)·gap` for `k` panels.
    public func panel(for image: EvaluatedImage, sample: LoadedSample, normalization: HeatmapNormalization,
                      threshold: Float?) throws -> Image {
        let s = sample.image.width, plane = s * s
        guard sample.image.channels == 3, sample.image.height == s, sample.mask.pixels.count == plane,
              let cleanMap = image.cleanMap, cleanMap.values.count == plane else {
            throw PatchGuardError.invalidArgument("heat maps: \(sample.imagePath) has no S×S map or image")
        }
        func rgb(_ pixels: [Float]) -> Image { Image(width: s, height: s, channels: 3, pixels: pixels) }
        func gray(_ plane: [Float]) -> Image { Image(width: s, height: s, channels: 1, pixels: plane) }
        var panels = [sample.image, rgb(overlay(sample.image.pixels, cleanMap.values, normalization)),
                      gray(sample.mask.pixels)]
        if let threshold { panels.append(gray(cleanMap.values.map { $0 >= threshold ? 1 : 0 })) }
        for a in image.attacked {
            guard let x = a.image, let m = a.map, x.pixels.count == 3 * plane, m.values.count == plane else {
                throw PatchGuardError.invalidArgument("heat maps: \(sample.imagePath) lacks its attacked image or map")
            }
            panels.append(rgb(x.pixels))
            panels.append(rgb(overlay(x.pixels, m.values, normalization)))
        }
        return ImagePanel.row(panels, gap: max(0, options.gap), background: 1)
    }

    /// `(1 − a)·image + a·jet(unit(map))`, planar RGB (``JetColormap/overlay(_:units:opacity:)``).
    func overlay(_ image: [Float], _ map: [Float], _ norm: HeatmapNormalization) -> [Float] {
        JetColormap.overlay(image, units: map.map { norm.unit($0) }, opacity: options.overlayOpacity)
    }

    /// The raw-maps file (see the type's documentation).
    func rawMapsWriter(_ result: EvaluationResult, samples: [LoadedSample],
                       normalization: HeatmapNormalization) throws -> SafeTensorsWriter {
        let n = samples.count, s = samples[0].image.width
        var w = SafeTensorsWriter()
        w.add("clean.maps", shape: [n, s, s], floats: result.images.flatMap { $0.cleanMap?.values ?? [] })
        w.add("clean.scores", shape: [n], floats: result.images.map { $0.cleanScore })
        for a in result.attacks.indices {
            w.add("attack\(a).maps", shape: [n, s, s], floats: result.images.flatMap { $0.attacked[a].map?.values ?? [] })
            w.add("attack\(a).scores", shape: [n], floats: result.images.map { $0.attacked[a].score })
        }
        w.add("labels", shape: [n], floats: result.images.map { Float($0.label) })
        try w.add("masks", shape: [n, s, s], dtype: "U8",
                  bytes: samples.flatMap { sample in sample.mask.pixels.map { $0 > 0.5 ? UInt8(1) : 0 } })
        func json(_ strings: [String]) -> String {
            (try? JSONEncoder().encode(strings)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        }
        w.metadata = [
            "format": "patchguard raw anomaly maps v1",
            "category": result.report.category,
            "image_paths": json(result.images.map { $0.imagePath }),
            "defect_types": json(result.images.map { $0.defectType }),
            "attacks": json(result.attacks.map { $0.name }),
            "normalization_lower": "\(normalization.lower)",
            "normalization_upper": "\(normalization.upper)",
            "normalization_method": normalization.method,
        ]
        return w
    }
}
