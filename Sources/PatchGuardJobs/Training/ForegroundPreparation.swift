import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardData
import PatchGuardMethod

/// Training samples with a foreground mask each, for an object category.
///
/// Samples that already have a mask (`train/foreground_mask/<stem>.png`) keep it. With `foreground.method =
/// "border"` the others get a border-contrast mask computed here, at the training size; with `"gradcam"` they
/// keep none (the synthesizer then uses the whole image) and a warning says how to fix that. Texture categories
/// are returned unchanged (the whole image is foreground). `log` receives one line per decision.
public func preparingForegrounds(_ samples: [LoadedSample], config: JobConfig,
                                 log: (String) -> Void) throws -> [LoadedSample] {
    guard config.data.categoryType == .object else { return samples }
    let missing = samples.indices.filter { samples[$0].foreground == nil }
    if missing.isEmpty { return samples }
    guard config.foreground.method == .border else {
        log("warning: \(missing.count) training images have no foreground mask (train/foreground_mask/<stem>.png); " +
            "pseudo-anomalies may land anywhere on them. Run `patchguard foreground` first, set " +
            "foreground.method to \"border\" (masks from contrast with the image border, computed here), " +
            "or set data.category_type to \"texture\".")
        return samples
    }
    let start = Date()
    var out = samples
    var results = [Result<ForegroundMaskResult, Error>?](repeating: nil, count: missing.count)
    let options = config.foreground.borderOptions
    results.withUnsafeMutableBufferPointer { r in
        parallelFor(missing.count) { k in
            r[k] = Result { try borderContrastMask(image: samples[missing[k]].image, options: options) }
        }
    }
    var fraction = 0.0, fallbacks = 0
    for (k, i) in missing.enumerated() {
        let result = try results[k]!.get()
        if result.isFallback { fallbacks += 1 }
        fraction += foregroundFraction(result.mask)
        out[i].foreground = result.mask
    }
    log(String(format: "foreground: %d masks computed by border contrast in %.1f s (mean foreground %.1f %%%@)",
               missing.count, Date().timeIntervalSince(start), 100 * fraction / Double(missing.count),
               fallbacks > 0 ? ", \(fallbacks) fell back to the whole image" : ""))
    return out
}
