import Foundation
import PatchGuardCore
@testable import PatchGuardNN
import Testing
import GradCheckSupport

/// End-to-end checks of the U-Net: Double central differences of every parameter and the input through
/// `L = Σ r·ε̂` on a tiny irregular model (6×6 → 3×3, channels 6 and 9, 3 groups, heads of 3 channels, both block
/// kinds, 1×1 shortcuts in every up resnet, mid attention); Float against Double; the
/// `computeParameterGradients: false` contract; the diffusers parameter names and shapes.
@Suite("UNet2D")
struct UNet2DTests {
    static func tinyConfig(layers: Int = 1, midAttention: Bool = true) -> UNet2DConfig {
        UNet2DConfig(sampleSize: 6, inChannels: 2, outChannels: 3, blockOutChannels: [6, 9], layersPerBlock: layers,
                     downBlockTypes: ["DownBlock2D", "AttnDownBlock2D"], upBlockTypes: ["AttnUpBlock2D", "UpBlock2D"],
                     attentionHeadDim: 3, normNumGroups: 3, addAttention: midAttention)
    }

    /// O(1) parameters (PyTorch's init keeps activations small and hides bugs); norm weights around 1.
    static func randomizeParameters<T: NNScalar>(_ m: UNet2D<T>, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for e in m.parameters.entries {
            let normWeight = e.name.contains("norm") && e.name.hasSuffix(".weight")
            rng.fillNormal(m.parameters[e.name].buffer, mean: normWeight ? 1 : 0, std: normWeight ? 0.2 : 0.3)
        }
    }

    @Test(arguments: [(1, true), (2, false)])
    func endToEndGradients(layers: Int, midAttention: Bool) throws {
        let cfg = Self.tinyConfig(layers: layers, midAttention: midAttention)
        let m = try UNet2D<Double>(config: cfg, maxBatch: 3)  // maxBatch > B: the prefix path
        Self.randomizeParameters(m, seed: 31)
        var rng = SeededRNG(seed: 32)
        let x = randomTensor([2, 2, 6, 6], &rng)
        let r = randomTensor([2, 3, 6, 6], &rng)
        let t: [Double] = [3, 517]
        func loss() -> Double {
            try! m.forward(images: x.data, timesteps: t)
            return weightedSum(r.data, m.output.data, count: r.count)
        }
        _ = loss()
        m.gradients.zero()
        let dX = AccumulatingGrad([2, 2, 6, 6], &rng)
        try m.backward(dOutput: r.data, dImages: dX.grad.data)
        for e in m.parameters.entries {
            if e.name.hasSuffix("to_k.bias") {
                // q·(k + b) shifts every score of a query by the same q·b: softmax cancels it, the gradient is 0.
                let g = m.gradients.pointer(e.name)
                #expect((0..<e.count).allSatisfy { abs(g[$0]) < 1e-12 }, "\(e.name): softmax-invariant, expected 0")
                continue
            }
            expectGradient(e.name, at: m.parameters.pointer(e.name), count: e.count,
                           analytic: m.gradients.pointer(e.name), loss: loss, step: 3e-5, maxSamples: 8)
        }
        expectGradient("dImages", of: x, analytic: dX.added, loss: loss, step: 3e-5)
    }

    @Test func floatMatchesDoubleAndInputOnlyBackward() throws {
        let cfg = Self.tinyConfig()
        let md = try UNet2D<Double>(config: cfg, maxBatch: 2), mf = try UNet2D<Float>(config: cfg, maxBatch: 2)
        Self.randomizeParameters(md, seed: 41)
        try mf.copyParameters(from: md)
        var rng = SeededRNG(seed: 42)
        let x = randomTensor([2, 2, 6, 6], &rng), r = randomTensor([2, 3, 6, 6], &rng)
        let t: [Double] = [999, 50]
        try md.forward(images: x.data, timesteps: t)
        let xf = x.converted(to: Float.self), rf = r.converted(to: Float.self)
        try mf.forward(images: xf.data, timesteps: t)
        let scale = (0..<r.count).reduce(0.0) { max($0, abs(md.output.data[$1])) }
        #expect(maxAbsDiff(mf.output.data, md.output.data, count: r.count) < 1e-4 * max(1, scale))
        md.gradients.zero(); mf.gradients.zero()
        let dXd = Tensor<Double>(shape: [2, 2, 6, 6]), dXf = Tensor<Float>(shape: [2, 2, 6, 6])
        try md.backward(dOutput: r.data, dImages: dXd.data)
        try mf.backward(dOutput: rf.data, dImages: dXf.data)
        var gScale = 1.0
        for i in 0..<md.gradients.storage.count { gScale = max(gScale, abs(md.gradients.storage[i])) }
        #expect(maxAbsDiff(mf.gradients.storage.data, md.gradients.storage.data, count: md.gradients.storage.count)
                < 1e-4 * gScale)
        #expect(maxAbsDiff(dXf.data, dXd.data, count: dXd.count) < 1e-4 * max(1, dXd.array.map(abs).max()!))

        // Input-only backward: the same dImages, no parameter gradient touched.
        md.gradients.zero()
        let dX2 = Tensor<Double>(shape: [2, 2, 6, 6])
        try md.backward(dOutput: r.data, computeParameterGradients: false, dImages: dX2.data)
        #expect(maxAbsDiff(dX2.data, dXd.data, count: dXd.count) < 1e-12)
        #expect(md.gradients.storage.array.allSatisfy { $0 == 0 })
    }

    @Test func diffusersNamesAndShapes() throws {
        let m = try UNet2D<Float>(config: Self.tinyConfig(), maxBatch: 1)
        let shapes = Dictionary(uniqueKeysWithValues: m.parameters.entries.map { ($0.name, $0.shape) })
        #expect(shapes["conv_in.weight"] == [6, 2, 3, 3])
        #expect(shapes["time_embedding.linear_1.weight"] == [24, 6])
        #expect(shapes["down_blocks.0.downsamplers.0.conv.weight"] == [6, 6, 3, 3])
        #expect(shapes["down_blocks.1.resnets.0.conv_shortcut.weight"] == [9, 6, 1, 1])
        #expect(shapes["down_blocks.1.attentions.0.to_out.0.weight"] == [9, 9])
        #expect(shapes["mid_block.attentions.0.group_norm.weight"] == [9])
        // skips [conv_in 6, down0.resnet0 6, down0.downsample 6, down1.attention0 9], popped from the end:
        // up 0 reads cat(h 9, skip 9), cat(9, 6); up 1 reads cat(9, 6), cat(6, 6).
        #expect(shapes["up_blocks.0.resnets.0.norm1.weight"] == [18])
        #expect(shapes["up_blocks.0.resnets.1.conv1.weight"] == [9, 15, 3, 3])
        #expect(shapes["up_blocks.0.upsamplers.0.conv.weight"] == [9, 9, 3, 3])
        #expect(shapes["up_blocks.1.resnets.0.conv_shortcut.weight"] == [6, 15, 1, 1])
        #expect(shapes["up_blocks.1.resnets.1.conv1.weight"] == [6, 12, 3, 3])
        #expect(shapes["conv_out.weight"] == [3, 6, 3, 3])
        #expect(shapes["up_blocks.1.upsamplers.0.conv.weight"] == nil)
        #expect(throws: PatchGuardError.self) {
            var bad = Self.tinyConfig(); bad.normNumGroups = 4
            try bad.validate()
        }
    }
}
