import PatchGuardCore
import PatchGuardNN

/// The diffusion detector (AdvRAD, "Robustness for free") as an ``AnomalyDetector``: one-shot denoising from t*
/// (``DiffusionReconstruction``), the multiscale reconstruction-error map at pixel resolution (S × S), and the
/// image score `max_p |map_p − μ_p|` with `μ` the mean map of the normal training images (``calibrate(normalImages:count:)``;
/// 0 before calibration). With `draws > 1` the map is the mean over that many noise draws.
///
/// Stochastic (`isStochastic`): every call draws fresh noise from the detector's own seeded generator, so attacks
/// use EOT. The gradient of the score flows through the arg-max pixel of the current (draw-averaged) map, with the
/// sign of `map − μ` there (a subgradient of the max of absolute values).
public final class DiffusionDetector: AnomalyDetector {
    public let core: DiffusionReconstruction<Float>
    public let draws: Int
    public var meanMap: [Float]
    public var rng: SeededRNG
    let side: Int, channels: Int
    let noise: Tensor<Float>, mapBuffer: Tensor<Float>, dImg: Tensor<Float>

    public init(core: DiffusionReconstruction<Float>, draws: Int = 1, seed: UInt64) throws {
        guard draws >= 1 else { throw PatchGuardError.invalidArgument("diffusion detector: draws must be ≥ 1") }
        self.core = core; self.draws = draws
        side = core.unet.config.sampleSize; channels = core.unet.config.inChannels
        meanMap = [Float](repeating: 0, count: side * side)
        rng = SeededRNG(seed: seed)
        let B = core.unet.maxBatch
        noise = Tensor(shape: [draws, B, channels, side, side])
        mapBuffer = Tensor(shape: [B, side, side])
        dImg = Tensor(shape: [B, channels, side, side])
    }

    public var imageSize: Int { side }
    public var mapHeight: Int { side }
    public var mapWidth: Int { side }
    public var isStochastic: Bool { true }

    /// `μ` = the mean draw-averaged map of `count` normal images (count, C, S, S).
    public func calibrate(normalImages: UnsafePointer<Float>, count: Int) {
        var sum = [Double](repeating: 0, count: side * side)
        let maps = rawMaps(normalImages, batch: count)
        for b in 0..<count { for p in 0..<(side * side) { sum[p] += Double(maps[b * side * side + p]) } }
        meanMap = sum.map { Float($0 / Double(max(count, 1))) }
    }

    /// Draw-averaged maps (B, S·S), in chunks of the U-Net's batch.
    func rawMaps(_ images: UnsafePointer<Float>, batch: Int) -> [Float] {
        let M = side * side, per = channels * M, chunk = core.unet.maxBatch
        var maps = [Float](repeating: 0, count: batch * M)
        var start = 0
        while start < batch {
            let B = min(chunk, batch - start)
            drawNoise(B)
            for k in 0..<draws {
                try! core.forward(mapBuffer.data, images: images + start * per, noise: noise.data + k * chunk * per, batch: B)
                for i in 0..<(B * M) { maps[start * M + i] += mapBuffer[i] / Float(draws) }
            }
            start += B
        }
        return maps
    }

    func drawNoise(_ B: Int) {
        let per = channels * side * side, chunk = core.unet.maxBatch
        for k in 0..<draws { rng.fillNormal(UnsafeMutableBufferPointer(start: noise.data + k * chunk * per, count: B * per), std: 1) }
    }

    func scores(_ maps: [Float], batch: Int) -> [Float] {
        let M = side * side
        return (0..<batch).map { b in (0..<M).reduce(Float(0)) { max($0, abs(maps[b * M + $1] - meanMap[$1])) } }
    }

    public func outputs(_ images: UnsafePointer<Float>, batch: Int) -> DetectorOutput {
        let maps = rawMaps(images, batch: batch)
        return DetectorOutput(maps: maps, scores: scores(maps, batch: batch))
    }

    /// The map gradient of `g`: `dMaps + dScores_b · sign(map − μ)` at image b's arg-max pixel.
    func dMaps(_ g: OutputGradient, maps: [Float], batch: Int) -> [Float] {
        let M = side * side
        var d = g.dMaps ?? [Float](repeating: 0, count: batch * M)
        if let ds = g.dScores {
            for b in 0..<batch where ds[b] != 0 {
                var best = 0, bestV = -Float.infinity
                for p in 0..<M {
                    let v = abs(maps[b * M + p] - meanMap[p])
                    if v > bestV { bestV = v; best = p }
                }
                d[b * M + best] += ds[b] * (maps[b * M + best] >= meanMap[best] ? 1 : -1)
            }
        }
        return d
    }

    public func gradient(_ images: UnsafePointer<Float>, batch: Int, objective: AttackObjective,
                         dImages: UnsafeMutablePointer<Float>) -> DetectorOutput {
        let M = side * side, per = channels * M, chunk = core.unet.maxBatch
        var maps = [Float](repeating: 0, count: batch * M)
        var noises: [[Float]] = []
        // Forward every chunk and draw (keeping the noise), then the objective's gradient at the averaged maps,
        // then per chunk and draw: forward again at the same noise and backward (activations are per chunk).
        var start = 0
        while start < batch {
            let B = min(chunk, batch - start)
            drawNoise(B)
            noises.append(Array(UnsafeBufferPointer(start: noise.data, count: draws * chunk * per)))
            for k in 0..<draws {
                try! core.forward(mapBuffer.data, images: images + start * per, noise: noise.data + k * chunk * per, batch: B)
                for i in 0..<(B * M) { maps[start * M + i] += mapBuffer[i] / Float(draws) }
            }
            start += B
        }
        let out = DetectorOutput(maps: maps, scores: scores(maps, batch: batch))
        let d = dMaps(objective.gradient(out, batch: batch), maps: maps, batch: batch)
        for i in 0..<(batch * per) { dImages[i] = 0 }
        start = 0
        var c = 0
        while start < batch {
            let B = min(chunk, batch - start)
            for k in 0..<draws {
                noises[c].withUnsafeBufferPointer { nz in
                    try! core.forward(mapBuffer.data, images: images + start * per, noise: nz.baseAddress! + k * chunk * per,
                                      batch: B)
                }
                let dk = d[(start * M)..<((start + B) * M)].map { $0 / Float(draws) }
                dk.withUnsafeBufferPointer { try! core.backward(dImages: dImg.data, dMaps: $0.baseAddress!) }
                for i in 0..<(B * per) { dImages[start * per + i] += dImg[i] }
            }
            start += B
            c += 1
        }
        return out
    }
}
