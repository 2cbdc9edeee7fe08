import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardMethod
import PatchGuardJobs

/// Options shared by every job command.
struct JobOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Job config (JSON, snake_case keys). Without it the built-in defaults are used.",
                                            valueName: "file"))
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Override one config key, e.g. --set data.category=bottle --set train.epochs=5 --set attack.epsilon=8/255. Repeatable.",
        valueName: "key.path=value"))
    var overrides: [String] = []

    @Option(name: .long, help: ArgumentHelp("Run directory (default: runs/<timestamp>-<command>).", valueName: "dir"))
    var output: String?

    @Option(name: .long, help: "Seed for every random choice (overrides the config's `seed`).")
    var seed: UInt64?

    @Option(name: .long, help: ArgumentHelp(
        "Precision of the matrix products (overrides model.precision): fp32, or bf16 (bf16 inputs, fp32 accumulation; needs a CPU with AVX512_BF16, refused elsewhere).",
        valueName: "fp32|bf16"))
    var precision: ComputePrecision?

    /// `--set` overrides, then `--seed` as `seed=`, then `--precision` as `model.precision=`.
    var allOverrides: [String] {
        overrides + (seed.map { ["seed=\($0)"] } ?? []) + (precision.map { ["model.precision=\($0.rawValue)"] } ?? [])
    }

    /// The resolved config: file, then --set, then --seed.
    func loadConfig() throws -> JobConfig {
        try JobConfig.load(path: config, overrides: allOverrides)
    }

    /// Sets the GEMM precision (before anything is written: bf16 on a CPU without it is refused), creates the run
    /// directory, writes the resolved config and logs the OpenBLAS core and the precision.
    func openRun(command: String, config: JobConfig) throws -> RunDirectory {
        try GEMMPrecision.set(config.model.precision)
        let run = try RunDirectory(path: output, command: command)
        try run.writeConfig(config)
        run.log("patchguard \(PatchGuardVersion.string) \(command): run directory \(run.path)")
        run.log(blasStartupLine)
        run.log(precisionLine)
        return run
    }
}

extension ComputePrecision: ExpressibleByArgument {}

/// "matrix products: fp32 (OpenBLAS sgemm)" or "… bf16 (AVX512_BF16, fp32 accumulation)", for the log.
var precisionLine: String {
    switch GEMMPrecision.current {
    case .fp32: return "matrix products: fp32 (OpenBLAS sgemm)"
    case .bf16: return "matrix products: bf16 inputs, fp32 accumulation (AVX512_BF16 vdpbf16ps)"
    }
}

/// Library errors become one clear message and a non-zero exit code; nothing else prints stack traces. The
/// message goes to standard error and, once the command has a run directory, into its `log.txt`.
func runReportingErrors(_ body: () throws -> Void) throws {
    func report(_ message: String) { RunDirectory.reportFatal(message) }
    do { try body() } catch let error as PatchGuardError {
        report(error.description)
        throw ExitCode(error.exitCode)
    } catch let error as ExitCode {
        throw error
    } catch {
        report("\(error)")
        throw ExitCode(1)
    }
}

extension PatchGuardError {
    var exitCode: Int32 {
        switch self {
        case .config, .invalidArgument: return 2
        case .io, .dataset: return 3
        case .numeric: return 4
        case .notImplemented: return 70
        }
    }
}
