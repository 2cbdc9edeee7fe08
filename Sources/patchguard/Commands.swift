import ArgumentParser
import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod
import PatchGuardJobs

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adversarially train a PatchGuard detector on one category (pseudo-anomalies in the foreground, PGD training).",
        discussion: """
        Each batch trains on clean normals, PGD-attacked normals, pseudo-anomalies and PGD-attacked pseudo-anomalies
        (train.adversarial, attack.train_steps, attack.epsilon). Writes config.json, log.txt, train_log.jsonl and
        checkpoint.safetensors (atomically, every train.checkpoint_every epochs and at the end) into the run directory.
        Foreground masks (object categories) are read from <category>/train/foreground_mask/<stem>.png or
        data.foreground_dir when present (patchguard foreground); missing ones are computed by border contrast when
        foreground.method is "border" (the default).
        """)
    @OptionGroup var job: JobOptions
    @Option(help: ArgumentHelp("Continue the run in this directory from its last checkpoint (its config.json is used; --set may change e.g. train.epochs).",
                               valueName: "run_dir"))
    var resume: String?

    func validate() throws {
        if resume != nil && job.config != nil {
            throw ValidationError("--resume uses the run's own config.json; do not pass --config with it")
        }
        if resume != nil && job.output != nil {
            throw ValidationError("--resume continues in its own run directory; do not pass --output with it")
        }
    }

    func run() throws {
        try runReportingErrors {
            var options = job
            if let resume {
                options.config = (resume as NSString).appendingPathComponent("config.json")
                options.output = resume
            }
            let config = try options.loadConfig()
            let run = try options.openRun(command: "train", config: config)
            let summary = try Trainer(config: config, run: run).train(resume: resume != nil)
            if let last = summary.epochs.last {
                run.log(String(format: "done: %d epochs in %@, final loss %.4f (bce %.4f, reg %.3e)",
                               summary.epochs.count, ProgressBar.clock(summary.seconds), last.loss, last.bce, last.reg))
            }
            run.log("checkpoint: \(summary.checkpoint)")
        }
    }
}

/// `--attack pgd --steps N --epsilon E [--epsilon E2 …] [--alpha A]` on evaluate and heatmaps.
struct AttackOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Attack to run after the clean pass: pgd, or none. Default: the config's eval.attacks.", valueName: "name"))
    var attack: String?
    @Option(help: "PGD steps (e.g. 10, 100, 1000).") var steps: Int?
    @Option(help: ArgumentHelp("L∞ budget in [0,1] pixel units; fractions such as 8/255 work. Repeat for several budgets.",
                               valueName: "eps"))
    var epsilon: [String] = []
    @Option(help: "PGD step size (default 2.5·ε/steps).") var alpha: Double?
    @Flag(name: .customLong("random-start"), help: "Start PGD from a uniform random point in the ε-ball.") var randomStart = false
    @Option(help: ArgumentHelp("What PGD attacks: patches (the paper: ground-truth patch labels, i.e. the pixel map) or image (the image score). Repeat for both.", valueName: "target"))
    var target: [PGDTarget] = []

    func validate() throws {
        if let attack, !["pgd", "none"].contains(attack) { throw ValidationError("--attack must be pgd or none, got \(attack)") }
        for e in epsilon where parseEpsilon(e) == nil { throw ValidationError("--epsilon \(e) is not a number or fraction") }
        if let steps, steps < 0 { throw ValidationError("--steps must be ≥ 0") }
    }

    func parseEpsilon(_ text: String) -> Double? {
        if case let .number(v) = JSONValue.parseCommandLineValue(text) { return v }
        return nil
    }

    /// The attacks to run: the command line's when given, else the config's.
    func attacks(config: JobConfig) throws -> [EvaluationAttack] {
        if attack == "none" { return [] }
        if attack == nil && steps == nil && epsilon.isEmpty && target.isEmpty {
            return try config.eval.attacks.map(EvaluationAttack.init)
        }
        let eps = epsilon.isEmpty ? [config.attack.epsilon] : epsilon.compactMap(parseEpsilon)
        let targets = target.isEmpty ? [PGDTarget.patches] : target
        return try targets.flatMap { t in
            try eps.map { try EvaluationAttack(epsilon: $0, steps: steps ?? 10, alpha: alpha ?? 0,
                                               randomStart: randomStart, target: t) }
        }
    }
}

/// Loads the trained model and the category's test set for evaluate/heatmaps.
func loadForEvaluation(config: JobConfig, checkpoint: String, run: RunDirectory) throws -> (PatchGuardModel<Float>, [LoadedSample]) {
    var rng = SeededRNG(seed: config.seed)
    let model = try PatchGuardModel<Float>(config: config, maxBatch: max(1, config.eval.batchSize), using: &rng)
    let state = try model.loadCheckpoint(path: checkpoint)
    run.log("checkpoint: \(checkpoint) (epoch \(state.epoch)); model: \(model.summary)")
    let category = try MVTecCategory.scan(root: config.data.root, category: config.data.category)
    run.log("data: \(category.summary)")
    let samples = try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: config.data.cacheMB << 20).load(category.test)
    return (model, samples)
}

/// The shared body of evaluate and heatmaps: load config, checkpoint and test set, run the clean pass and the
/// attacks, write metrics.json/md and the ROC curves.
func evaluateJob(command: String, job: JobOptions, attack: AttackOptions, checkpoint: String?,
                 keepMaps: Bool) throws -> (EvaluationResult, [LoadedSample], RunDirectory) {
    let config = try job.loadConfig()
    let ckpt = try defaultCheckpoint(checkpoint, output: job.output)
    let run = try job.openRun(command: command, config: config)
    let (model, samples) = try loadForEvaluation(config: config, checkpoint: ckpt, run: run)
    var settings = try EvaluationSettings(eval: config.eval, patchSize: model.patchSize,
                                          batchSize: max(1, config.eval.batchSize), seed: config.seed, keepMaps: keepMaps)
    settings.attacks = try attack.attacks(config: config)
    var result = try Evaluator(detector: model, settings: settings)
        .evaluate(samples, category: config.data.category, log: run.log)
    result.report.detector = ckpt
    let files = try result.writeReports(to: run.path)
    run.log("wrote " + files.joined(separator: ", "))
    return (result, samples, run)
}

func defaultCheckpoint(_ given: String?, output: String?) throws -> String {
    if let given { return given }
    if let output { return (output as NSString).appendingPathComponent("checkpoint.safetensors") }
    throw ValidationError("give --checkpoint FILE (or --output RUN_DIR of a training run)")
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image AUROC (AD) and pixel AUROC/AUPRO (AL), clean and under PGD attacks.",
        discussion: """
        Writes metrics.json, metrics.md, roc_image.svg and roc_pixel.svg into the run directory and prints the table.
        The attack uses the ground-truth patch labels: normal patches are pushed up, anomalous ones down, which
        attacks the image score and the pixel map at once. Example:
          patchguard evaluate --config Configs/mvtec-cpu.json --checkpoint runs/tire/checkpoint.safetensors \\
                              --attack pgd --steps 100 --epsilon 8/255
        """)
    @OptionGroup var job: JobOptions
    @OptionGroup var attack: AttackOptions
    @Option(help: "Checkpoint to evaluate (default: RUN_DIR/checkpoint.safetensors of --output).") var checkpoint: String?

    func run() throws {
        try runReportingErrors {
            let (result, _, run) = try evaluateJob(command: "evaluate", job: job, attack: attack,
                                                   checkpoint: checkpoint, keepMaps: false)
            print(result.report.table())
            run.log("metrics: \(run.file("metrics.md"))")
        }
    }
}

struct Heatmaps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write PNG heat-map overlays (image | heat map | ground truth | predicted mask | attacked) and an index page.",
        discussion: """
        Heat maps are normalised with statistics over the whole test set (not per image). Also writes the raw maps
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
            let (result, samples, run) = try evaluateJob(command: "heatmaps", job: job, attack: attack,
                                                         checkpoint: checkpoint, keepMaps: true)
            let dir = heatmapDir ?? run.file("heatmaps")
            let options = HeatmapOptions(normalization: percentiles ? .percentiles(lower: 1, upper: 99) : .minMax)
            let summary = try HeatmapWriter(options: options).write(result, samples: samples, to: dir)
            print(result.report.table())
            run.log("heat maps: \(summary.indexPath) (\(samples.count) images)")
        }
    }
}

struct Foreground: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute foreground masks for the training images and write them as PNGs.",
        discussion: """
        foreground.method = "gradcam" (the paper's way) needs an ImageNet classifier ViT in safetensors (timm names
        incl. head.weight/head.bias) in foreground.weights and its preset in foreground.arch.
        foreground.method = "border" (the default) needs no classifier: the object is what differs from the image
        border in colour or texture (one object on a plain background). Training computes border masks itself when
        none are on disk, so this command is for looking at them (--preview) or for Grad-CAM.
        Writes CATEGORY/train/foreground_mask/<stem>.png (training uses them) or --mask-dir.
        Texture categories (data.category_type = "texture") need no masks.
        """)
    @OptionGroup var job: JobOptions
    @Flag(help: "Recompute masks that already exist.") var force = false
    @Option(name: .customLong("mask-dir"), help: "Write masks here instead of data.foreground_dir (default CATEGORY/train/foreground_mask).") var maskDir: String?
    @Option(help: ArgumentHelp("Also write image | map (Grad-CAM or border contrast) | mask triples here.", valueName: "dir")) var preview: String?

    func run() throws {
        try runReportingErrors {
            let config = try job.loadConfig()
            if config.data.categoryType == "texture" {
                print("data.category_type is \"texture\": the whole image is foreground, no masks needed.")
                return
            }
            // Only the training list is needed here (the mask folder may not exist yet).
            let category = try MVTecCategory.scan(root: config.data.root, category: config.data.category)
            let run = try job.openRun(command: "foreground", config: config)
            var bar: ProgressBar?
            let configured = config.data.foregroundDir.isEmpty ? nil : config.data.foregroundDir
            let summary = try computeForegroundMasks(category: category, config: config.foreground, force: force,
                                                     outputDir: maskDir ?? configured, previewDir: preview) { done, total in
                if bar == nil { bar = ProgressBar(config.foreground.method, total: total, unit: "img") }
                bar?.advance(done - (bar?.done ?? 0))
            }
            for w in summary.warnings { run.log("warning: \(w)") }
            run.log(summary.description)
        }
    }
}

struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write pseudo-anomalies (original | pseudo-anomaly | mask over the foreground) as a PNG grid, to look at.")
    @OptionGroup var job: JobOptions
    @Option(help: "Number of pseudo-anomalies to draw.") var count = 16

    func run() throws {
        try runReportingErrors {
            let config = try job.loadConfig()
            let category = try config.data.scanCategory()
            let run = try job.openRun(command: "synthesize", config: config)
            let train = Array(category.train.prefix(max(1, count)))
            let samples = try preparingForegrounds(
                try SampleLoader(imageSize: config.data.imageSize, cacheBudgetBytes: 0).load(train),
                config: config, log: run.log)
            let picked = (0..<count).map { samples[$0 % samples.count] }
            let foregrounds: [Image]? = config.data.categoryType == "texture" ? nil : picked.map {
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
        }
    }
}

struct GenerateData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-data",
        abstract: "Write the generated default dataset (MVTec AD layout: an object category and a texture) used by make run.")
    @Option(help: "Destination folder.") var output = "Datasets/generated"
    @Option(help: "Seed of the generated data (same seed → identical files).") var seed: UInt64 = 0
    @Option(name: .customLong("image-size"), help: "Side of the generated images in pixels.") var imageSize = GeneratedDataset.defaultImageSize
    @Option(name: .customLong("train-good"), help: "Normal training images per category.") var trainGood = 40
    @Option(name: .customLong("test-good"), help: "Normal test images per category.") var testGood = 10
    @Option(name: .customLong("test-defective"), help: "Defective test images per category.") var testDefective = 15
    @Option(help: ArgumentHelp("Also write a PNG grid of normal and defective samples with their masks here.", valueName: "png"))
    var preview: String?

    func run() throws {
        try runReportingErrors {
            let start = Date()
            let categories = try GeneratedDataset.write(
                to: output, seed: seed, imageSize: imageSize,
                counts: GeneratedCounts(trainGood: trainGood, testGood: testGood, testDefective: testDefective))
            for c in categories { print(c.summary) }
            print(String(format: "wrote %d categories to %@ in %.1f s", categories.count, output, Date().timeIntervalSince(start)))
            if let preview, let first = categories.first {
                try writeSampleGrid(category: first, imageSize: imageSize, count: 8, to: preview)
                print("preview: \(preview)")
            }
        }
    }
}

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one image's final-normed patch tokens and every layer's attention maps (safetensors), to compare numerics.",
        discussion: "Tensors: features (N_patches × C, last layer) and attn.<i> (heads × N × N, 1-based layer).")
    @Option(help: "ViT preset (timm name), e.g. vit_small_patch14_dinov2.") var arch: String
    @Option(help: "Backbone weights (safetensors, timm names). Without it the model is randomly initialised (--seed).") var weights: String?
    @Option(help: "Input image (PNG or JPEG).") var image: String
    @Option(name: .customLong("image-size"), help: "Resize the image to this size.") var imageSize = 224
    @Option(help: "Seed for random initialisation when no weights are given.") var seed: UInt64 = 0
    @Option(help: "Output .safetensors file.") var output: String

    func run() throws {
        try runReportingErrors {
            let config = try ViTConfig.preset(arch, imageSize: imageSize)
            let vit = try ViT<Float>(config: config, maxBatch: 1, seed: seed)
            if let weights { for w in try vit.loadWeights(path: weights) { print("warning: \(w)") } }
            let img = try ImageIO.read(path: image).resized(width: imageSize, height: imageSize, filter: .auto)
            try img.pixels.withUnsafeBufferPointer {
                try vit.forward(images: $0.baseAddress!, batch: 1, featureLayers: [config.depth],
                                attentionLayers: Array(1...config.depth))
            }
            var w = SafeTensorsWriter()
            let f = vit.features(layer: config.depth)
            w.add("features", shape: [f.shape[1], f.shape[2]], values: UnsafeBufferPointer(f.buffer))
            for l in 1...config.depth {
                let a = vit.attention(layer: l)
                w.add("attn.\(l)", shape: Array(a.shape.dropFirst()), values: UnsafeBufferPointer(a.buffer))
            }
            w.metadata = ["arch": arch, "image": image, "image_size": "\(imageSize)", "weights": weights ?? "random(seed \(seed))"]
            try w.write(to: output)
            print("wrote \(output): features \(f.shape.dropFirst().map(String.init).joined(separator: "×")), attn.1…attn.\(config.depth)")
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: sgemm GFLOPS (1024³ and ViT-S/14 shapes), ViT forward / train / input-gradient img/s, peak memory.")
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false
    @Flag(name: .customLong("gemm-only"), help: "Run only the sgemm part.") var gemmOnly = false
    @Option(name: .customLong("arch"), help: "ViT presets to measure (repeatable).") var archs: [String] = ViTBenchmark.defaultArchs
    @Option(name: .customLong("image-size"), help: "Image size for the ViT part.") var imageSize = 224
    @Option(help: "Batch size for the ViT part.") var batch = 8
    @Option(help: "Minimum seconds per measurement.") var seconds = 5.0

    func run() throws {
        try runReportingErrors {
            if !json { print(blasStartupLine) }
            let rows = GEMMBenchmark.run()
            for r in rows {
                if json {
                    print("{\"bench\": \"gemm\", \"name\": \"\(r.name)\", \"m\": \(r.m), \"n\": \(r.n), \"k\": \(r.k), \"gflops\": \(String(format: "%.1f", r.gflops)), \"openblas_core\": \"\(OpenBLAS.coreName)\"}")
                } else {
                    print(r.name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%8.1f GFLOPS", r.gflops))
                }
            }
            if gemmOnly {
                if !json { print(String(format: "peak resident memory: %.0f MiB", peakResidentMB())) }
                return
            }
            if !json { print("\nViT, batch \(batch), \(imageSize) px (img/s; peak RSS grows monotonically within one process):") }
            _ = try ViTBenchmark.run(archs: archs, imageSize: imageSize, batch: batch, minSeconds: seconds) { row in
                if json { print(row.jsonLine) } else {
                    print(row.arch.padding(toLength: 28, withPad: " ", startingAt: 0)
                          + row.step.padding(toLength: 12, withPad: " ", startingAt: 0)
                          + String(format: "%8.2f img/s   peak RSS %6.0f MiB", row.imgPerS, row.peakRSSMB))
                }
                fflush(stdout)
            }
        }
    }
}

extension PGDTarget: ExpressibleByArgument {}
