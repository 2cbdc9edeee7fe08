import PatchGuardCore
@testable import PatchGuardKernels
import Testing
import GradCheckSupport

// The U-Net's ops as rows of the one op table (`opTable` in KernelOpsTests.swift): every backend against the
// reference backend (direct loops: the conv there is a 7-deep loop nest, not im2col), central differences on the
// Double backends, Float against Double. Shapes are tiny and irregular: B = 2, CI = 4, OC = 6 channels, 3 groups,
// 5×7 images (no squares, odd sizes so stride 2 with padding 1 has a ragged last column).
let cB = 2, cCI = 4, cOC = 6, cG = 3, cH = 5, cW = 7, cHW = cH * cW

let convOpTable: [OpCase] = [
    op("conv2d 3×3 pad 1", inputs: [[cB, cCI, cH, cW], [cOC, cCI, 3, 3], [cOC]], outs: [[cB, cOC, cH, cW]],
       cache: [[cCI * 9, cHW], [cCI * 9, cHW]], G.Conv_(k: 3, s: 1, p: 1, bias: true).fn),
    op("conv2d 3×3 stride 2 pad 1 (Downsample2D)", inputs: [[cB, cCI, cH, cW], [cOC, cCI, 3, 3], [cOC]],
       outs: [[cB, cOC, 3, 4]], cache: [[cCI * 9, 12], [cCI * 9, 12]], G.Conv_(k: 3, s: 2, p: 1, bias: true).fn),
    op("conv2d 3×3 stride 2 no padding, no bias", inputs: [[cB, cCI, cH, cW], [cOC, cCI, 3, 3]],
       outs: [[cB, cOC, 2, 3]], cache: [[cCI * 9, 6], [cCI * 9, 6]], G.Conv_(k: 3, s: 2, p: 0, bias: false).fn),
    op("conv2d 1×1 (conv_shortcut)", inputs: [[cB, cCI, cH, cW], [cOC, cCI, 1, 1], [cOC]], outs: [[cB, cOC, cH, cW]],
       cache: [[cCI, cHW], [cCI, cHW]], G.Conv_(k: 1, s: 1, p: 0, bias: true).fn),
    op("groupNorm", inputs: [[cB, cOC, cHW], [cOC], [cOC]], mean: [0.5, 1, 0], std: [2, 1, 1], outs: [[cB, cOC, cHW]],
       cache: [[cB, cG], [cB, cG]], G.GroupNorm_().fn),
    op("silu", inputs: [[cB * cOC * cHW]], std: [3], outs: [[cB * cOC * cHW]], G.SiLU_().fn),
    op("upsampleNearest2x", inputs: [[cB * cG, cH, cW]], outs: [[cB * cG, 2 * cH, 2 * cW]], G.Upsample_().fn),
    op("transpose", inputs: [[cB, cOC, cHW]], outs: [[cB, cHW, cOC]], G.Transpose_().fn),
    op("channelAdd", inputs: [[cB, cOC, cHW], [cB, cOC]], outs: [[cB, cOC, cHW]], G.ChannelAdd_().fn),
    op("concat (copy2D + addInto2D)", inputs: [[cB, 2, cHW], [cB, cCI, cHW]], outs: [[cB, 2 + cCI, cHW]],
       G.Concat_().fn),
]

extension G {
    struct Conv_: GenericOp {
        let k: Int, s: Int, p: Int, bias: Bool
        func fwd<T: NNScalar>(_ kk: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            kk.conv2dForward(b.o(0), b.s(0), b.i(0), b.i(1), bias ? b.i(2) : nil, batch: cB, inChannels: cCI,
                             height: cH, width: cW, outChannels: cOC, kernel: k, stride: s, padding: p)
            return 0
        }
        func bwd<T: NNScalar>(_ kk: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            kk.conv2dBackward(b.dI(0), b.dI(1), bias ? b.dI(2) : nil, b.s(0), b.s(1), b.dO(0), b.i(0), b.i(1),
                              batch: cB, inChannels: cCI, height: cH, width: cW, outChannels: cOC, kernel: k,
                              stride: s, padding: p)
        }
    }

    struct GroupNorm_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.groupNormForward(b.o(0), b.s(0), b.s(1), b.i(0), b.i(1), b.i(2), batch: cB, channels: cOC, groups: cG,
                               pixels: cHW, eps: T(1e-5))
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.groupNormBackward(b.dI(0), b.dI(1), b.dI(2), b.dO(0), b.i(0), b.i(1), b.s(0), b.s(1), batch: cB,
                                channels: cOC, groups: cG, pixels: cHW)
        }
    }

    struct SiLU_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.siluForward(b.o(0), b.i(0), count: cB * cOC * cHW); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.siluBackward(b.dI(0), b.dO(0), b.i(0), count: cB * cOC * cHW)
        }
    }

    struct Upsample_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.upsampleNearest2xForward(b.o(0), b.i(0), planes: cB * cG, height: cH, width: cW); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.upsampleNearest2xBackward(b.dI(0), b.dO(0), planes: cB * cG, height: cH, width: cW)
        }
    }

    struct Transpose_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.transposeForward(b.o(0), b.i(0), batch: cB, rows: cOC, cols: cHW); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.transposeBackward(b.dI(0), b.dO(0), batch: cB, rows: cOC, cols: cHW)
        }
    }

    struct ChannelAdd_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.channelAddForward(b.o(0), b.i(0), b.i(1), batch: cB, channels: cOC, pixels: cHW); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.channelAddBackward(b.dI(0), b.dI(1), b.dO(0), batch: cB, channels: cOC, pixels: cHW)
        }
    }

    /// torch.cat([a, b], dim=1) on (B, C, HW) maps: two strided copies; backward two strided accumulates.
    struct Concat_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            let total = (2 + cCI) * cHW
            k.copy2D(b.o(0), dstStride: total, b.i(0), srcStride: 2 * cHW, rows: cB, columns: 2 * cHW)
            k.copy2D(b.o(0) + 2 * cHW, dstStride: total, b.i(1), srcStride: cCI * cHW, rows: cB, columns: cCI * cHW)
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            let total = (2 + cCI) * cHW
            k.addInto2D(b.dI(0), dstStride: 2 * cHW, b.dO(0), srcStride: total, rows: cB, columns: 2 * cHW)
            k.addInto2D(b.dI(1), dstStride: cCI * cHW, b.dO(0) + 2 * cHW, srcStride: total, rows: cB,
                        columns: cCI * cHW)
        }
    }
}

@Suite("Timestep embedding")
struct TimestepEmbeddingTests {
    /// diffusers `get_timestep_embedding(t, 7, flip_sin_to_cos=True, downscale_freq_shift=0)` by hand: half = 3,
    /// f = [1, 10000^(-1/3), 10000^(-2/3)], row = [cos(t·f), sin(t·f), 0].
    @Test func matchesTheFormulaOnEveryBackend() {
        let ts: [Double] = [0, 1, 50, 999]
        let D = 7
        var expected = [Double](repeating: 0, count: ts.count * D)
        for (b, t) in ts.enumerated() {
            for i in 0..<3 {
                let f = Double.pow(10000, -Double(i) / 3)
                expected[b * D + i] = (t * f).cosine
                expected[b * D + 3 + i] = (t * f).sine
            }
        }
        for (name, k) in doubleBackends {
            let out = Tensor<Double>(shape: [ts.count, D], repeating: 7)
            k.timestepEmbedding(out.data, timesteps: ts, dim: D, flipSinToCos: true, downscaleFreqShift: 0)
            for i in 0..<expected.count {
                #expect(abs(out[i] - expected[i]) < 1e-12, "\(name): element \(i) \(out[i]) vs \(expected[i])")
            }
        }
        // Without the flip, sin comes first; with shift 1 the exponent divides by half − 1.
        let k = Backend.cpu.kernels(Double.self)
        let plain = Tensor<Double>(shape: [1, 4])
        k.timestepEmbedding(plain.data, timesteps: [3], dim: 4, flipSinToCos: false, downscaleFreqShift: 1)
        #expect(abs(plain[0] - Double.sin(3)) < 1e-15 && abs(plain[1] - Double.sin(3 * 1e-4)) < 1e-15)
        #expect(abs(plain[2] - Double.cos(3)) < 1e-15 && abs(plain[3] - Double.cos(3 * 1e-4)) < 1e-15)
    }
}


private extension Double {
    var cosine: Double { Double.cos(self) }
    var sine: Double { Double.sin(self) }
}
