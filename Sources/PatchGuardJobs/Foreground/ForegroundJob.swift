import Foundation
import PatchGuardCore
import PatchGuardData
import PatchGuardMethod

/// `patchguard foreground` as library code: the training images' foreground masks for the configured category,
/// written as PNGs (``computeForegroundMasks(category:config:force:outputDir:previewDir:progress:)``).
public enum ForegroundJob {
    /// What to say instead of running for a texture category (the whole image is foreground).
    public static let textureMessage =
        "data.category_type is \"texture\": the whole image is foreground, no masks needed."

    /// Computes and writes the masks (`maskDir`, else `data.foreground_dir`, else `CATEGORY/train/foreground_mask`),
    /// logging warnings and the summary into `run`.
    @discardableResult
    public static func run(config: JobConfig, run: RunDirectory, force: Bool = false, maskDir: String? = nil,
                           previewDir: String? = nil) throws -> ForegroundMaskSummary {
        // Only the training list is needed here (the mask folder may not exist yet).
        let category = try MVTecCategory.scan(root: config.data.root, category: config.data.category)
        var bar: ProgressBar?
        let configured = config.data.foregroundDir.isEmpty ? nil : config.data.foregroundDir
        let summary = try computeForegroundMasks(category: category, config: config.foreground, force: force,
                                                 outputDir: maskDir ?? configured, previewDir: previewDir) { done, total in
            if bar == nil { bar = ProgressBar(config.foreground.method.rawValue, total: total, unit: "img") }
            bar?.advance(done - (bar?.done ?? 0))
        }
        for w in summary.warnings { run.log("warning: \(w)") }
        run.log(summary.description)
        return summary
    }
}
