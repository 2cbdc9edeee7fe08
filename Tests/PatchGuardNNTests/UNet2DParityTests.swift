import Foundation
import PatchGuardCore
@testable import PatchGuardNN
import Testing

/// Parity with diffusers: the fixture (Tools/make_unet_fixture.py) holds a tiny `diffusers.UNet2DModel`'s
/// parameters under diffusers' names, an input, two timesteps, its output and the gradients of L = Σ r·output
/// w.r.t. the input and every parameter, computed by PyTorch in float64 (the sinusoidal embedding too). Our Double
/// U-Net must match to 1e-10 relative, our Float U-Net to 3e-4; any mismatch fails the test. (Float: the attention
/// parameter gradients are sums over every pixel with cancellation, and their fp32 rounding depends on OpenBLAS's
/// kernels: under 1e-4 with the AVX2 "Haswell" kernels, 1.2e-4 with the AVX-512 "Cooperlake" ones on Zen 4.)
@Suite("diffusers parity")
struct UNet2DParityTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/unet_tiny.safetensors").path

    @Test func double() throws { try check(Double.self, rtol: 1e-10) }
    @Test func float() throws { try check(Float.self, rtol: 3e-4) }

    /// The fixture's own config (diffusers' keys, read by `UNet2DConfig`'s decoder).
    @Test func configFromMetadata() throws {
        let file = try SafeTensorsFile.load(path: Self.fixture)
        let cfg = try Self.config(file)
        #expect(cfg.blockOutChannels == [8, 12] && cfg.normNumGroups == 4 && cfg.attentionHeadDim == 4)
        #expect(cfg.flipSinToCos && cfg.freqShift == 0 && cfg.normEps == 1e-5)
        let unsupported = #"{"sample_size": 8, "resnet_time_scale_shift": "scale_shift"}"#
        #expect(throws: PatchGuardError.self) { try JSONDecoder().decode(UNet2DConfig.self, from: Data(unsupported.utf8)) }
    }

    static func config(_ file: SafeTensorsFile) throws -> UNet2DConfig {
        let json = try #require(file.metadata["unet_config"], "fixture has no unet_config metadata")
        return try JSONDecoder().decode(UNet2DConfig.self, from: Data(json.utf8))
    }

    func check<T: NNScalar>(_: T.Type, rtol: Double, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = try SafeTensorsFile.load(path: Self.fixture)
        let m = try UNet2D<T>(config: try Self.config(file), maxBatch: 2)
        let warnings = try m.loadWeights(from: file)
        #expect(warnings.allSatisfy { $0.contains("'ref.") }, "unexpected load warnings: \(warnings)")
        #expect(m.parameters.entries.count == file.names.filter { !$0.hasPrefix("ref.") }.count)
        func tensor(_ name: String) throws -> Tensor<T> {
            let info = try #require(file.info(name), "fixture lacks \(name)")
            let t = Tensor<T>(shape: info.shape)
            try file.copy(name, into: t.buffer)
            return t
        }
        var worstSeen = 0.0
        func compare(_ got: UnsafePointer<T>, _ name: String) throws {
            let want = try file.doubles(name)
            var scale = 0.0, worst = 0.0
            for v in want { scale = max(scale, abs(v)) }
            for i in want.indices {
                worst = max(worst, abs(Double(got[i]) - want[i]) / (abs(want[i]) + 1e-2 * scale + 1e-300))
            }
            worstSeen = max(worstSeen, worst)
            #expect(worst <= rtol, "\(T.self) \(name): worst relative error \(worst) > \(rtol)",
                    sourceLocation: sourceLocation)
        }
        let input = try tensor("ref.input"), r = try tensor("ref.r")
        let timesteps = try file.doubles("ref.timesteps")
        try m.forward(images: input.data, timesteps: timesteps)
        try compare(m.output.data, "ref.output")
        var loss = 0.0
        for i in 0..<r.count { loss += Double(r[i]) * Double(m.output.data[i]) }
        let refLoss = try file.doubles("ref.loss")[0]
        #expect(abs(loss - refLoss) <= rtol * abs(refLoss), "\(T.self) loss \(loss) vs \(refLoss)",
                sourceLocation: sourceLocation)
        m.gradients.zero()
        let dInput = Tensor<T>(shape: input.shape)
        try m.backward(dOutput: r.data, dImages: dInput.data)
        try compare(dInput.data, "ref.grad.input")
        var globalScale = 0.0
        for e in m.gradients.entries { globalScale = max(globalScale, try file.doubles("ref.grad." + e.name).map(abs).max()!) }
        for e in m.gradients.entries {
            if e.name.hasSuffix("to_k.bias") {
                // Softmax cancels a key bias (q·b shifts a query's scores equally): the true gradient is 0 and both
                // sides hold rounding noise, so compare both against the scale of all gradients instead.
                let want = try file.doubles("ref.grad." + e.name), g = m.gradients.pointer(e.name)
                let worst = (0..<e.count).map { max(abs(Double(g[$0])), abs(want[$0])) }.max()! / globalScale
                #expect(worst <= rtol, "\(T.self) \(e.name): |gradient| \(worst) of the gradient scale, expected 0",
                        sourceLocation: sourceLocation)
                continue
            }
            try compare(m.gradients.pointer(e.name), "ref.grad.\(e.name)")
        }
        print("diffusers parity \(T.self): worst relative error \(worstSeen)")
    }
}
