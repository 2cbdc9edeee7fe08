import Foundation
import Testing
import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

#if canImport(Glibc)
import Glibc
#endif

/// Bad input never crashes, hangs or silently changes a result: config ranges checked in one pass naming the key,
/// input files bounded, checkpoints never written bad, resume refusing what it cannot do.
@Suite(.serialized) struct ReliabilityTests {
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch let e as PatchGuardError { return e.description } catch { return "\(error)" }
    }

    func load(_ overrides: String...) -> String { message { _ = try JobConfig.load(path: nil, overrides: overrides) } }

    func temp(_ name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pg-rel-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/" + name
    }

    // MARK: config ranges

    @Test(arguments: [
        ("model.discriminator.heads=0", "model.discriminator.heads must be in 1...384, got 0"),
        ("model.discriminator.heads=5", "model.discriminator.heads 5 must divide the discriminator's width 384"),
        ("model.discriminator.hidden=0", "model.discriminator.hidden must be in 1...65536, got 0"),
        ("model.discriminator.layers=0", "model.discriminator.layers must be in 1...64, got 0"),
        ("model.discriminator.dropout=1", "model.discriminator.dropout must be in [0, 1)"),
        ("data.image_size=100000", "data.image_size must be in 8...8192, got 100000"),
        ("data.image_size=230", "data.image_size 230 must be a multiple of vit_small_patch14_dinov2's patch size 14"),
        ("data.cache_mb=-1", "data.cache_mb must be in 0...1048576"),
        ("train.lr=-0.001", "train.lr must be in (0, 1], got -0.001"),
        ("train.lr=0", "train.lr must be in (0, 1], got 0.0"),
        ("train.lr=1e30", "train.lr must be in (0, 1]"),
        ("train.lr_min_factor=-0.5", "train.lr_min_factor must be in (0, 1], got -0.5"),
        ("train.lr_min_factor=0", "train.lr_min_factor must be in (0, 1]"),
        ("train.lr_min_factor=2", "train.lr_min_factor must be in (0, 1]"),
        ("train.weight_decay=-1", "train.weight_decay must be in [0, 1]"),
        ("train.epochs=0", "train.epochs must be in 1...1000000, got 0"),
        ("train.batch_size=0", "train.batch_size must be in 1...4096, got 0"),
        ("train.checkpoint_every=-1", "train.checkpoint_every must be in 0...1000000"),
        ("train.reg_weights=[0.1,-1,0.2]", "train.reg_weights.1 must be a finite number ≥ 0, got -1.0"),
        ("train.reg_layers=[6,9,13]", "train.reg_layers.2 is 13, outside 1...12"),
        ("model.feature_layers=[0]", "model.feature_layers.0 is 0, outside 1...12"),
        ("model.arch=vit_huge", "model.arch: unknown ViT architecture 'vit_huge'"),
        ("attack.alpha=-1", "attack.alpha must be in [0, 1]"),
        ("attack.train_steps=-1", "attack.train_steps must be in 0...10000, got -1"),
        ("attack.epsilon=2", "attack.epsilon must be in [0, 1], got 2.0"),
    ])
    func outOfRangeValueIsAnErrorNamingTheKey(set: String, expected: String) {
        let m = load(set)
        #expect(m.contains(expected), "\(m)")
        #expect(m.hasPrefix("defaults with --set: "), "\(m)")
    }

    /// `patchguard bench --step` with a misspelled step is refused, naming it and the known steps, before the
    /// GEMM part measures anything.
    @Test func unknownBenchmarkStepIsRefusedBeforeMeasuring() {
        var lines: [String] = []
        let m = message {
            try BenchmarkJob.run(json: true, gemmOnly: false, archs: ["vit_cpu_tiny"], imageSize: 16, batch: 1,
                                 steps: ["forward", "trian"], seconds: 0, startupLine: "", unet: true) { lines.append($0) }
        }
        #expect(m.contains("'trian'") && m.contains("forward, train, input_grad"), "\(m)")
        #expect(lines.isEmpty, "measured before refusing: \(lines)")
    }

    @Test func imageSizeBeyondMemoryIsRefusedBeforeAllocating() {
        // 1792 px at patch 14 is 16385 tokens: ~1.2 TB of attention maps for a batch of 16.
        let m = load("data.image_size=1792")
        #expect(m.contains("data.image_size 1792 with model.arch vit_small_patch14_dinov2 needs about"), "\(m)")
        #expect(m.contains("GiB") && m.contains("16385 tokens"), "\(m)")
    }

    @Test func shippedConfigsStillValidate() throws {
        let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: configs.path).filter { $0.hasSuffix(".json") }
        #expect(!files.isEmpty)
        for f in files { _ = try JobConfig.load(path: configs.appendingPathComponent(f).path) }
    }

    // MARK: config files

    @Test func oversizedConfigFileIsRefusedFromItsSize() throws {
        let path = try temp("big.json")
        // What a 45 MB, 5 M-entry file would be, at 2 MiB: refused before parsing.
        let body = "{\"train\": {\"reg_layers\": [" + String(repeating: "1,", count: 1 << 20) + "1]}}"
        try body.write(toFile: path, atomically: false, encoding: .utf8)
        let m = message { _ = try JobConfig.load(path: path) }
        #expect(m.hasPrefix("\(path): config file is"), "\(m)")
        #expect(m.contains("over the limit of 1 MiB"), "\(m)")
    }

    @Test func longArrayIsRefusedNamingTheKey() throws {
        let path = try temp("long.json")
        let body = "{\"train\": {\"reg_layers\": [" + String(repeating: "1,", count: 2000) + "1]}}"
        try body.write(toFile: path, atomically: false, encoding: .utf8)
        let m = message { _ = try JobConfig.load(path: path) }
        #expect(m == "\(path): train.reg_layers has 2001 entries, over the limit of 1024", "\(m)")
        #expect(load("train.reg_layers=[" + String(repeating: "1,", count: 1500) + "1]").contains("over the limit of 1024"))
    }

    @Test func configFIFOIsRefusedWithoutBlocking() throws {
        let path = try temp("job.json")
        #expect(mkfifo(path, 0o644) == 0)
        let m = message { _ = try JobConfig.load(path: path) }
        #expect(m.contains("not a regular file (a FIFO)"), "\(m)")
    }

    // MARK: checkpoints and resume

    /// Rewrites a safetensors file's `__metadata__` key (the header is re-encoded; data offsets are relative to
    /// the data start, so they stay valid).
    func rewriteMetadata(_ path: String, key: String, value: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        var header = try JSONSerialization.jsonObject(with: Data(bytes[8..<8 + n])) as! [String: Any]
        var meta = header["__metadata__"] as! [String: String]
        meta[key] = value
        header["__metadata__"] = meta
        var json = [UInt8](try JSONSerialization.data(withJSONObject: header))
        while json.count % 8 != 0 { json.append(0x20) }
        var length = UInt64(json.count).littleEndian
        let prefix = withUnsafeBytes(of: &length) { [UInt8]($0) }
        try Data(prefix + json + bytes[(8 + n)...]).write(to: URL(fileURLWithPath: path))
    }

    @Test func resumeWithFewerEpochsThanDoneSaysSoAndStops() throws {
        var config = try TrainingTests.tinyJob()
        let dir = TrainingTests.tempDir("fewer")
        _ = try Trainer(config: config, run: try RunDirectory(path: dir, command: "train")).train()
        let trainer = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        let before = try Data(contentsOf: URL(fileURLWithPath: trainer.checkpointPath))
        config.train.epochs = 1
        let m = message { _ = try Trainer(config: config, run: try RunDirectory(path: dir, command: "train")).train(resume: true) }
        #expect(m.contains("is at epoch 2, past train.epochs = 1"), "\(m)")
        #expect(m.contains(trainer.checkpointPath))
        #expect(try Data(contentsOf: URL(fileURLWithPath: trainer.checkpointPath)) == before)
        // The CLI checks before it opens the run (so the run's config.json is not rewritten).
        let early = message { try Trainer.checkResumable(runDirectory: dir, config: config) }
        #expect(early == m, "\(early)")
        // The same number of epochs is nothing to do, not an error.
        config.train.epochs = 2
        let same = try Trainer(config: config, run: try RunDirectory(path: dir, command: "train")).train(resume: true)
        #expect(same.epochs.count == 2)
    }

    @Test(arguments: ["-5", "banana", ""])
    func checkpointWithInvalidEpochIsRefusedWithItsPath(epoch: String) throws {
        let config = try TrainingTests.tinyJob()
        let dir = TrainingTests.tempDir("meta")
        var one = config; one.train.epochs = 1
        let trainer = Trainer(config: one, run: try RunDirectory(path: dir, command: "train"))
        _ = try trainer.train()
        try rewriteMetadata(trainer.checkpointPath, key: "epoch", value: epoch)
        let m = message { _ = try Trainer(config: config, run: try RunDirectory(path: dir, command: "train")).train(resume: true) }
        #expect(m.hasPrefix("\(trainer.checkpointPath): invalid checkpoint: metadata 'epoch' is \"\(epoch)\""), "\(m)")
    }

    @Test func weightsThatEvaluateToNaNAreNeverWrittenAsACheckpoint() throws {
        // lr 1e30 with one batch per epoch: the loss of epoch 1 is finite, the weights after its step are not fit.
        var config = try TrainingTests.tinyJob()
        config.train.epochs = 1; config.train.batchSize = 6; config.train.lr = 1e30
        let dir = TrainingTests.tempDir("blowup")
        let trainer = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        let m = message { _ = try trainer.train() }
        #expect(m.contains("after epoch 1:") && m.contains("checkpoint not written"), "\(m)")
        #expect(m.contains("No checkpoint was written"), "\(m)")
        #expect(!FileManager.default.fileExists(atPath: trainer.checkpointPath))
    }

    @Test func nonFiniteWeightsAreNeverSaved() throws {
        let config = try TrainingTests.tinyJob()
        var rng = SeededRNG(seed: 1)
        let model = try PatchGuardModel<Float>(config: config, using: &rng)
        let path = try temp("checkpoint.safetensors")
        try model.saveCheckpoint(path: path, epoch: 1, config: config)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let name = model.vit.parameters.entries[3].name
        model.vit.parameters.pointer(name)[0] = .nan
        #expect(model.nonFiniteTensor() == name)
        let m = message { try model.saveCheckpoint(path: path, epoch: 2, config: config) }
        #expect(m.contains("tensor '\(name)' holds a NaN or infinity at epoch 2"), "\(m)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == good)
    }

    @Test func nonFiniteLossBeforeAnyCheckpointSaysNoneWasWritten() throws {
        // checkpoint_every 5 over 3 epochs: epoch 1 trains (one batch), epoch 2's loss is NaN, nothing on disk.
        var config = try TrainingTests.tinyJob()
        config.train.epochs = 3; config.train.batchSize = 6; config.train.checkpointEvery = 5; config.train.lr = 1e30
        let dir = TrainingTests.tempDir("noneyet")
        let trainer = Trainer(config: config, run: try RunDirectory(path: dir, command: "train"))
        let m = message { _ = try trainer.train() }
        #expect(m.contains("No checkpoint was written (train.checkpoint_every = 5)"), "\(m)")
        #expect(!m.contains("last good checkpoint is"), "\(m)")
        #expect(!FileManager.default.fileExists(atPath: trainer.checkpointPath))
    }

    // MARK: run directory

    @Test func staleTemporaryFilesAreRemovedOnTheNextStart() throws {
        let dir = TrainingTests.tempDir("stale")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run(); child.waitUntilExit()
        let stale = dir + "/.checkpoint.safetensors.tmp-\(child.processIdentifier)-12345"
        let live = dir + "/.config.json.tmp-\(getpid())-678"
        let other = dir + "/.hidden-notes"
        for p in [stale, live, other] { #expect(FileManager.default.createFile(atPath: p, contents: Data([1]))) }
        let run = try RunDirectory(path: dir, command: "train")
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: live))   // its writer is alive (this process)
        #expect(FileManager.default.fileExists(atPath: other))
        let log = try String(contentsOfFile: run.file("log.txt"), encoding: .utf8)
        #expect(log.contains("removed stale temporary file \(stale)"))
    }

    @Test func fatalErrorReachesLogTxt() throws {
        let dir = TrainingTests.tempDir("fatal")
        let run = try RunDirectory(path: dir, command: "train")
        RunDirectory.reportFatal("something broke")
        let log = try String(contentsOfFile: run.file("log.txt"), encoding: .utf8)
        #expect(log.contains("error: something broke"))
    }
}
