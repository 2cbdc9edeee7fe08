import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// sgemm throughput for the shapes that matter: a 1024³ product and ViT-S/14's qkv projection
/// (B·N × C by C × 3C, B = 8, N = 257, C = 384), plus its backward products.
public enum GEMMBenchmark {
    public struct Row: Sendable {
        public let name: String
        public let m, n, k: Int
        public let gflops: Double
    }

    public static func run(minSeconds: Double = 1.0) -> [Row] {
        let shapes: [(String, Int, Int, Int, Bool, Bool)] = [
            (GEMMPrecision.current == .bf16 ? "bf16 gemm 1024x1024x1024" : "sgemm 1024x1024x1024", 1024, 1024, 1024,
             false, false),
            ("vit-s qkv fwd (2056x1152x384, B^T)", 8 * 257, 1152, 384, false, true),
            ("vit-s mlp fc1 fwd (2056x1536x384, B^T)", 8 * 257, 1536, 384, false, true),
            ("vit-s qkv dW (1152x384x2056, A^T)", 1152, 384, 8 * 257, true, false),
        ]
        var rng = SeededRNG(seed: 1)
        return shapes.map { name, m, n, k, ta, tb in
            let a = Tensor<Float>(shape: [m * k]), b = Tensor<Float>(shape: [k * n]), c = Tensor<Float>(shape: [m * n])
            rng.fillUniform(a.buffer, lo: -1, hi: 1); rng.fillUniform(b.buffer, lo: -1, hi: 1)
            matmul(c.data, a.data, b.data, m: m, n: n, k: k, transA: ta, transB: tb) // warm-up
            var reps = 0
            let start = Date()
            while Date().timeIntervalSince(start) < minSeconds || reps < 3 {
                matmul(c.data, a.data, b.data, m: m, n: n, k: k, transA: ta, transB: tb)
                reps += 1
            }
            let seconds = Date().timeIntervalSince(start)
            return Row(name: name, m: m, n: n, k: k, gflops: 2 * Double(m * n * k) * Double(reps) / seconds / 1e9)
        }
    }
}

