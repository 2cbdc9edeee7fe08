import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write pseudo-anomalies (original | pseudo-anomaly | mask over the foreground) as a PNG grid, to look at.")
    @OptionGroup var job: JobOptions
    @Option(help: "Number of pseudo-anomalies to draw.") var count = 16

    func run() throws {
        try runReportingErrors {
            let config = try job.loadConfig()
            let run = try job.openRun(command: "synthesize", config: config)
            try SynthesisPreviewJob.run(config: config, count: count, run: run)
        }
    }
}
