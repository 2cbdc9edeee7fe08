import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardData
import PatchGuardMethod
import PatchGuardJobs

struct GenerateData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-data",
        abstract: "Write the generated default dataset (MVTec AD layout: an object category and a texture) used by make run.")
    @Option(help: "Destination folder.") var output = "Datasets/generated"
    @Option(help: "Seed of the generated data (same seed → identical files).") var seed: UInt64 = 0
    @Option(name: .customLong("image-size"), help: "Side of the generated images in pixels.") var imageSize = GeneratedDataset.defaultImageSize
    @Option(name: .customLong("train-good"), help: "Normal training images per category.") var trainGood = GeneratedCounts().trainGood
    @Option(name: .customLong("test-good"), help: "Normal test images per category.") var testGood = GeneratedCounts().testGood
    @Option(name: .customLong("test-defective"), help: "Defective test images per category.") var testDefective = GeneratedCounts().testDefective
    @Option(help: ArgumentHelp("Also write a PNG grid of normal and defective samples with their masks here.", valueName: "png"))
    var preview: String?
    @Flag(name: .customLong("skip-if-current"), help: "Do nothing when the output already holds this data (same generator version, seed, image size and counts), as make run does.")
    var skipIfCurrent = false

    func run() throws {
        try runReportingErrors {
            let counts = GeneratedCounts(trainGood: trainGood, testGood: testGood, testDefective: testDefective)
            if skipIfCurrent && GeneratedDataset.isUpToDate(root: output, seed: seed, imageSize: imageSize, counts: counts) {
                print("generated data in \(output) is current (version \(GeneratedDataset.version)); not regenerated")
                return
            }
            let start = Date()
            let categories = try GeneratedDataset.write(
                to: output, seed: seed, imageSize: imageSize, counts: counts)
            for c in categories { print(c.summary) }
            print(String(format: "wrote %d categories to %@ in %.1f s", categories.count, output, Date().timeIntervalSince(start)))
            if let preview, let first = categories.first {
                try writeSampleGrid(category: first, imageSize: imageSize, count: 8, to: preview)
                print("preview: \(preview)")
            }
        }
    }
}
