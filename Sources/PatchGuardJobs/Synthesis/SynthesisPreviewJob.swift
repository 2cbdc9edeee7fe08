import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardData
import PatchGuardMethod

/// `patchguard synthesize` as library code: `count` pseudo-anomalies drawn as training draws them, written as a
/// PNG grid (original | pseudo-anomaly | pasted mask in white over the foreground in gray).
public enum SynthesisPreviewJob {
    /// Writes `RUN_DIR/synthesis.png` and returns its path.
    @discardableResult
    public static func run(config: JobConfig, count: Int, run: RunDirectory) throws -> String {
        let category = try config.data.scanCategory()
        let train = Array(category.train.prefix(max(1, count)))
        let samples = try preparingForegrounds(
            try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: 0).load(train),
            config: config, log: run.log)
        let picked = (0..<count).map { samples[$0 % samples.count] }
        let foregrounds: [Image]? = config.data.categoryType == .texture ? nil : picked.map {
            $0.foreground ?? Image(width: config.data.imageSize, height: config.data.imageSize, channels: 1, value: 1)
        }
        let results = try PseudoAnomalySynthesizer(config: config.synthesis)
            .synthesizeBatch(images: picked.map(\.image), foregrounds: foregrounds, seed: config.seed, batchIndex: 0)
        let path = run.file("synthesis.png")
        // The mask panel shows the pasted pixels in white over the foreground in gray.
        let panels = results.enumerated().map { i, r -> Image in
            guard let fg = foregrounds?[i] else { return r.mask }
            var m = r.mask
            for p in m.pixels.indices { m.pixels[p] = max(m.pixels[p], 0.3 * fg.pixels[p]) }
            return m
        }
        try writeSynthesisGrid(originals: picked.map(\.image), results: results.map(\.image), masks: panels, to: path)
        run.log("wrote \(count) pseudo-anomalies: \(path) (original | pseudo-anomaly | pasted mask in white" +
                (foregrounds == nil ? ")" : " over the foreground in gray)"))
        return path
    }
}
