import Foundation
import PatchGuardCore
@testable import PatchGuardNN
import Testing
import GradCheckSupport

/// Parity with timm: the fixtures (Tools/make_vit_fixtures.py) hold a tiny timm ViT's parameters, an input, its
/// outputs and the gradients of a fixed loss, computed by PyTorch in float64. Our Double model must match to
/// 1e-11 relative (observed 1.4e-13), our Float model to 1e-4 (observed 6e-5); any mismatch fails the test.
@Suite("timm parity")
struct TimmParityTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The fixtures' configs (README "Fixture contents (version 1)").
    static func config(_ name: String) -> ViTConfig {
        name == "vit_tiny_plain"
            ? ViTConfig(imageSize: 28, patchSize: 7, dim: 24, depth: 2, heads: 3, mlpRatio: 2, numClasses: 5)
            : ViTConfig(imageSize: 28, patchSize: 7, dim: 24, depth: 2, heads: 3, mlpRatio: 2, layerScale: 1e-5,
                        numRegisters: 2, noEmbedClass: true, numClasses: 0)
    }

    @Test(arguments: ["vit_tiny_plain", "vit_tiny_dinov2"])
    func double(fixture: String) throws { try check(fixture, Double.self, rtol: 1e-11) }

    @Test(arguments: ["vit_tiny_plain", "vit_tiny_dinov2"])
    func float(fixture: String) throws { try check(fixture, Float.self, rtol: 1e-4) }

    func check<T: NNScalar>(_ fixture: String, _: T.Type, rtol: Double,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = try SafeTensorsFile.load(path: Self.fixtures.appendingPathComponent(fixture + ".safetensors").path)
        let cfg = Self.config(fixture)
        let m = try ViT<T>(config: cfg, maxBatch: 2)
        let warnings = try m.loadWeights(from: file)
        #expect(warnings.allSatisfy { $0.contains("'ref.") }, "unexpected load warnings: \(warnings)")
        func tensor(_ name: String) throws -> Tensor<T> {
            let info = try #require(file.info(name), "fixture lacks \(name)")
            let t = Tensor<T>(shape: info.shape)
            try file.copy(name, into: t.buffer)
            return t
        }
        func compare(_ got: UnsafePointer<T>, _ name: String) throws {
            let want = try file.doubles(name)
            var scale = 0.0, worst = 0.0
            for v in want { scale = max(scale, abs(v)) }
            for i in want.indices {
                worst = max(worst, abs(Double(got[i]) - want[i]) / (abs(want[i]) + 1e-2 * scale + 1e-300))
            }
            #expect(worst <= rtol, "\(fixture) \(T.self) \(name): worst relative error \(worst) > \(rtol)",
                    sourceLocation: sourceLocation)
        }
        let input = try tensor("ref.input")
        try m.forward(images: input, featureLayers: [1, 2], attentionLayers: [1, 2])
        for l in 1...2 {
            try compare(m.features(layer: l).data, "ref.features.\(l)")
            try compare(m.attention(layer: l).data, "ref.attn.\(l)")
        }
        let rF = try tensor("ref.r.features"), rF1 = try tensor("ref.r.features.1"), rA1 = try tensor("ref.r.attn.1")
        var loss = weightedSum(rF.data, m.features(layer: 2).data, count: rF.count)
            + weightedSum(rF1.data, m.features(layer: 1).data, count: rF1.count)
            + weightedSum(rA1.data, m.attention(layer: 1).data, count: rA1.count)
        var rLogits: Tensor<T>? = nil
        if cfg.numClasses > 0 {
            try compare(try #require(m.logits).data, "ref.logits")
            let r = try tensor("ref.r.logits")
            loss += weightedSum(r.data, m.logits!.data, count: r.count)
            rLogits = r
        }
        let refLoss = try file.doubles("ref.loss")[0]
        #expect(abs(loss - refLoss) <= rtol * abs(refLoss), "\(fixture) \(T.self) loss \(loss) vs \(refLoss)",
                sourceLocation: sourceLocation)

        m.gradients.zero()
        let dImage = Tensor<T>(shape: input.shape)
        try m.backward(dFeatures: [2: rF.data, 1: rF1.data], dAttention: [1: rA1.data], dLogits: rLogits?.data,
                       dImage: dImage.data)
        try compare(dImage.data, "ref.grad.input")
        for e in m.gradients.entries { try compare(m.gradients.pointer(e.name), "ref.grad.\(e.name)") }
    }

    func weightedSum<T: NNScalar>(_ r: UnsafePointer<T>, _ y: UnsafePointer<T>, count: Int) -> Double {
        var s = 0.0
        for i in 0..<count { s += Double(r[i]) * Double(y[i]) }
        return s
    }
}

/// Safetensors weights: round trip, errors naming the tensor, skipped tensors, pos_embed resampling.
@Suite("ViT weights")
struct ViTWeightsTests {
    @Test func roundTripAndErrors() throws {
        let cfg = ViTTests.tinyConfig(registers: 1, layerScale: true)
        let a = try ViT<Float>(config: cfg, maxBatch: 1, seed: 3)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vit-weights-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("w.safetensors").path
        try a.saveWeights(to: path)
        let b = try ViT<Float>(config: cfg, maxBatch: 1)
        #expect(try b.loadWeights(path: path).isEmpty)
        #expect(maxAbsDiff(a.parameters.storage.data, b.parameters.storage.data, count: a.parameters.totalCount) == 0)

        // A model with a head cannot load a file without one: the error names the tensor.
        var withHead = cfg; withHead.numClasses = 4
        let c = try ViT<Float>(config: withHead, maxBatch: 1)
        #expect { try c.loadWeights(path: path) } throws: { "\($0)".contains("'head.weight'") }
        // …while a headless model skips a head with a warning, and a misshapen tensor is an error naming it.
        let d = try ViT<Float>(config: withHead, maxBatch: 1, seed: 4)
        var w = SafeTensorsWriter()
        for e in d.parameters.entries {
            let shape = e.name == "blocks.1.mlp.fc1.bias" ? [e.count + 1] : e.shape
            w.add(e.name, shape: shape, floats: [Float](repeating: 0.5, count: shape.reduce(1, *)))
        }
        w.add("mask_token", shape: [1, 12], floats: [Float](repeating: 0, count: 12))
        let bad = dir.appendingPathComponent("bad.safetensors").path
        try w.write(to: bad)
        #expect { try d.loadWeights(path: bad) } throws: { "\($0)".contains("'blocks.1.mlp.fc1.bias'") }
        let headless = try ViT<Float>(config: cfg, maxBatch: 1)
        #expect { try headless.loadWeights(path: bad) } throws: { "\($0)".contains("'blocks.1.mlp.fc1.bias'") }
    }

    @Test func skippedTensorsAndResampledPosEmbed() throws {
        // A checkpoint at 12×12 px (grid 3×3) loaded into a 20×20 px model (grid 5×5), plus unused tensors.
        var small = ViTTests.tinyConfig(); small.imageSize = 12; small.numClasses = 2
        let src = try ViT<Double>(config: small, maxBatch: 1, seed: 7)
        let pos = src.parameters["pos_embed"].buffer
        for i in 0..<pos.count { pos[i] = Double(i) }
        var w = SafeTensorsWriter()
        for e in src.parameters.entries {
            w.add(e.name, shape: e.shape, values: UnsafeBufferPointer(src.parameters[e.name].buffer))
        }
        w.add("mask_token", shape: [1, 12], doubles: [Double](repeating: 0, count: 12))
        let file = try SafeTensorsFile.parse(bytes: w.encoded(), name: "ckpt")
        var big = small; big.imageSize = 20; big.numClasses = 0
        let dst = try ViT<Double>(config: big, maxBatch: 1)
        let warnings = try dst.loadWeights(from: file)
        #expect(warnings.contains { $0.contains("'mask_token'") })
        #expect(warnings.contains { $0.contains("'head.weight'") })
        #expect(warnings.contains { $0.contains("pos_embed resampled") })
        let out = dst.parameters["pos_embed"].buffer
        #expect(out.count == (1 + 25) * 12)
        // Class-token row kept; a linear ramp over the grid is reproduced exactly in the interior by bicubic.
        #expect(Array(out[0..<12]) == Array(pos[0..<12]))
    }

    /// Against `torch.nn.functional.interpolate(mode='bicubic', align_corners=False)` on a (3×3, C=2) grid → 5×5 and
    /// a (5×5, C=2) grid → 3×3; input g[i] = sin(0.7 i) + 0.1 i over the (H, W, C) flattening.
    @Test func bicubicMatchesTorch() {
        func grid(_ side: Int) -> [Double] { (0..<(side * side * 2)).map { sin(0.7 * Double($0)) + 0.1 * Double($0) } }
        let up = PosEmbedResample.resample(grid(3), channels: 2, prefix: 0, oldGrid: (3, 3), newGrid: (5, 5))
        let upRef: [Double] = [-0.09459911565482915, 0.809745847668327, 0.5596143968455076, 1.0643957153872683, 1.2830545013030945, 1.1868633314006678, 0.9839714339059475, 0.46268050223453827, 0.585364791681782, -0.15440601434248133, -0.3690052620043274, 0.12447806735199134, 0.0841661470915586, 0.5586754629650019, 0.7286990786378077, 1.0889566213298714, 1.0692515629358885, 1.0819532357647201, 1.209435696716997, 0.9629465454053411, -0.3138454493295491, -0.39758219788276594, -0.20789006124613724, 0.09852528245756417, 0.16873336212767842, 0.9168139004843497, 1.111246600608408, 1.7200299414644757, 1.7998589094315363, 2.2006182498826954, 1.1812298304419255, 0.8159939360133109, 0.9020572317613043, 0.7081568876784471, 0.6247797389173837, 0.7176095147214201, 0.8724730292339252, 1.2584605683343095, 1.1338259035851892, 1.6977670851344004, 2.38940331317718, 1.917788818505764, 1.870153327836797, 1.3039156590801575, 1.1165404715756317, 0.5918393126245522, 0.6686654793191755, 0.7455051169951659, 0.4642122576577146, 1.0230257276795194]
        let down = PosEmbedResample.resample(grid(5), channels: 2, prefix: 0, oldGrid: (5, 5), newGrid: (3, 3))
        let downRef: [Double] = [0.7932492758495812, 1.2312679080089488, 0.8023644457680453, 0.2472959887491689, 0.34260933873533683, 0.9407221169609669, 2.892176674006829, 2.644038563426165, 1.5124329664184974, 1.5243739945318424, 3.0407166406507375, 3.6012534960827645, 3.8438217314386303, 3.384834397153779, 3.4342828803958354, 4.1334589311054915, 5.3393847542292985, 5.233581918905449]
        #expect(up.count == upRef.count && zip(up, upRef).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(down.count == downRef.count && zip(down, downRef).allSatisfy { abs($0 - $1) < 1e-12 })
    }
}
