import Foundation
import PatchGuardCore
@testable import PatchGuardNN
import Testing

/// Parity with the official PatchGuard code (rohban-lab/PatchGuard): the fixture
/// (Tools/make_patchguard_fixture.py) holds the official `Discriminator` (2 post-norm blocks, dim 12, 3 heads,
/// hidden 20, 5 patches) with fixed random weights under its official parameter names, a batch of features,
/// patch labels and three attention maps (B, NH, N, N) with a class token, and — from PyTorch in float64 — the
/// logits, the official `Loss` (per-patch BCE summed over patches and averaged over images, plus
/// Σᵢ coefᵢ·KL(U ‖ A_i), coefs 0.005/0.01/0.05, `F.kl_div(log(A + 1e-8), U, reduction="mean")` on the patch block),
/// each layer's KL, and the gradients of the total loss w.r.t. the features, every parameter and each attention
/// map. Our discriminator, `PatchBCE` and `AttentionKL` in Double must match to 1e-10 relative on both backends.
@Suite("official discriminator parity")
struct OfficialDiscriminatorParityTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/patchguard_official_discriminator.safetensors").path
    static let regWeights = [0.005, 0.01, 0.05]
    static let B = 2, Np = 5, C = 12, vitHeads = 2, prefix = 1

    @Test(arguments: [Backend.cpu, Backend.reference])
    func matchesOfficial(backend: Backend) throws {
        let rtol = 1e-10
        let file = try SafeTensorsFile.load(path: Self.path)
        let B = Self.B, Np = Self.Np, C = Self.C, NH = Self.vitHeads, N = Np + Self.prefix
        let k: any Kernels<Double> = backend.kernels(Double.self)
        var rng = SeededRNG(seed: 0)
        let d = try AttentionDiscriminator<Double>(
            config: .init(dim: C, numPatches: Np, layers: 2, heads: 3, hidden: 20, dropout: 0.2), using: &rng, kernels: k)
        // Every parameter by its official name; the fixture must hold exactly our set.
        let ours = Set(d.params.entries.map(\.name))
        let theirs = Set(file.names.filter { $0.hasPrefix("discriminator.") })
        #expect(ours == theirs,
                "parameter names differ: ours-only \(ours.subtracting(theirs)), official-only \(theirs.subtracting(ours))")
        for name in ours { try file.copy(name, into: d.params[name].buffer) }

        func load(_ name: String) throws -> [Double] { try file.doubles(name) }
        func compare(_ got: UnsafePointer<Double>, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let want = try load(name)
            let scale = want.map(abs).max() ?? 0
            var worst = 0.0
            for i in want.indices { worst = max(worst, abs(got[i] - want[i]) / (abs(want[i]) + 1e-3 * scale + 1e-300)) }
            #expect(worst <= rtol, "\(backend) \(name): worst relative error \(worst) > \(rtol)",
                    sourceLocation: sourceLocation)
        }
        func compare(_ got: Double, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let want = try load(name)[0]
            #expect(abs(got - want) <= rtol * abs(want), "\(backend) \(name): \(got) vs official \(want)",
                    sourceLocation: sourceLocation)
        }

        let features = try load("ref.features"), labels = try load("ref.labels")
        let attn = try (0..<3).map { try load("ref.attn.\($0)") }
        // Forward (evaluation mode: dropout off, as the fixture's module.eval()).
        var noDropout = SeededRNG(seed: 1)
        let logits = features.withUnsafeBufferPointer {
            d.forward(features: $0.baseAddress!, batch: B, training: false, using: &noDropout)
        }
        try compare(logits, "ref.logits")
        let bce = labels.withUnsafeBufferPointer { k.patchBCEForward(logits, $0.baseAddress!, batch: B, patches: Np) }
        try compare(bce, "ref.bce")
        var total = bce
        for (i, a) in attn.enumerated() {
            let kl = a.withUnsafeBufferPointer {
                k.attentionKLForward($0.baseAddress!, batch: B, heads: NH, tokens: N, prefix: Self.prefix)
            }
            try compare(kl, "ref.kl.\(i)")
            total += Self.regWeights[i] * kl
        }
        try compare(total, "ref.loss")

        // Backward of the total loss.
        d.grads.zero()
        var dLogits = [Double](repeating: 0, count: B * Np)
        labels.withUnsafeBufferPointer { lab in
            dLogits.withUnsafeMutableBufferPointer {
                k.patchBCEBackward($0.baseAddress!, logits, lab.baseAddress!, batch: B, patches: Np, weight: 1)
            }
        }
        var dFeatures = [Double](repeating: 0, count: B * Np * C)
        dFeatures.withUnsafeMutableBufferPointer { df in
            dLogits.withUnsafeBufferPointer { d.backward(dLogits: $0.baseAddress!, dFeatures: df.baseAddress!) }
        }
        try dFeatures.withUnsafeBufferPointer { try compare($0.baseAddress!, "ref.grad.features") }
        for name in ours { try compare(d.grads.pointer(name), "ref.grad.\(name)") }
        for (i, a) in attn.enumerated() {
            var dA = [Double](repeating: 0, count: a.count)
            a.withUnsafeBufferPointer { p in
                dA.withUnsafeMutableBufferPointer {
                    k.attentionKLBackward($0.baseAddress!, p.baseAddress!, batch: B, heads: NH, tokens: N,
                                          prefix: Self.prefix, weight: Self.regWeights[i])
                }
            }
            try dA.withUnsafeBufferPointer { try compare($0.baseAddress!, "ref.grad.attn.\(i)") }
        }
    }
}
