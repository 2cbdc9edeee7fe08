import Foundation
import Testing
import GradCheckSupport
import PatchGuardCore
import PatchGuardNN
@testable import PatchGuardMethod

/// The diffusion detector's maths in Double: the multiscale map's backward, the whole one-shot denoising chain
/// (U-Net included) at fixed noise w.r.t. the images, the DDPM loss w.r.t. the U-Net's parameters; the schedule
/// by its closed form; the Float detector through the protocol (score = max |map − μ|, its gradient, EOT noise).
@Suite("Diffusion detector")
struct DiffusionTests {
    /// 8×8, 3 channels, levels of 6 and 9 channels, 3 groups (4 → 2 levels, factors 1, 2, 4, 8 all apply).
    static func tinyUNet() -> UNet2DConfig {
        UNet2DConfig(sampleSize: 8, inChannels: 3, outChannels: 3, blockOutChannels: [6, 9], layersPerBlock: 1,
                     downBlockTypes: ["DownBlock2D", "AttnDownBlock2D"], upBlockTypes: ["AttnUpBlock2D", "UpBlock2D"],
                     attentionHeadDim: 3, normNumGroups: 3)
    }

    static func randomize<T: NNScalar>(_ m: UNet2D<T>, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for e in m.parameters.entries {
            let w = e.name.contains("norm") && e.name.hasSuffix(".weight")
            rng.fillNormal(m.parameters[e.name].buffer, mean: w ? 1 : 0, std: w ? 0.2 : 0.3)
        }
    }

    @Test func schedule() throws {
        let s = try DDPMSchedule()
        #expect(s.steps == 1000 && s.betas[0] == 1e-4 && abs(s.betas[999] - 0.02) < 1e-15)
        var a = 1.0
        for t in 0...50 { a *= 1 - (1e-4 + (0.02 - 1e-4) * Double(t) / 999) }
        #expect(abs(s.alphaBars[50] - a) < 1e-14)
        #expect(throws: PatchGuardError.self) { _ = try DDPMSchedule(steps: 10, betaStart: 0.1, betaEnd: 0.01) }
    }

    @Test func multiscaleMapGradient() throws {
        var rng = SeededRNG(seed: 51)
        let ms = try MultiscaleError(side: 8, channels: 3)
        let r = randomTensor([2, 3, 8, 8], &rng), w = randomTensor([2, 8, 8], &rng)
        let map = Tensor<Double>(shape: [2, 8, 8])
        func loss() -> Double { ms.forward(map.data, r.data, batch: 2); return weightedSum(w, map) }
        _ = loss()
        // A constant residual c gives e_s = c² at every scale and pixel: the interior of the map is c².
        let c = Tensor<Double>(shape: [1, 3, 8, 8], repeating: 0.5), m1 = Tensor<Double>(shape: [1, 8, 8])
        ms.forward(m1.data, c.data, batch: 1)
        #expect(abs(m1[3 * 8 + 4] - 0.25) < 1e-15 && abs(m1[0] - 0.25 * 4 / 9) < 1e-15)
        let dR = AccumulatingGrad([2, 3, 8, 8], &rng)
        ms.backward(dR.grad.data, w.data, r.data, batch: 2)
        expectGradient("dR", of: r, analytic: dR.added, loss: loss)
    }

    @Test func reconstructionChainGradient() throws {
        let unet = try UNet2D<Double>(config: Self.tinyUNet(), maxBatch: 2)
        Self.randomize(unet, seed: 52)
        let core = try DiffusionReconstruction(unet: unet, schedule: try DDPMSchedule(), tStar: 300)
        var rng = SeededRNG(seed: 53)
        let x = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1), eps = randomTensor([2, 3, 8, 8], &rng)
        let w = randomTensor([2, 8, 8], &rng), maps = Tensor<Double>(shape: [2, 8, 8])
        func loss() -> Double {
            try! core.forward(maps.data, images: x.data, noise: eps.data, batch: 2)
            return weightedSum(w, maps)
        }
        _ = loss()
        let dX = Tensor<Double>(shape: [2, 3, 8, 8])
        try core.backward(dImages: dX.data, dMaps: w.data)
        expectGradient("dImages through denoising + U-Net + multiscale map", of: x, analytic: dX, loss: loss,
                       step: 3e-5)
    }

    @Test func ddpmLossGradient() throws {
        let unet = try UNet2D<Double>(config: Self.tinyUNet(), maxBatch: 2)
        Self.randomize(unet, seed: 54)
        let schedule = try DDPMSchedule()
        var rng = SeededRNG(seed: 55)
        let x = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1), eps = randomTensor([2, 3, 8, 8], &rng)
        let scratch = Tensor<Double>(shape: [2, 3, 8, 8])
        let ts = [7, 640]
        func loss() -> Double {
            let nz = eps.copy()
            return try! DDPMLoss.step(unet, schedule: schedule, images: x.data, batch: 2, scratch: scratch.data,
                                      noise: nz.data, timesteps: ts)
        }
        unet.gradients.zero()
        let l0 = loss()
        #expect(l0 > 0)
        let g = Arena<Double>(sameLayoutAs: unet.gradients)
        g.storage.data.update(from: unet.gradients.storage.data, count: g.totalCount)
        for name in ["conv_out.weight", "conv_in.bias", "mid_block.attentions.0.to_v.weight",
                     "up_blocks.0.resnets.1.time_emb_proj.weight", "time_embedding.linear_1.weight"] {
            let e = unet.parameters.entry(name)
            expectGradient(name, at: unet.parameters.pointer(name), count: e.count, analytic: g.pointer(name),
                           loss: loss, step: 3e-5, maxSamples: 12)
        }
    }

    /// The Float detector through the protocol: μ calibration zeroes a normal image's expected score; the score
    /// is the max |map − μ|; its gradient matches a finite difference of the score at fixed noise (same seed).
    @Test func floatDetectorThroughTheProtocol() throws {
        let unet = try UNet2D<Float>(config: Self.tinyUNet(), maxBatch: 2)
        Self.randomize(unet, seed: 56)
        let core = try DiffusionReconstruction(unet: unet, schedule: try DDPMSchedule(), tStar: 50)
        let det = try DiffusionDetector(core: core, draws: 2, seed: 9)
        #expect(det.isStochastic && det.mapHeight == 8 && det.mapCount == 64)
        var rng = SeededRNG(seed: 57)
        let x = uniformTensor([3, 3, 8, 8], &rng, lo: 0.1, hi: 0.9).converted(to: Float.self)
        det.calibrate(normalImages: x.data, count: 3)
        let out = det.outputs(x.data, batch: 3)
        #expect(out.maps.count == 3 * 64 && out.scores.count == 3)
        for b in 0..<3 {
            let s = (0..<64).map { abs(out.maps[b * 64 + $0] - det.meanMap[$0]) }.max()!
            #expect(abs(out.scores[b] - s) < 1e-6)
        }
        // Two calls differ (fresh noise): EOT is needed.
        #expect(det.outputs(x.data, batch: 3).maps != out.maps)

        // dScore/dImages at fixed noise: replay the generator state.
        struct ScoreUp: AttackObjective {
            var needsOutput: Bool { true }
            func values(_ o: DetectorOutput, batch: Int) -> [Float] { o.scores }
            func gradient(_ o: DetectorOutput?, batch: Int) -> OutputGradient {
                OutputGradient(dScores: [Float](repeating: 1, count: batch))
            }
        }
        let state = det.rng
        let dX = Tensor<Float>(shape: [3, 3, 8, 8])
        let base = det.gradient(x.data, batch: 3, objective: ScoreUp(), dImages: dX.data)
        #expect(dX.array.contains { $0 != 0 })
        // Directional derivative along dX's direction, by central differences at the same noise.
        var norm: Float = 0
        for i in 0..<dX.count { norm += dX[i] * dX[i] }
        let h: Float = 1e-3 / norm.squareRoot()
        func total(_ sign: Float) -> Float {
            det.rng = state
            let xp = x.copy()
            for i in 0..<xp.count { xp[i] += sign * h * dX[i] }
            let scratch = Tensor<Float>(shape: [3, 3, 8, 8])
            let s = det.gradient(xp.data, batch: 3, objective: ScoreUp(), dImages: scratch.data).scores.reduce(0, +)
            withExtendedLifetime(scratch) {}
            return s
        }
        let numeric = (total(1) - total(-1)) / (2 * h)
        #expect(abs(numeric - norm) < 0.05 * norm, "directional derivative \(numeric) vs ‖g‖² \(norm)")
        _ = base
    }
}
