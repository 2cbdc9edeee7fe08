import ArgumentParser
import Foundation
import PatchGuardCore

import PatchGuardMethod
import PatchGuardJobs

/// The OpenBLAS line logged by every command (set in main.swift before parsing).
nonisolated(unsafe) var blasStartupLine = ""

struct PatchGuardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patchguard",
        abstract: "Train and evaluate adversarially robust anomaly detectors (PatchGuard, CVPR 2025).",
        discussion: """
        A job is a JSON config (see Configs/ and README.md). Every job command takes --config, repeated
        --set key.path=value overrides and --output RUN_DIR (default: a new folder under runs/).
        """,
        version: PatchGuardVersion.string,
        subcommands: [Train.self, Evaluate.self, Certify.self, Heatmaps.self, Foreground.self, Synthesize.self,
                      GenerateData.self, Features.self, Bench.self, Predict.self, Compare.self])
}

enum PatchGuardVersion {
    static let string = "0.1.0"
}
