import Foundation
import Testing
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
@testable import PatchGuardMethod
@testable import PatchGuardJobs

/// The certificate against an attack on a small trained model, and `patchguard certify` as a library job.
@Suite(.serialized) struct CertificationJobTests {
    /// A tiny PatchGuard model (ViT 16 px, 4×4 patches, 2 blocks), trained a few steps on the toy set, as in
    /// ``AttackFrameworkTests/guardsOnASmallPatchGuardModel()``.
    static func smallModel(seed: UInt64 = 1) throws -> PatchGuardModel<Float> {
        var config = JobConfig()
        config.data.imageSize = 16
        config.model.discriminator = DiscriminatorConfig(layers: 1, heads: 2, hidden: 16, dropout: 0)
        config.train.regLayers = [2]; config.train.regWeights = [0.01]
        let backbone = ViTConfig(imageSize: 16, patchSize: 4, dim: 16, depth: 2, heads: 2, mlpRatio: 2)
        var rng = SeededRNG(seed: seed)
        let m = try PatchGuardModel<Float>(config: config, maxBatch: 32, backbone: backbone, using: &rng)
        let opt = PatchGuardOptimizerState(model: m, weightDecay: 0)
        let train = evalTestSet(normal: 8, anomalous: 8, seed: seed + 100)
        let x = train.flatMap { $0.image.pixels }
        let y = try train.flatMap { try patchLabels(mask: $0.mask, patchSize: 4) }
        for _ in 0..<30 {
            for lo in stride(from: 0, to: 16, by: 8) {
                m.zeroGradients()
                var drop = SeededRNG(seed: 1)
                _ = m.trainingPass(images: Array(x[(lo * 768)..<((lo + 8) * 768)]), labels: Array(y[(lo * 16)..<((lo + 8) * 16)]),
                                   batch: 8, using: &drop)
                opt.step(model: m, lr: 3e-3)
            }
        }
        return m
    }

    /// L2 PGD with EOT against the smoothed detector (the gradient of ±g, averaged over noise draws) at radius r
    /// never takes an image's smoothed score outside its certified interval at r: a fresh, large-sample interval
    /// for g at the attacked point always overlaps the certified one. The attack does move the scores (so the
    /// check could fail).
    @Test func eotPGDAgainstTheSmoothedDetectorStaysInsideTheCertificate() throws {
        let detector = try PatchLogitDetector(try Self.smallModel(), topK: 3)
        let sigma = 0.25, r = 0.5, alpha = 0.001
        let samples = evalTestSet(normal: 4, anomalous: 4, seed: 55)
        let smoothing = try RandomizedSmoothing(detector: detector, settings: SmoothingSettings(
            sigma: sigma, n0: 32, samples: 400, alpha: alpha, batchSize: 32))
        let check = try RandomizedSmoothing(detector: detector, settings: SmoothingSettings(
            sigma: sigma, n0: 0, samples: 2000, alpha: alpha, batchSize: 32))
        var x = samples.flatMap { $0.image.pixels }
        let labels = samples.flatMap { s in [Float](repeating: s.label == 1 ? 1 : 0, count: 16) }
        let attack = AttackSpec(name: .pgd, epsilon: r, steps: 10, alpha: r / 4, target: .imageTopK, norm: .l2,
                                eotSamples: 16)
        var rng = SeededRNG(seed: 4)
        let noisy = GaussianNoiseDetector(detector, sigma: sigma, seed: 11)
        let attacked = attack.run(on: noisy, images: x, labels: labels, batch: 8, using: &rng)
        let n = 3 * 16 * 16
        var moved = 0.0
        for b in 0..<8 {
            let clean = Array(x[(b * n)..<((b + 1) * n)]), adv = Array(attacked[(b * n)..<((b + 1) * n)])
            let norm = zip(clean, adv).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
            #expect(norm <= r + 1e-4, "‖δ‖ = \(norm)")
            var r1 = SeededRNG(seed: 21, stream: UInt64(b)), r2 = SeededRNG(seed: 22, stream: UInt64(b)),
                r3 = SeededRNG(seed: 23, stream: UInt64(b))
            let cert = try smoothing.certify(clean, using: &r1).certified(radius: r)
            let before = try check.certify(clean, using: &r3)
            let after = try check.certify(adv, using: &r2)
            #expect(after.interval.upper >= cert.lower && after.interval.lower <= cert.upper,
                    "image \(b): g(x') ∈ [\(after.interval.lower), \(after.interval.upper)] outside the certificate [\(cert.lower), \(cert.upper)]")
            moved += (samples[b].label == 1 ? -1 : 1) * (after.estimate - before.estimate)
        }
        #expect(moved > 0.02, "the attack should move the smoothed scores the harmful way: \(moved)")
        x.removeAll()
    }

    /// The EOT gradient of the noise wrapper is ∇ of ±h chained through the squash: on the linear toy with the
    /// probit squash its expectation is ∇g (closed form), estimated here from many draws.
    @Test func noiseWrapperGradientEstimatesTheSmoothedGradient() throws {
        let toy = LinearToyDetector(scale: 1.5, bias: 0.2)
        let sigma = 0.25
        let noisy = GaussianNoiseDetector(toy, sigma: sigma, squash: Squash(kind: .probit), seed: 3)
        let x = [Float](repeating: 0.3, count: 48)
        let objective = TargetObjective(target: .imageTopK, labels: [0], mapCount: 1)
        var mean = [Double](repeating: 0, count: 48), d = [Float](repeating: 0, count: 48)
        let draws = 4000
        for _ in 0..<draws {
            _ = x.withUnsafeBufferPointer { xp in
                d.withUnsafeMutableBufferPointer { noisy.gradient(xp.baseAddress!, batch: 1, objective: objective, dImages: $0.baseAddress!) }
            }
            for i in 0..<48 { mean[i] += Double(d[i]) / Double(draws) }
        }
        // ∇g = φ(a/k)/k · w with a = w·x + b, k = √(1 + σ²‖w‖²).
        let k = (1 + sigma * sigma * toy.wNorm * toy.wNorm).squareRoot(), a = toy.score(x)
        let scale = exp(-(a / k) * (a / k) / 2) / (2 * Double.pi).squareRoot() / k
        for i in 0..<48 { #expect(abs(mean[i] - scale * Double(toy.w[i])) < 0.01, "\(i): \(mean[i]) vs \(scale * Double(toy.w[i]))") }
    }

    // MARK: - The job

    @Test func certifyJobWritesItsReportsFromTheCheckpoint() throws {
        let (_, _, checkpoint) = try EvaluationJobTests.trainedRun()
        let job = try CertifyJob(checkpoint: checkpoint, overrides: [
            "certify.sigmas=[0.1,0.3]", "certify.samples=40", "certify.n0=8", "certify.alpha=0.01",
            "certify.radii=[0.1,0.05]", "certify.batch_size=16"])
        #expect(job.config.certify.sigmas == [0.1, 0.3])
        let dir = TrainingTests.tempDir("certify-run")
        let result = try job.run(in: try RunDirectory(path: dir, command: "certify"), showProgress: false)
        let report = result.report
        #expect(report.images == 7 && report.normalImages == 3 && report.anomalousImages == 4)
        #expect(report.sigmas.map(\.sigma) == [0.1, 0.3])
        for s in report.sigmas {
            #expect(s.certified.map(\.radius) == [0, 0.05, 0.1])
            let v = s.certified.compactMap(\.imageAUROC)
            #expect(v.count == 3 && v[1] <= v[0] && v[2] <= v[1])
            #expect(s.clopperPearsonImages + s.empiricalBernsteinImages == 7)
            let p = s.certified.compactMap(\.pixelAUROC)
            #expect(p.count == 3 && p[1] <= p[0] && p[2] <= p[1], "\(p)")
            #expect(s.smoothedPixelAUROC != nil)
        }
        #expect(report.mapResolution == "2×2" && report.unsmoothedPixelAUROC != nil)
        #expect(result.cells.count == 2 && result.cells[0].count == 7 * 4 && result.cellLabels.count == 7 * 4)
        for name in [CertificationResult.metricsJSON, CertificationResult.metricsMarkdown, CertificationResult.curveSVG,
                     CertificationResult.imagesCSV] {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + name), "\(name)")
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/metrics.json"))) as! [String: Any]
        #expect(json["unsmoothed_image_auroc"] != nil && (json["sigmas"] as? [Any])?.count == 2)
        let csv = try String(contentsOfFile: dir + "/certify_images.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 1 + 2 * 7 && csv[0].hasSuffix("lower_0.1,upper_0.1"))
        #expect(report.table().contains("certified r=0") && report.table().contains("r=0.05")
                && report.table().contains("pixel 2×2"))
        // Reproducible: the same seed gives the same bounds.
        let again = try job.run(in: try RunDirectory(path: TrainingTests.tempDir("certify-run2"), command: "certify"),
                                showProgress: false)
        #expect(again.images.map { $0.map(\.smoothed) } == result.images.map { $0.map(\.smoothed) })
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch let e as PatchGuardError { return e.description } catch { return "\(error)" }
        return "no error"
    }

    @Test func badCertifySettingsAreErrorsNamingTheKey() throws {
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.sigmas=[0.1,0]"]) }
            .contains("certify.sigmas.1 must be a finite number > 0"))
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.samples=1"]) }.contains("certify.samples"))
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.alpha=1.5"]) }.contains("certify.alpha must be in (0, 1)"))
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.radii=[-1]"]) }.contains("certify.radii.0"))
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.squash=tanh"]) }.contains("squash"))
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.squash_fit_images=1"]) }
            .contains("certify.squash_fit_images must be ≥ 2"))
        #expect(message { _ = try JobConfig.load(path: nil, overrides: ["certify.squash_fit=normals"]) }
            .contains("squash_fit"))
        let path = TrainingTests.tempDir("certify-config") + "/job.json"
        try #"{"certify": {"sigma": [0.25]}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let m = message { _ = try JobConfig.load(path: path) }
        #expect(m.contains("unknown key 'certify.sigma'") && m.contains("did you mean 'certify.sigmas'") && m.contains(path), "\(m)")
    }
}
