import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Heatmaps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write PNG heat-map overlays (image | heat map | ground truth | predicted mask | attacked) and an index page.",
        discussion: """
        Evaluates like `patchguard evaluate` (the model from the checkpoint's stored config). Heat maps are
        normalised with statistics over the whole test set (not per image). Also writes the raw maps
        (raw_maps.safetensors) and the metrics. Open OUTPUT/heatmaps/index.html in a browser.
        """)
    @OptionGroup var job: JobOptions
    @OptionGroup var attack: AttackOptions
    @Option(help: "Checkpoint to use (default: RUN_DIR/checkpoint.safetensors of --output).") var checkpoint: String?
    @Option(name: .customLong("heatmap-dir"), help: "Folder for the pictures (default: RUN_DIR/heatmaps).") var heatmapDir: String?
    @Flag(name: .customLong("percentiles"), help: "Normalise colours with the 1st/99th percentiles instead of min/max.")
    var percentiles = false

    func run() throws {
        try runReportingErrors {
            let (evaluation, run) = try openEvaluation(command: "heatmaps", job: job, attack: attack,
                                                       checkpoint: checkpoint, keepMaps: true)
            let outcome = try evaluation.run(in: run)
            let options = HeatmapOptions(normalization: percentiles ? .percentiles(lower: 1, upper: 99) : .minMax)
            let summary = try HeatmapWriter(options: options)
                .write(outcome.result, samples: outcome.samples, to: heatmapDir ?? run.file("heatmaps"))
            print(outcome.result.report.table())
            run.log("heat maps: \(summary.indexPath) (\(outcome.samples.count) images)")
        }
    }
}
