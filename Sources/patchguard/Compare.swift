import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardJobs

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluated runs side by side: clean image/pixel AUROC, under the image-score and patch attacks, worst case.",
        discussion: """
        Reads RUN/metrics.json of each run (written by patchguard evaluate or heatmaps), prints one table with a \
        column per run and writes it, with a legend, to --output (Markdown). make run uses it to set the \
        clean-trained model beside the adversarially trained one.

        Example:
          patchguard compare runs/default-clean runs/default --name clean-trained --name robust-trained \
            --output runs/compare.md
        """)
    @Argument(help: "Run directories holding metrics.json.") var runs: [String]
    @Option(help: "Column heading of each run, in order (default: the folder names).") var name: [String] = []
    @Option(help: ArgumentHelp("Write the table here (Markdown).", valueName: "file")) var output: String?

    func validate() throws {
        if !name.isEmpty && name.count != runs.count {
            throw ValidationError("give one --name per run (\(runs.count)), or none")
        }
    }

    func run() throws {
        try runReportingErrors {
            let comparison = try RunComparison.load(runs: runs, names: name)
            print(comparison.table(), terminator: "")
            if let output {
                try comparison.write(to: output)
                print("comparison: \(output)")
            }
        }
    }
}
