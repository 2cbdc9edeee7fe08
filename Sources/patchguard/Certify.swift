import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardJobs

struct Certify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Certified image AUROC against L2 perturbations by randomized smoothing (Cohen et al. 2019).",
        discussion: """
        For every test image and σ: n0 pilot and n estimation copies x + N(0, σ²I) through the detector; h = \
        squash(image score) in [0,1]; g(x) = E h is bounded with confidence 1 − α (Clopper–Pearson on the \
        Bernoulli trick or empirical Bernstein, the pilot picks the narrower); Φ⁻¹(g) is 1/σ-Lipschitz, so \
        g(x + δ) stays in [Φ(Φ⁻¹(g_lo) − r/σ), Φ(Φ⁻¹(g_hi) + r/σ)] for ‖δ‖₂ ≤ r. Certified AUROC at r: upper ends \
        for normal images, lower ends for defective ones.

        Writes metrics.json, metrics.md, certified_auroc.svg and certify_images.csv into the run directory and \
        prints the table. The model is rebuilt from the checkpoint's stored config, as for evaluate; the certify \
        section of --config/--set sets everything the options below do not (certify.squash, squash_center, \
        squash_scale, batch_size).

        Example:
          patchguard certify --checkpoint runs/tire/checkpoint.safetensors --sigma 0.12 --sigma 0.25 \\
            --samples 500 --alpha 0.001 --radius 0.05 --radius 0.1 --radius 0.2 --radius 0.5
        """)
    @OptionGroup var job: JobOptions
    @Option(help: "Checkpoint to certify (default: RUN_DIR/checkpoint.safetensors of --output).") var checkpoint: String?
    @Option(parsing: .unconditionalSingleValue, help: ArgumentHelp(
        "Noise σ in [0,1] pixel units; repeat for several (default: certify.sigmas, 0.12 and 0.25).", valueName: "σ"))
    var sigma: [Double] = []
    @Option(parsing: .unconditionalSingleValue, help: ArgumentHelp(
        "L2 radius to report; repeat (default: certify.radii, 0.05 0.1 0.2 0.5; r = 0 always).", valueName: "r"))
    var radius: [Double] = []
    @Option(parsing: .unconditional, help: "Estimation draws n per image and σ (default: certify.samples, 500).")
    var samples: Int?
    @Option(parsing: .unconditional, help: "Pilot draws n0 that choose the interval (default: certify.n0, 64).")
    var n0: Int?
    @Option(parsing: .unconditional, help: "Each interval misses with probability ≤ α, in (0, 1) (default: certify.alpha, 0.001).")
    var alpha: Double?
    @Option(name: .customLong("max-images"), parsing: .unconditional,
            help: "Certify at most this many test images, evenly spaced (default: certify.max_images, 0 = all).")
    var maxImages: Int?
    @Option(name: .customLong("squash-fit"), help: ArgumentHelp(
        "Where the squash's center and scale come from: fixed (certify.squash_center / squash_scale) or train_normals (per σ, mean and std of the scores of certify.squash_fit_images noisy training normals; use it for the diffusion detector, whose scores are not logits). Default: certify.squash_fit, fixed.",
        valueName: "fixed|train_normals"))
    var squashFit: SquashFit?

    func validate() throws {
        if let bad = sigma.first(where: { !($0.isFinite && $0 > 0) }) { throw ValidationError("--sigma must be > 0, got \(bad)") }
        if let bad = radius.first(where: { !($0.isFinite && $0 >= 0) }) { throw ValidationError("--radius must be ≥ 0, got \(bad)") }
        if let samples, samples < 2 { throw ValidationError("--samples must be ≥ 2, got \(samples)") }
        if let n0, n0 < 0 { throw ValidationError("--n0 must be ≥ 0, got \(n0)") }
        if let alpha, !(alpha > 0 && alpha < 1) { throw ValidationError("--alpha must be in (0, 1), got \(alpha)") }
        if let maxImages, maxImages < 0 { throw ValidationError("--max-images must be ≥ 0, got \(maxImages)") }
    }

    /// The options as `--set certify.…` overrides, after the user's own.
    var overrides: [String] {
        var o = job.allOverrides
        func list(_ v: [Double]) -> String { "[" + v.map { "\($0)" }.joined(separator: ",") + "]" }
        if !sigma.isEmpty { o.append("certify.sigmas=" + list(sigma)) }
        if !radius.isEmpty { o.append("certify.radii=" + list(radius)) }
        if let samples { o.append("certify.samples=\(samples)") }
        if let n0 { o.append("certify.n0=\(n0)") }
        if let alpha { o.append("certify.alpha=\(alpha)") }
        if let maxImages { o.append("certify.max_images=\(maxImages)") }
        if let squashFit { o.append("certify.squash_fit=\(squashFit.rawValue)") }
        return o
    }

    func run() throws {
        try runReportingErrors {
            let certify = try CertifyJob(checkpoint: try defaultCheckpoint(checkpoint, output: job.output),
                                         configPath: job.config, overrides: overrides)
            let run = try job.openRun(command: "certify", config: certify.config)
            let result = try certify.run(in: run)
            print(result.report.table())
            run.log("metrics: \(run.file("metrics.md")); curve: \(run.file(CertificationResult.curveSVG))")
        }
    }
}
