import PatchGuardCore
@testable import PatchGuardKernels
import Testing
import GradCheckSupport

// One table-driven op test (tinygrad `test/test_ops.py`, ggml `test-backend-ops`): every op of the `Kernels`
// protocol runs forward and backward on every backend and is compared with the reference backend; the Double
// backends' backward is also checked against central differences (tiny irregular shapes B = 2, N = 5, C = 12,
// NH = 3, P = 4; loss L = Σ r·y with fixed random r; gradient buffers pre-filled with random values, so the check
// proves that backward *adds*). A new backend is one more entry in `doubleBackends` / `floatBackends`.

let doubleBackends: [(String, any Kernels<Double>)] = [("cpu", Backend.cpu.kernels(Double.self)),
                                                       ("reference", Backend.reference.kernels(Double.self))]
let floatBackends: [(String, any Kernels<Float>)] = [("cpu", Backend.cpu.kernels(Float.self)),
                                                     ("reference", Backend.reference.kernels(Float.self))]

/// The buffers of one op run: differentiable inputs (and parameters), constant inputs (masks, labels), outputs that
/// enter the loss, and caches/scratch; in backward, `dOuts` (the loss's r) and `dIns` (added into).
final class OpBuffers<T: NNScalar>: @unchecked Sendable {
    let ins: [Tensor<T>], consts: [Tensor<T>], outs: [Tensor<T>], cache: [Tensor<T>]
    var dOuts: [Tensor<T>] = [], dIns: [Tensor<T>] = []
    init(ins: [Tensor<T>], consts: [Tensor<T>], outs: [[Int]], cache: [[Int]]) {
        self.ins = ins; self.consts = consts
        self.outs = outs.map { Tensor(shape: $0) }; self.cache = cache.map { Tensor(shape: $0) }
    }
    func i(_ n: Int) -> UnsafeMutablePointer<T> { ins[n].data }
    func c(_ n: Int) -> UnsafeMutablePointer<T> { consts[n].data }
    func o(_ n: Int) -> UnsafeMutablePointer<T> { outs[n].data }
    func s(_ n: Int) -> UnsafeMutablePointer<T> { cache[n].data }
    func dO(_ n: Int) -> UnsafeMutablePointer<T> { dOuts[n].data }
    func dI(_ n: Int) -> UnsafeMutablePointer<T> { dIns[n].data }
}

/// One row of the table.
struct OpCase: CustomTestStringConvertible, Sendable {
    var name: String
    var inputs: [[Int]]                       // differentiable, filled N(mean, std)
    var mean: [Double] = [], std: [Double] = []  // per input (default 0, 1)
    var uniformInputs: (lo: Double, hi: Double)? = nil
    var consts: [[Int]] = []
    var makeConsts: @Sendable (inout SeededRNG, [Tensor<Double>]) -> Void = { _, _ in }
    var outs: [[Int]]
    var cache: [[Int]] = []
    /// Loss ops return their value (the loss weights it with a random scalar too).
    var hasScalar = false
    /// Inputs the op does not read in this configuration (no gradient to check; backward must add nothing).
    var unused: Set<Int> = []
    var forward: @Sendable (any Kernels<Double>, OpBuffers<Double>) -> Double
    var forwardF: @Sendable (any Kernels<Float>, OpBuffers<Float>) -> Double
    var backward: @Sendable (any Kernels<Double>, OpBuffers<Double>, Double) -> Void
    var backwardF: @Sendable (any Kernels<Float>, OpBuffers<Float>, Double) -> Void
    var testDescription: String { name }
}

/// A table row from an op body written once, generically (``GenericOp``), for both scalars.
func op(_ name: String, inputs: [[Int]], mean: [Double] = [], std: [Double] = [],
        uniform: (lo: Double, hi: Double)? = nil, consts: [[Int]] = [],
        makeConsts: @escaping @Sendable (inout SeededRNG, [Tensor<Double>]) -> Void = { _, _ in },
        outs: [[Int]], cache: [[Int]] = [], scalar: Bool = false, unused: Set<Int> = [], _ body: Fn) -> OpCase {
    OpCase(name: name, inputs: inputs, mean: mean, std: std, uniformInputs: uniform, consts: consts,
           makeConsts: makeConsts, outs: outs, cache: cache, hasScalar: scalar, unused: unused,
           forward: body.f, forwardF: body.ff, backward: body.b, backwardF: body.bf)
}

/// An op body instantiated for Double and Float backends.
struct Fn: Sendable {
    let f: @Sendable (any Kernels<Double>, OpBuffers<Double>) -> Double
    let b: @Sendable (any Kernels<Double>, OpBuffers<Double>, Double) -> Void
    let ff: @Sendable (any Kernels<Float>, OpBuffers<Float>) -> Double
    let bf: @Sendable (any Kernels<Float>, OpBuffers<Float>, Double) -> Void
}

/// Shapes of the table: B = 2, N = 5, C = 12, NH = 3, P = 4 (no squares, no powers of two where avoidable).
let B = 2, N = 5, C = 12, NH = 3, rows = B * N

/// The table. Each body is a generic function (see `Generic…` below) instantiated for both scalars.
let opTable: [OpCase] = [
    op("linear", inputs: [[rows, C], [7, C], [7]], outs: [[rows, 7]], G.linear),
    op("layerNorm", inputs: [[rows, C], [C], [C]], mean: [0.5, 1, 0], std: [2, 1, 1], outs: [[rows, C]],
       cache: [[rows], [rows]], G.layerNorm),
    op("layerNormStrided", inputs: [[B, N, C], [C], [C]], mean: [0.5, 1, 0], std: [2, 1, 1], outs: [[B, N - 1, C]],
       cache: [[B, N - 1], [B, N - 1]], G.layerNormStrided),
    op("attention", inputs: [[B, N, 3 * C]], outs: [[B, N, C], [B, NH, N, N]], cache: [[B, NH, N, N]], G.attention),
    op("attentionDropout", inputs: [[B, N, 3 * C]], consts: [[B, NH, N, N]],
       makeConsts: { rng, c in Dropout.drawMask(c[0].data, count: c[0].count, p: 0.4, using: &rng) },
       outs: [[B, N, C], [B, NH, N, N]], cache: [[B, NH, N, N], [B, NH, N, N]], G.attentionDropout),
    op("softmax", inputs: [[B * NH, N]], std: [2], outs: [[B * NH, N]], G.softmax),
    op("gelu", inputs: [[rows * C]], std: [2], outs: [[rows * C]], G.gelu),
    op("residual", inputs: [[rows, C], [rows, C]], outs: [[rows, C]], G.residual),
    op("residualLayerScale", inputs: [[rows, C], [rows, C], [C]], outs: [[rows, C]], G.residualLayerScale),
    op("patchEmbed", inputs: [[B, 3, 8, 12], [C, 3, 4, 4], [C]], outs: [[B, 6, C]], cache: [[B, 6, 48], [B, 6, 48]],
       G.patchEmbed),
    op("tokenEmbed", inputs: [[B, 4, C], [C], [1, C], [5, C]], outs: [[B, 5, C]], unused: [2],
       G.tokenEmbed(registers: 0, noEmbedClass: false)),
    op("tokenEmbedRegisters", inputs: [[B, 4, C], [C], [2, C], [7, C]], outs: [[B, 7, C]],
       G.tokenEmbed(registers: 2, noEmbedClass: false)),
    op("tokenEmbedNoEmbedClass", inputs: [[B, 4, C], [C], [2, C], [4, C]], outs: [[B, 7, C]],
       G.tokenEmbed(registers: 2, noEmbedClass: true)),
    op("inputNormalization", inputs: [[B, 3, 35]], uniform: (0, 1), outs: [[B, 3, 35]], G.inputNormalization),
    op("dropout", inputs: [[rows * C]], consts: [[rows * C]],
       makeConsts: { rng, c in Dropout.drawMask(c[0].data, count: c[0].count, p: 0.3, using: &rng) },
       outs: [[rows * C]], G.dropout),
    op("broadcastAdd+batchSumInto", inputs: [[B, 3 * C], [3 * C]], outs: [[B, 3 * C]], G.broadcastAdd),
    op("patchBCE", inputs: [[3, 4]], std: [2], consts: [[3, 4]],
       makeConsts: { rng, c in rng.fillUniform(c[0].buffer, lo: 0, hi: 1) }, outs: [], scalar: true, G.patchBCE),
    op("attentionKL", inputs: [[B, NH, N, N]], uniform: (0.05, 1), outs: [], scalar: true, G.attentionKL),
] + convOpTable

/// The op bodies, generic over the scalar.
enum G {}

/// Writes each op body once, generically, and wraps it for both scalars.
protocol GenericOp: Sendable {
    func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double
    func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double)
}
extension GenericOp {
    var fn: Fn { Fn(f: { fwd($0, $1) }, b: { bwd($0, $1, $2) }, ff: { fwd($0, $1) }, bf: { bwd($0, $1, $2) }) }
}

extension G {
    struct Linear_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.linearForward(b.o(0), b.i(0), b.i(1), b.i(2), rows: rows, inFeatures: C, outFeatures: 7); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.linearBackward(b.dI(0), b.dI(1), b.dI(2), b.dO(0), b.i(0), b.i(1), rows: rows, inFeatures: C, outFeatures: 7)
        }
    }
    static var linear: Fn { Linear_().fn }

    struct LayerNorm_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.layerNormForward(b.o(0), b.s(0), b.s(1), b.i(0), b.i(1), b.i(2), rows: rows, channels: C, eps: T(1e-6))
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.layerNormBackward(b.dI(0), b.dI(1), b.dI(2), b.dO(0), b.i(0), b.i(1), b.s(0), b.s(1), rows: rows, channels: C)
        }
    }
    static var layerNorm: Fn { LayerNorm_().fn }

    /// The patch rows (tokens 1..<N) of each image, read with the image stride N·C.
    struct LayerNormStrided_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.layerNormStridedForward(b.o(0), b.s(0), b.s(1), b.i(0) + C, b.i(1), b.i(2), batch: B, rows: N - 1,
                                      inputBatchStride: N * C, channels: C, eps: T(1e-6))
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.layerNormStridedBackward(b.dI(0) + C, b.dI(1), b.dI(2), b.dO(0), b.i(0) + C, b.i(1), b.s(0), b.s(1),
                                       batch: B, rows: N - 1, inputBatchStride: N * C, channels: C)
        }
    }
    static var layerNormStrided: Fn { LayerNormStrided_().fn }

    /// Output and probabilities both enter the loss (the dProbs path).
    struct Attention_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.attentionForward(b.o(0), b.o(1), b.i(0), batch: B, tokens: N, channels: C, heads: NH, dropMask: nil,
                               dropped: nil)
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.attentionBackward(b.dI(0), b.s(0), b.dO(0), b.dO(1), b.i(0), b.o(1), batch: B, tokens: N, channels: C,
                                heads: NH, dropMask: nil, dropped: nil)
        }
    }
    static var attention: Fn { Attention_().fn }

    struct AttentionDropout_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.attentionForward(b.o(0), b.o(1), b.i(0), batch: B, tokens: N, channels: C, heads: NH, dropMask: b.c(0),
                               dropped: b.s(1))
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.attentionBackward(b.dI(0), b.s(0), b.dO(0), b.dO(1), b.i(0), b.o(1), batch: B, tokens: N, channels: C,
                                heads: NH, dropMask: b.c(0), dropped: b.s(1))
        }
    }
    static var attentionDropout: Fn { AttentionDropout_().fn }

    struct Softmax_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.softmaxForward(b.o(0), b.i(0), rows: B * NH, length: N); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.softmaxBackward(b.dI(0), b.dO(0), b.o(0), rows: B * NH, length: N)
        }
    }
    static var softmax: Fn { Softmax_().fn }

    struct GELU_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.geluForward(b.o(0), b.i(0), count: rows * C); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.geluBackward(b.dI(0), b.dO(0), b.i(0), count: rows * C)
        }
    }
    static var gelu: Fn { GELU_().fn }

    struct Residual_: GenericOp {
        let gamma: Bool
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.residualForward(b.o(0), b.i(0), b.i(1), gamma ? b.i(2) : nil, rows: rows, channels: C); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.residualBackward(b.dI(0), b.dI(1), gamma ? b.dI(2) : nil, b.dO(0), b.i(1), gamma ? b.i(2) : nil,
                               rows: rows, channels: C)
        }
    }
    static var residual: Fn { Residual_(gamma: false).fn }
    static var residualLayerScale: Fn { Residual_(gamma: true).fn }

    struct PatchEmbed_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.patchEmbedForward(b.o(0), b.s(0), b.i(0), b.i(1), b.i(2), batch: B, inChannels: 3, height: 8, width: 12,
                                patch: 4, channels: C)
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.patchEmbedBackward(b.dI(0), b.dI(1), b.dI(2), b.s(1), b.dO(0), b.s(0), b.i(1), batch: B, inChannels: 3,
                                 height: 8, width: 12, patch: 4, channels: C)
        }
    }
    static var patchEmbed: Fn { PatchEmbed_().fn }

    struct TokenEmbed_: GenericOp {
        let registers: Int, noEmbedClass: Bool
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.tokenEmbedForward(b.o(0), b.i(0), b.i(1), registers > 0 ? b.i(2) : nil, b.i(3), batch: B, patches: 4,
                                registers: registers, channels: C, noEmbedClass: noEmbedClass)
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.tokenEmbedBackward(b.dI(0), b.dI(1), registers > 0 ? b.dI(2) : nil, b.dI(3), b.dO(0), batch: B,
                                 patches: 4, registers: registers, channels: C, noEmbedClass: noEmbedClass)
        }
    }
    static func tokenEmbed(registers: Int, noEmbedClass: Bool) -> Fn {
        TokenEmbed_(registers: registers, noEmbedClass: noEmbedClass).fn
    }

    struct InputNormalization_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.inputNormalizationForward(b.o(0), b.i(0), batch: B, pixels: 35, mean: InputNormalization.imagenetMean,
                                        std: InputNormalization.imagenetStd)
            return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.inputNormalizationBackward(b.dI(0), b.dO(0), batch: B, pixels: 35, std: InputNormalization.imagenetStd)
        }
    }
    static var inputNormalization: Fn { InputNormalization_().fn }

    struct Dropout_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.dropoutForward(b.o(0), b.c(0), b.i(0), count: rows * C); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.dropoutBackward(b.dI(0), b.dO(0), b.c(0), count: rows * C)
        }
    }
    static var dropout: Fn { Dropout_().fn }

    /// out = x + y (y broadcast over the batch); backward dX += dOut (addInto), dY += Σ_b dOut (batchSumInto).
    struct BroadcastAdd_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.broadcastAdd(b.o(0), b.i(0), b.i(1), batch: B, count: 3 * C); return 0
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.addInto(b.dI(0), b.dO(0), count: B * 3 * C)
            k.batchSumInto(b.dI(1), b.dO(0), batch: B, count: 3 * C)
        }
    }
    static var broadcastAdd: Fn { BroadcastAdd_().fn }

    struct PatchBCE_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.patchBCEForward(b.i(0), b.c(0), batch: 3, patches: 4)
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.patchBCEBackward(b.dI(0), b.i(0), b.c(0), batch: 3, patches: 4, weight: d)
        }
    }
    static var patchBCE: Fn { PatchBCE_().fn }

    struct AttentionKL_: GenericOp {
        func fwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>) -> Double {
            k.attentionKLForward(b.i(0), batch: B, heads: NH, tokens: N, prefix: 1)
        }
        func bwd<T: NNScalar>(_ k: any Kernels<T>, _ b: OpBuffers<T>, _ d: Double) {
            k.attentionKLBackward(b.dI(0), b.i(0), batch: B, heads: NH, tokens: N, prefix: 1, weight: d)
        }
    }
    static var attentionKL: Fn { AttentionKL_().fn }
}

/// Fixed random data of one case: inputs, constants, the loss weights r (per output) and rScalar, gradient priors.
struct CaseData {
    let inputs: [Tensor<Double>], consts: [Tensor<Double>], r: [Tensor<Double>], rScalar: Double
    let priors: [Tensor<Double>]
    init(_ c: OpCase, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        inputs = c.inputs.enumerated().map { j, shape in
            if let u = c.uniformInputs { return uniformTensor(shape, &rng, lo: u.lo, hi: u.hi) }
            return randomTensor(shape, &rng, std: j < c.std.count ? c.std[j] : 1, mean: j < c.mean.count ? c.mean[j] : 0)
        }
        consts = c.consts.map { Tensor<Double>(shape: $0) }
        c.makeConsts(&rng, consts)
        r = c.outs.map { randomTensor($0, &rng) }
        rScalar = 0.5 + rng.uniform()
        priors = c.inputs.map { randomTensor($0, &rng) }
    }
}

/// One forward + backward on a backend: outputs, the scalar (loss ops) and what backward added per input.
func runCase<T: NNScalar>(_ c: OpCase, _ d: CaseData, forward: (OpBuffers<T>) -> Double,
                          backward: (OpBuffers<T>, Double) -> Void) -> (outs: [Tensor<Double>], scalar: Double, added: [Tensor<Double>]) {
    let b = OpBuffers<T>(ins: d.inputs.map { $0.converted(to: T.self) }, consts: d.consts.map { $0.converted(to: T.self) },
                         outs: c.outs, cache: c.cache)
    let scalar = forward(b)
    b.dOuts = d.r.map { $0.converted(to: T.self) }
    b.dIns = d.priors.map { $0.converted(to: T.self) }
    backward(b, d.rScalar)
    let added = zip(b.dIns, d.priors).map { g, p -> Tensor<Double> in
        let t = g.converted(to: Double.self)
        for i in 0..<t.count { t[i] -= p[i] }
        return t
    }
    return (b.outs.map { $0.converted(to: Double.self) }, scalar, added)
}

/// max |a − b| / max(1, max |b|).
func relativeError(_ a: Tensor<Double>, _ b: Tensor<Double>) -> Double {
    var scale = 1.0
    for i in 0..<b.count { scale = max(scale, abs(b[i])) }
    return maxAbsDiff(a.data, b.data, count: a.count) / scale
}

@Suite("Kernel ops, every backend against the reference")
struct KernelOpsTests {
    @Test(arguments: opTable.indices) func op(_ index: Int) {
        let c = opTable[index]
        let data = CaseData(c, seed: 100 + UInt64(index))
        let refK = Backend.reference.kernels(Double.self)
        let ref = runCase(c, data, forward: { c.forward(refK, $0) }, backward: { c.backward(refK, $0, $1) })

        for (name, k) in doubleBackends {
            let got = runCase(c, data, forward: { c.forward(k, $0) }, backward: { c.backward(k, $0, $1) })
            for (j, (o, r)) in zip(got.outs, ref.outs).enumerated() {
                #expect(relativeError(o, r) < 1e-12, "\(c.name) on \(name): output \(j) differs from the reference")
            }
            #expect(abs(got.scalar - ref.scalar) <= 1e-12 * max(1, abs(ref.scalar)), "\(c.name) on \(name): loss value")
            for (j, (g, r)) in zip(got.added, ref.added).enumerated() {
                #expect(relativeError(g, r) < 1e-11, "\(c.name) on \(name): gradient of input \(j) differs from the reference")
            }
            // Central differences on this backend's own forward; the backward added exactly the gradient.
            let b = OpBuffers<Double>(ins: data.inputs.map { $0.copy() }, consts: data.consts, outs: c.outs, cache: c.cache)
            func loss() -> Double {
                let s = c.forward(k, b)
                var total = c.hasScalar ? data.rScalar * s : 0
                for (o, r) in zip(b.outs, data.r) { total += weightedSum(r, o) }
                return total
            }
            for j in c.inputs.indices where c.unused.contains(j) {
                #expect(got.added[j].array.allSatisfy { $0 == 0 }, "\(c.name) on \(name): unused input \(j) got a gradient")
            }
            for j in c.inputs.indices where !c.unused.contains(j) {
                expectGradient("\(c.name) on \(name): input \(j)", of: b.ins[j], analytic: got.added[j], loss: loss)
            }
        }
        // Float backends against the Double reference on the same inputs.
        for (name, k) in floatBackends {
            let got = runCase(c, data, forward: { c.forwardF(k, $0) }, backward: { c.backwardF(k, $0, $1) })
            for (j, (o, r)) in zip(got.outs, ref.outs).enumerated() {
                #expect(relativeError(o, r) < 1e-5, "\(c.name) on \(name) (Float): output \(j)")
            }
            #expect(abs(got.scalar - ref.scalar) <= 1e-5 * max(1, abs(ref.scalar)), "\(c.name) on \(name) (Float): loss")
            for (j, (g, r)) in zip(got.added, ref.added).enumerated() {
                #expect(relativeError(g, r) < 1e-4, "\(c.name) on \(name) (Float): gradient of input \(j)")
            }
        }
    }

    /// Buffer utilities and the AdamW update (no gradients): every backend agrees with the reference.
    @Test func buffersAndAdamW() {
        var rng = SeededRNG(seed: 7)
        let n = 3 * 47
        let src = randomTensor([n], &rng), dst0 = randomTensor([n], &rng)
        let params = randomTensor([n], &rng), grads = randomTensor([n], &rng)
        let m0 = randomTensor([n], &rng, std: 0.1), v0 = uniformTensor([n], &rng, lo: 0, hi: 0.1)
        func run(_ k: any Kernels<Double>) -> [Tensor<Double>] {
            let z = dst0.copy(); k.zero(z.data, count: n)
            let f = dst0.copy(); k.fill(f.data, value: 0.25, count: n)
            let cp = dst0.copy(); k.copy(cp.data, src.data, count: n)
            let add = dst0.copy(); k.addInto(add.data, src.data, count: n)
            let c2 = dst0.copy(); k.copy2D(c2.data + 1, dstStride: 47, src.data + 2, srcStride: 47, rows: 3, columns: 40)
            let p = params.copy(), m = m0.copy(), v = v0.copy()
            for step in 1...3 {
                k.adamWUpdate(p.data, m.data, v.data, grads.data, count: n, lr: 1e-2, beta1: 0.9, beta2: 0.999,
                              eps: 1e-8, weightDecay: 0.05, step: step)
            }
            return [z, f, cp, add, c2, p, m, v]
        }
        let ref = run(Backend.reference.kernels(Double.self))
        #expect(ref[0].array.allSatisfy { $0 == 0 } && ref[1].array.allSatisfy { $0 == 0.25 })
        #expect(ref[2].array == src.array)
        #expect(ref[4][0] == dst0[0] && ref[4][1] == src[2] && ref[4][47 + 40] == src[47 + 41] && ref[4][47 + 41] == dst0[47 + 41])
        for (name, k) in doubleBackends {
            for (j, (a, r)) in zip(run(k), ref).enumerated() {
                #expect(relativeError(a, r) < 1e-13, "buffer/AdamW result \(j) on \(name)")
            }
        }
        // One AdamW step by hand: m = 0.1g (m0 = 0), v = 0.001g², m̂ = g, v̂ = g², θ ← θ(1 − lr·wd) − lr·g/(|g| + ε).
        let k = Backend.reference.kernels(Double.self)
        let p = params.copy(), m = Tensor<Double>(shape: [n]), v = Tensor<Double>(shape: [n])
        k.adamWUpdate(p.data, m.data, v.data, grads.data, count: n, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8,
                      weightDecay: 0.05, step: 1)
        let expected = params[5] * (1 - 1e-2 * 0.05) - 1e-2 * grads[5] / (abs(grads[5]) + 1e-8)
        #expect(abs(p[5] - expected) < 1e-12)
    }
}
