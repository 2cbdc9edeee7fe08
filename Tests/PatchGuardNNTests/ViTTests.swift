import Foundation
import PatchGuardCore
@testable import PatchGuardNN
import Testing
import GradCheckSupport

/// End-to-end checks of the ViT: Double gradient checks of every parameter and the image through a loss that
/// reads two layers' features, a block's attention maps, a raw block output and the head; Float vs Double; the
/// `computeParameterGradients: false` contract; Grad-CAM early stop.
@Suite("ViT")
struct ViTTests {
    /// B = 2, 8×8 images, P = 4 → Np = 4, C = 12, NH = 3, MLP 18, 2 blocks.
    static func tinyConfig(registers: Int = 0, layerScale: Bool = false, head: Bool = true) -> ViTConfig {
        ViTConfig(imageSize: 8, patchSize: 4, dim: 12, depth: 2, heads: 3, mlpRatio: 1.5,
                  layerScale: layerScale ? 0.5 : 0, numRegisters: registers, noEmbedClass: registers > 0,
                  numClasses: head ? 3 : 0)
    }

    /// Parameters with O(1) spread (timm's σ = 0.02 init makes attention uniform and hides bugs).
    static func randomizeParameters<T: NNScalar>(_ m: ViT<T>, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for e in m.parameters.entries {
            let isNormWeight = e.name.hasSuffix("norm1.weight") || e.name.hasSuffix("norm2.weight") || e.name == "norm.weight"
            rng.fillNormal(m.parameters[e.name].buffer, mean: isNormWeight ? 1 : 0, std: isNormWeight ? 0.2 : 0.4)
        }
    }

    struct Loss {
        let rF2, rF1, rA1, rB1: Tensor<Double>
        let rLogits: Tensor<Double>?
        init(_ c: ViTConfig, batch B: Int, seed: UInt64) {
            var rng = SeededRNG(seed: seed)
            rF2 = randomTensor([B, c.numPatches, c.dim], &rng)
            rF1 = randomTensor([B, c.numPatches, c.dim], &rng)
            rA1 = randomTensor([B, c.heads, c.numTokens, c.numTokens], &rng)
            rB1 = randomTensor([B, c.numTokens, c.dim], &rng)
            rLogits = c.numClasses > 0 ? randomTensor([B, c.numClasses], &rng) : nil
        }
        /// L = Σ r·features.2 + Σ r·features.1 + Σ r·attn.1 + Σ r·blockOutput.1 (+ Σ r·logits).
        func value(_ m: ViT<Double>, _ image: Tensor<Double>) -> Double {
            try! m.forward(images: image, featureLayers: [1, 2], attentionLayers: [1])
            var l = weightedSum(rF2.data, m.features(layer: 2).data, count: rF2.count)
                + weightedSum(rF1.data, m.features(layer: 1).data, count: rF1.count)
                + weightedSum(rA1.data, m.attention(layer: 1).data, count: rA1.count)
                + weightedSum(rB1.data, m.blockOutput(layer: 1).data, count: rB1.count)
            if let rLogits, let logits = m.logits { l += weightedSum(rLogits.data, logits.data, count: rLogits.count) }
            return l
        }
        func backward<T: NNScalar>(_ m: ViT<T>, params: Bool, dImage: UnsafeMutablePointer<T>?) throws {
            let c = { (t: Tensor<Double>) in t.converted(to: T.self) }
            let f2 = c(rF2), f1 = c(rF1), a1 = c(rA1), b1 = c(rB1), lg = rLogits.map(c)
            try m.backward(dFeatures: [2: f2.data, 1: f1.data], dAttention: [1: a1.data], dLogits: lg?.data,
                           dBlockOutputs: [1: b1.data], computeParameterGradients: params, dImage: dImage)
        }
    }

    @Test(arguments: [(0, false, true), (2, true, false)])
    func endToEndGradients(registers: Int, layerScale: Bool, head: Bool) throws {
        let cfg = Self.tinyConfig(registers: registers, layerScale: layerScale, head: head)
        #expect(cfg.numTokens == 1 + registers + 4)
        let m = try ViT<Double>(config: cfg, maxBatch: 3)  // maxBatch > B: the prefix path
        Self.randomizeParameters(m, seed: 11)
        var rng = SeededRNG(seed: 12)
        let image = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1)
        let loss = Loss(cfg, batch: 2, seed: 13)
        _ = loss.value(m, image)
        m.gradients.zero()
        let dImage = AccumulatingGrad([2, 3, 8, 8], &rng)
        try loss.backward(m, params: true, dImage: dImage.grad.data)
        for e in m.parameters.entries {
            expectGradient(e.name, at: m.parameters.pointer(e.name), count: e.count,
                           analytic: m.gradients.pointer(e.name), loss: { loss.value(m, image) })
        }
        expectGradient("dImage", of: image, analytic: dImage.added, loss: { loss.value(m, image) })
    }

    @Test func skippingParameterGradients() throws {
        let cfg = Self.tinyConfig(registers: 1, layerScale: true)
        let m = try ViT<Double>(config: cfg, maxBatch: 2)
        Self.randomizeParameters(m, seed: 21)
        var rng = SeededRNG(seed: 22)
        let image = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1)
        let loss = Loss(cfg, batch: 2, seed: 23)
        _ = loss.value(m, image)
        m.gradients.zero()
        let full = Tensor<Double>(shape: [2, 3, 8, 8])
        try loss.backward(m, params: true, dImage: full.data)
        // Sentinel values in the gradient arena must survive a backward without parameter gradients.
        rng.fillNormal(m.gradients.storage.buffer, std: 1)
        let sentinel = m.gradients.storage.copy()
        let only = Tensor<Double>(shape: [2, 3, 8, 8])
        try loss.backward(m, params: false, dImage: only.data)
        #expect(maxAbsDiff(full.data, only.data, count: full.count) == 0)
        #expect(maxAbsDiff(sentinel.data, m.gradients.storage.data, count: sentinel.count) == 0)
    }

    /// A forward-only pass (`storeCaches: false`) gives the same features and logits bit for bit as the caching
    /// forward, writes nothing into blocks 2… (their buffers keep a sentinel), and backward refuses to follow it.
    @Test(arguments: [1, 2])
    func forwardOnlyPassMatchesAndKeepsNoCaches(batch: Int) throws {
        let cfg = ViTConfig(imageSize: 8, patchSize: 4, dim: 12, depth: 3, heads: 3, mlpRatio: 1.5, layerScale: 0, numRegisters: 1,
                            noEmbedClass: true, numClasses: 3)
        let m = try ViT<Float>(config: cfg, maxBatch: 2)
        Self.randomizeParameters(m, seed: 31)
        var rng = SeededRNG(seed: 32)
        let image = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1).converted(to: Float.self)
        try m.forward(images: image.data, batch: batch, featureLayers: [1, 3])
        let f1 = Array(UnsafeBufferPointer(start: m.features(layer: 1).data, count: batch * cfg.numPatches * cfg.dim))
        let f3 = Array(UnsafeBufferPointer(start: m.features(layer: 3).data, count: batch * cfg.numPatches * cfg.dim))
        let logits = Array(UnsafeBufferPointer(start: m.logits!.data, count: batch * 3))
        #expect(m.cachesStored)
        // Sentinels in every activation of blocks 2 and 3 except their feature buffers.
        let untouched = m.activations.entries.filter {
            ($0.name.hasPrefix("blocks.1.") || $0.name.hasPrefix("blocks.2.")) && !$0.name.hasPrefix("features")
        }
        #expect(!untouched.isEmpty)
        for e in untouched { m.activations[e.name].buffer.update(repeating: 7) }
        try m.forward(images: image.data, batch: batch, featureLayers: [1, 3], storeCaches: false)
        #expect(!m.cachesStored)
        #expect(Array(UnsafeBufferPointer(start: m.features(layer: 1).data, count: f1.count)) == f1)
        #expect(Array(UnsafeBufferPointer(start: m.features(layer: 3).data, count: f3.count)) == f3)
        #expect(Array(UnsafeBufferPointer(start: m.logits!.data, count: logits.count)) == logits)
        for e in untouched {
            let t = m.activations[e.name]
            #expect(t.buffer.allSatisfy { $0 == 7 }, "\(e.name) was written by a forward-only pass")
        }
        let r = Tensor<Float>(shape: [batch, cfg.numPatches, cfg.dim])
        #expect(throws: PatchGuardError.self) { try m.backward(dFeatures: [3: r.data]) }
        #expect(throws: PatchGuardError.self) {
            try m.forward(images: image.data, batch: batch, attentionLayers: [1], storeCaches: false)
        }
        try m.forward(images: image.data, batch: batch, featureLayers: [3])
        try m.backward(dFeatures: [3: r.data])  // a caching forward makes backward legal again
    }

    /// The LayerNorm and GELU outputs are not stored per block (``ViTActivations/ln``, ``ViTActivations/gelu``):
    /// a backward with parameter gradients recomputes them bit for bit (one block: the forward's GELU output is
    /// still in the shared buffer to compare with); one without parameter gradients does not touch them;
    /// `norm1Output` needs a caching forward.
    @Test func sharedNormAndGELUBuffersAreRecomputedExactly() throws {
        let cfg = ViTConfig(imageSize: 8, patchSize: 4, dim: 12, depth: 1, heads: 3, mlpRatio: 1.5, layerScale: 0.5,
                            numClasses: 0)
        let B = 2, N = cfg.numTokens, C = cfg.dim, HD = cfg.mlpHidden
        let m = try ViT<Float>(config: cfg, maxBatch: B)
        Self.randomizeParameters(m, seed: 51)
        var rng = SeededRNG(seed: 52)
        let image = uniformTensor([B, 3, 8, 8], &rng, lo: 0, hi: 1).converted(to: Float.self)
        let r = randomTensor([B, cfg.numPatches, C], &rng).converted(to: Float.self)
        try m.forward(images: image, featureLayers: [1])
        let gelu = Array(UnsafeBufferPointer(start: m.acts.gelu, count: B * N * HD))
        let ln2 = Array(UnsafeBufferPointer(start: m.acts.ln, count: B * N * C))
        let dImage = Tensor<Float>(shape: [B, 3, 8, 8])
        try m.backward(dFeatures: [1: r.data], computeParameterGradients: false, dImage: dImage.data)
        #expect(Array(UnsafeBufferPointer(start: m.acts.gelu, count: gelu.count)) == gelu)
        #expect(Array(UnsafeBufferPointer(start: m.acts.ln, count: ln2.count)) == ln2)
        m.acts.gelu.update(repeating: .nan, count: gelu.count)
        m.gradients.zero()
        try m.backward(dFeatures: [1: r.data], computeParameterGradients: true)
        #expect(Array(UnsafeBufferPointer(start: m.acts.gelu, count: gelu.count)) == gelu)
        #expect(m.gradients.storage.buffer.allSatisfy { $0.isFinite })
        let norm1 = try m.norm1Output(layer: 1)
        #expect(norm1.shape == [B, N, C])
        #expect(Array(UnsafeBufferPointer(start: m.acts.ln, count: B * N * C)) != ln2)  // norm1, not norm2
        try m.forward(images: image, featureLayers: [1], storeCaches: false)
        #expect(throws: PatchGuardError.self) { try m.norm1Output(layer: 1) }
        try m.forward(images: image, featureLayers: [1])
        #expect(throws: PatchGuardError.self) { try m.norm1Output(layer: 2) }
    }

    /// An image-parallel pass (uneven shares: 5 images over 3 workers) computes what one plain pass does: the same
    /// features, attention, logits, and the same gradients added into non-zero parameter gradients, `dImage` and
    /// both capture kinds; also on the early-stopping capture-only path (Grad-CAM); with the shares' parameter
    /// gradients in whole private copies and block by block (run twice: the private arenas are reused).
    @Test(arguments: [false, true])
    func imageParallelPassMatchesAPlainPass(blockwise: Bool) throws {
        let cfg = ViTConfig(imageSize: 8, patchSize: 4, dim: 12, depth: 3, heads: 3, mlpRatio: 1.5, layerScale: 0.5,
                            numRegisters: 1, noEmbedClass: true, numClasses: 3)
        let B = 5
        let plain = try ViT<Double>(config: cfg, maxBatch: B), split = try ViT<Double>(config: cfg, maxBatch: B)
        plain.imageParallelWorkers = 1
        split.imageParallelWorkers = 3
        if blockwise { split.blockwiseShareGradientsMinimum = 0 }  // block by block: one join per block
        #expect(split.imageShares(B) == [0..<2, 2..<4, 4..<5])
        Self.randomizeParameters(plain, seed: 41)
        try split.copyParameters(from: plain)
        var rng = SeededRNG(seed: 42)
        let image = uniformTensor([B, 3, 8, 8], &rng, lo: 0, hi: 1)
        let dF3 = randomTensor([B, cfg.numPatches, cfg.dim], &rng), dA2 = randomTensor([B, 3, cfg.numTokens, cfg.numTokens], &rng)
        let dLogits = randomTensor([B, 3], &rng), dOut1 = randomTensor([B, cfg.numTokens, cfg.dim], &rng)
        let startGrads = randomTensor([plain.gradients.totalCount], &rng)
        let startImage = randomTensor([B, 3, 8, 8], &rng), startCapture = randomTensor([B, cfg.numTokens, cfg.dim], &rng)

        func run(_ m: ViT<Double>) throws -> [String: [Double]] {
            try m.forward(images: image, featureLayers: [1, 3], attentionLayers: [2])
            var out: [String: [Double]] = [
                "features.1": Array(m.features(layer: 1).buffer), "features.3": Array(m.features(layer: 3).buffer),
                "attention.2": Array(m.attention(layer: 2).buffer), "logits": Array(m.logits!.buffer),
            ]
            m.gradients.storage.data.update(from: startGrads.data, count: startGrads.count)
            let dImage = startImage.copy(), outCapture = startCapture.copy(), normCapture = startCapture.copy()
            try m.backward(dFeatures: [3: dF3.data], dAttention: [2: dA2.data], dLogits: dLogits.data,
                           dBlockOutputs: [1: dOut1.data], dImage: dImage.data,
                           blockOutputGradients: [2: outCapture.data], norm1Gradients: [1: normCapture.data])
            out["gradients"] = Array(UnsafeBufferPointer(start: m.gradients.storage.data, count: m.gradients.totalCount))
            out["dImage"] = Array(dImage.buffer)
            out["blockOutputGradients.2"] = Array(outCapture.buffer)
            out["norm1Gradients.1"] = Array(normCapture.buffer)
            // Capture only: stops at block 2's norm1 backward, no parameter gradients.
            let gradCAM = startCapture.copy()
            try m.backward(dFeatures: [3: dF3.data], computeParameterGradients: false, norm1Gradients: [2: gradCAM.data])
            out["gradCAM.2"] = Array(gradCAM.buffer)
            return out
        }
        let want = try run(plain), got = try run(split)
        #expect(want.keys.sorted() == got.keys.sorted())
        for (name, w) in want {
            let g = got[name]!
            let scale = w.map(abs).max() ?? 0
            let worst = zip(w, g).map { abs($0 - $1) / (scale + 1e-300) }.max() ?? 0
            #expect(w.count == g.count && worst < 1e-12, "\(name): image-parallel differs by \(worst) of its scale")
        }
        #expect(want["gradients"]! != Array(startGrads.buffer))  // the backward did add something
        #expect(try run(split) == got)  // again, with the private arenas of the first run: the same bits
    }

    @Test func floatMatchesDouble() throws {
        let cfg = Self.tinyConfig(registers: 2, layerScale: true)
        let md = try ViT<Double>(config: cfg, maxBatch: 2)
        Self.randomizeParameters(md, seed: 31)
        let mf = try ViT<Float>(config: cfg, maxBatch: 2)
        try mf.copyParameters(from: md)
        var rng = SeededRNG(seed: 32)
        let image = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1)
        let loss = Loss(cfg, batch: 2, seed: 33)
        _ = loss.value(md, image)
        try mf.forward(images: image.converted(to: Float.self), featureLayers: [1, 2], attentionLayers: [1])
        expectClose(mf.features(layer: 2), md.features(layer: 2), "features.2")
        expectClose(mf.attention(layer: 1), md.attention(layer: 1), "attn.1")
        expectClose(mf.logits!, md.logits!, "logits")
        md.gradients.zero(); mf.gradients.zero()
        let dImD = Tensor<Double>(shape: [2, 3, 8, 8]), dImF = Tensor<Float>(shape: [2, 3, 8, 8])
        try loss.backward(md, params: true, dImage: dImD.data)
        try loss.backward(mf, params: true, dImage: dImF.data)
        expectClose(dImF.view, dImD.view, "dImage")
        for e in md.gradients.entries {
            expectClose(mf.gradients[e.name], md.gradients[e.name], "grad \(e.name)")
        }
    }

    /// Grad-CAM: gradient of a logit w.r.t. block 1's output, with and without the early stop.
    @Test func blockOutputGradientEarlyStop() throws {
        let cfg = Self.tinyConfig()
        let m = try ViT<Double>(config: cfg, maxBatch: 2)
        Self.randomizeParameters(m, seed: 41)
        var rng = SeededRNG(seed: 42)
        let image = uniformTensor([2, 3, 8, 8], &rng, lo: 0, hi: 1)
        try m.forward(images: image)
        let dLogits = Tensor<Double>(shape: [2, 3], values: [1, 0, 0, 0, 0, 1])
        let early = Tensor<Double>(shape: [2, cfg.numTokens, 12]), full = Tensor<Double>(shape: [2, cfg.numTokens, 12])
        try m.backward(dLogits: dLogits.data, computeParameterGradients: false, blockOutputGradients: [1: early.data])
        let dImage = Tensor<Double>(shape: [2, 3, 8, 8])
        try m.backward(dLogits: dLogits.data, computeParameterGradients: false, dImage: dImage.data,
                       blockOutputGradients: [1: full.data])
        #expect(maxAbsDiff(early.data, full.data, count: early.count) == 0)
        #expect(early.array.contains { $0 != 0 })
        // The same backward's image gradient against a directional central difference:
        // ⟨dImage, δ⟩ ≈ (L(x + δ) − L(x − δ)) / 2 for L = logit₀(image 0) + logit₂(image 1).
        let delta = randomTensor([2, 3, 8, 8], &rng, std: 1e-5)
        func logitLoss(_ x: Tensor<Double>) -> Double {
            try! m.forward(images: x)
            return m.logits!.data[0] + m.logits!.data[5]
        }
        let xp = image.copy(), xm = image.copy()
        for i in 0..<image.count { xp[i] += delta[i]; xm[i] -= delta[i] }
        let numeric = (logitLoss(xp) - logitLoss(xm)) / 2
        let analytic = weightedSum(dImage, delta)
        #expect(abs(numeric - analytic) <= 1e-6 * abs(analytic) + 1e-14)
    }

    @Test func configAndErrors() throws {
        #expect(try ViTConfig.preset("vit_small_patch14_dinov2").numTokens == 257)
        #expect(try ViTConfig.preset("vit_small_patch14_reg4_dinov2").posEmbedRows == 256)
        #expect(throws: PatchGuardError.self) { try ViTConfig.preset("vit_smal_patch14_dinov2") }
        #expect(throws: PatchGuardError.self) { try ViT<Float>(config: ViTConfig(imageSize: 30, patchSize: 4, dim: 12, depth: 1, heads: 3), maxBatch: 1) }
        let m = try ViT<Float>(config: Self.tinyConfig(), maxBatch: 2, seed: 1)
        let img = Tensor<Float>(shape: [3, 3, 8, 8])
        #expect(throws: PatchGuardError.self) { try m.forward(images: img) }
        #expect(throws: PatchGuardError.self) { try m.forward(images: img.data, batch: 1, featureLayers: [3]) }
        // JSON: snake_case keys, layer_scale as Bool or number.
        let json = #"{"image_size": 224, "patch_size": 14, "dim": 384, "depth": 12, "heads": 6, "layer_scale": true}"#
        let c = try JSONDecoder().decode(ViTConfig.self, from: Data(json.utf8))
        #expect(c == (try ViTConfig.preset("vit_small_patch14_dinov2")))
        let back = try JSONDecoder().decode(ViTConfig.self, from: JSONEncoder().encode(c))
        #expect(back == c)
    }

    @Test func timmStyleInit() throws {
        let m = try ViT<Double>(config: try ViTConfig.preset("vit_cpu_tiny", imageSize: 32), maxBatch: 1, seed: 5)
        let w = m.parameters["blocks.0.attn.qkv.weight"].buffer
        let std = (w.reduce(0) { $0 + $1 * $1 } / Double(w.count)).squareRoot()
        #expect(abs(std - 0.02 * 0.88) < 0.002)  // σ of a ±2σ-truncated normal is 0.88σ
        #expect(m.parameters["blocks.0.norm1.weight"].buffer.allSatisfy { $0 == 1 })
        #expect(m.parameters["blocks.0.attn.qkv.bias"].buffer.allSatisfy { $0 == 0 })
        #expect(m.parameters["cls_token"].buffer.allSatisfy { abs($0) < 1e-5 })
    }
}

func expectClose<F: NNScalar, D: NNScalar>(_ f: TensorView<F>, _ d: TensorView<D>, _ name: String, rtol: Double = 1e-4,
                                           sourceLocation: SourceLocation = #_sourceLocation) {
    var scale = 0.0, worst = 0.0
    for i in 0..<d.count { scale = max(scale, abs(Double(d.data[i]))) }
    for i in 0..<d.count {
        let a = Double(f.data[i]), b = Double(d.data[i])
        worst = max(worst, abs(a - b) / (abs(b) + 1e-2 * scale + 1e-30))
    }
    #expect(f.count == d.count && worst <= rtol, "\(name): Float vs Double worst relative error \(worst)",
            sourceLocation: sourceLocation)
}
