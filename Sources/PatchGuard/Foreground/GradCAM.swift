import PatchGuardCore
import PatchGuardNN

// Grad-CAM over a ViT classifier's patch tokens (Selvaraju et al. 2017, applied to token activations as
// pytorch-grad-cam's ViT recipe does), DESIGN.md §2 "Foreground masks".
//
// Shape legend: B images, N = 1 + R + Np tokens, Np = G·G patch tokens on a G × G grid, C channels, K classes,
// H × W output size.
//
//   images (B, 3, S, S) ──ViT forward──▶ block-l output X (B, N, C) ──…──▶ logits (B, K)
//   score s_b = target(logits_b)            top-1 logit | logit of a class | sum of the top-k logits
//   G = ∂s/∂X (B, N, C)                     ViT backward from dLogits, computeParameterGradients: false
//   A, Ĝ = patch tokens of X, G              (B, Np, C)   (class and register tokens dropped)
//   w[b, c]   = (1/Np) Σ_p Ĝ[b, p, c]                     channel weights (B, C)
//   pre[b, p] = Σ_c w[b, c]·A[b, p, c]                    pre-ReLU map (B, Np) on the G × G grid
//   cam[b, p] = max(0, pre[b, p])                         Grad-CAM map (B, G, G)
//   up[b]     = bilinear(cam[b], G × G → H × W)           PyTorch align_corners=False (Scoring's upsampler)
//
// The scores of different images do not interact (the ViT treats images independently), so one backward of
// Σ_b s_b gives every image's own gradient.

/// Kernels of Grad-CAM on token activations, generic over the scalar (Float in production, Double in checks).
public enum GradCAM {
    /// Writes `dLogits` (B, K) (overwriting it) with the gradient of the target score `s_b` of each image and
    /// returns the classes and scores used.
    ///
    /// - ``GradCAMTarget/top1``: `s = logit[argmax]` (ties: the lowest index) → a one-hot row;
    /// - ``GradCAMTarget/classIndex(_:)``: `s = logit[c]` → a one-hot row;
    /// - ``GradCAMTarget/topK(_:)``: `s = Σ_{j ∈ top-k} logit[j]` (ties: lower indices first) → ones at the top k.
    ///
    /// The top-1 / top-k choice is piecewise constant in the logits: the gradient is exact wherever the ranking
    /// has no tie at the k-th place.
    /// - Throws: ``PatchGuardError/invalidArgument(_:)`` for a class index outside `0..<K` or `k` outside `1...K`.
    @inlinable
    public static func targetGradient<T: NNScalar>(_ dLogits: UnsafeMutablePointer<T>, _ logits: UnsafePointer<T>,
                                                   batch: Int, classes: Int,
                                                   target: GradCAMTarget) throws -> (classes: [[Int]], scores: [Double]) {
        let k: Int
        switch target {
        case .top1: k = 1
        case let .topK(n): k = n
        case let .classIndex(c):
            guard (0..<classes).contains(c) else {
                throw PatchGuardError.invalidArgument("Grad-CAM target class \(c) is outside 0..<\(classes)")
            }
            k = 1
        }
        guard (1...max(1, classes)).contains(k), classes >= 1 else {
            throw PatchGuardError.invalidArgument("Grad-CAM top-k: k = \(k) with \(classes) classes")
        }
        dLogits.update(repeating: 0, count: batch * classes)
        var chosen: [[Int]] = [], scores: [Double] = []
        for b in 0..<batch {
            let row = logits + b * classes
            let picked: [Int]
            if case let .classIndex(c) = target {
                picked = [c]
            } else {
                picked = topIndices(row, count: classes, k: k)
            }
            var s = 0.0
            for j in picked { dLogits[b * classes + j] = 1; s += Double(row[j]) }
            chosen.append(picked); scores.append(s)
        }
        return (chosen, scores)
    }

    /// Indices of the `k` largest of `count` values, largest first; ties keep the lower index first.
    @inlinable
    public static func topIndices<T: NNScalar>(_ values: UnsafePointer<T>, count: Int, k: Int) -> [Int] {
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for i in 0..<count {
            let v = values[i]
            if best.count == k, !(v > values[best[k - 1]]) { continue }
            var pos = best.count
            while pos > 0, v > values[best[pos - 1]] { pos -= 1 }
            best.insert(i, at: pos)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    /// Channel weights `w[b, c] = (1/Np) Σ_p dTokens[b, p, c]` (Grad-CAM's global-average-pooled gradient).
    /// - Parameters:
    ///   - weights: (B, C), overwritten
    ///   - dTokens: (B, Np, C), the target's gradient on the patch tokens
    @inlinable
    public static func channelWeights<T: NNScalar>(_ weights: UnsafeMutablePointer<T>, _ dTokens: UnsafePointer<T>,
                                                   batch: Int, patches: Int, channels: Int) {
        let c = channels, np = patches
        let inv = 1 / T(np)
        for b in 0..<batch {
            let w = weights + b * c
            w.update(repeating: 0, count: c)
            for p in 0..<np {
                let g = dTokens + (b * np + p) * c
                for j in 0..<c { w[j] += g[j] }
            }
            for j in 0..<c { w[j] *= inv }
        }
    }

    /// Pre-ReLU map `pre[b, p] = Σ_c weights[b, c]·tokens[b, p, c]`.
    /// - Parameters:
    ///   - map: (B, Np), overwritten
    ///   - tokens: (B, Np, C), the patch-token activations
    ///   - weights: (B, C)
    @inlinable
    public static func preReLUMap<T: NNScalar>(_ map: UnsafeMutablePointer<T>, _ tokens: UnsafePointer<T>,
                                               _ weights: UnsafePointer<T>, batch: Int, patches: Int, channels: Int) {
        let c = channels, np = patches
        for b in 0..<batch {
            let w = weights + b * c
            for p in 0..<np {
                let a = tokens + (b * np + p) * c
                var s: T = 0
                for j in 0..<c { s += w[j] * a[j] }
                map[b * np + p] = s
            }
        }
    }
}

/// What Grad-CAM needs from one forward/backward: the patch tokens of the chosen block and the target's gradient
/// on them.
public struct GradCAMCapture<T: NNScalar> {
    /// Patch tokens of block `layer`'s output (the residual stream), (B, Np, C).
    public let activations: Tensor<T>
    /// `∂s_b/∂activations` (B, Np, C).
    public let gradients: Tensor<T>
    /// Head logits (B, K).
    public let logits: Tensor<T>
    /// Classes whose logits make up each image's score.
    public let targets: [[Int]]
    /// Each image's target score `s_b`.
    public let scores: [Double]
    /// The patch grid side `G` (`Np = G·G`).
    public let gridSize: Int
    /// The 1-based block explained.
    public let layer: Int
}

extension GradCAM {
    /// The block a config's `layer` names (0 = the last block), checked against the model's depth.
    public static func resolveLayer(_ layer: Int, depth: Int) throws -> Int {
        let l = layer == 0 ? depth : layer
        guard (1...depth).contains(l) else {
            throw PatchGuardError.config("foreground.layer \(layer) is outside 1...\(depth) (the classifier has "
                                         + "\(depth) blocks; 0 means the last)")
        }
        return l
    }

    /// Runs the model forward and back for one batch and captures block `layer`'s patch tokens and their gradient.
    ///
    /// - Parameters:
    ///   - model: a ViT with a head (`numClasses > 0`); its parameter gradients are not touched.
    ///   - images: (B, 3, S, S) in [0, 1], `S = model.config.imageSize`, `B ≤ model.maxBatch`.
    ///   - layer: 1-based block (0 = last).
    public static func capture<T: NNScalar>(model: ViT<T>, images: UnsafePointer<T>, batch: Int, layer: Int = 0,
                                            target: GradCAMTarget = .top1) throws -> GradCAMCapture<T> {
        let cfg = model.config
        guard cfg.numClasses > 0 else {
            throw PatchGuardError.invalidArgument("Grad-CAM needs a classifier: the ViT has no head (num_classes 0)")
        }
        let l = try resolveLayer(layer, depth: cfg.depth)
        let K = cfg.numClasses, N = cfg.numTokens, Np = cfg.numPatches, C = cfg.dim, skip = cfg.numPrefixTokens
        try model.forward(images: images, batch: batch)
        guard let logitsView = model.logits else {
            throw PatchGuardError.invalidArgument("Grad-CAM: the ViT produced no logits")
        }
        let logits = Tensor<T>(shape: [batch, K])
        logits.data.update(from: logitsView.data, count: batch * K)
        let dLogits = Tensor<T>(shape: [batch, K])
        let (targets, scores) = try targetGradient(dLogits.data, logits.data, batch: batch, classes: K, target: target)

        let dBlock = Tensor<T>(shape: [batch, N, C])
        try model.backward(dLogits: UnsafePointer(dLogits.data), computeParameterGradients: false,
                           blockOutputGradients: [l: dBlock.data])
        let out = model.blockOutput(layer: l)
        let activations = Tensor<T>(shape: [batch, Np, C]), gradients = Tensor<T>(shape: [batch, Np, C])
        for b in 0..<batch {
            activations.data.advanced(by: b * Np * C).update(from: out.data + (b * N + skip) * C, count: Np * C)
            gradients.data.advanced(by: b * Np * C).update(from: dBlock.data + (b * N + skip) * C, count: Np * C)
        }
        return GradCAMCapture(activations: activations, gradients: gradients, logits: logits, targets: targets,
                              scores: scores, gridSize: cfg.gridSize, layer: l)
    }

    /// The pre-ReLU map (B, Np) of a capture, in the capture's scalar type.
    public static func preReLUMap<T: NNScalar>(_ capture: GradCAMCapture<T>) -> Tensor<T> {
        let s = capture.activations.shape
        let (B, Np, C) = (s[0], s[1], s[2])
        let w = Tensor<T>(shape: [B, C]), pre = Tensor<T>(shape: [B, Np])
        channelWeights(w.data, capture.gradients.data, batch: B, patches: Np, channels: C)
        preReLUMap(pre.data, capture.activations.data, w.data, batch: B, patches: Np, channels: C)
        return pre
    }
}

/// Grad-CAM maps of a batch.
public struct GradCAMResult: Sendable {
    public let count: Int
    /// Patch grid side `G`.
    public let gridSize: Int
    public let outputHeight: Int
    public let outputWidth: Int
    /// `max(0, pre)` on the grid, (B, G, G) row-major.
    public var maps: [Float]
    /// The pre-ReLU maps, (B, G, G).
    public var preReLU: [Float]
    /// `maps` upsampled bilinearly to (B, outputHeight, outputWidth) (not normalised).
    public var upsampled: [Float]
    /// Head logits (B, K).
    public var logits: [Float]
    /// Classes whose logits make up each image's score.
    public var targets: [[Int]]

    /// Image `b`'s grid map (G × G).
    public func map(_ b: Int) -> [Float] { Array(maps[(b * gridSize * gridSize)..<((b + 1) * gridSize * gridSize)]) }

    /// Image `b`'s upsampled map (outputHeight × outputWidth).
    public func upsampledMap(_ b: Int) -> [Float] {
        let n = outputHeight * outputWidth
        return Array(upsampled[(b * n)..<((b + 1) * n)])
    }
}

/// Grad-CAM of `count` images (any count: run in chunks of `model.maxBatch`).
///
/// - Parameters:
///   - model: a ViT classifier (`numClasses > 0`), e.g. from ``ForegroundClassifier/load(config:maxBatch:)``.
///   - images: (count, 3, S, S) in [0, 1] with `S = model.config.imageSize`.
///   - layer: 1-based block whose output tokens are explained; 0 = the last.
///   - target: the explained score (default: each image's top predicted class).
///   - outputHeight, outputWidth: size of the upsampled maps (default: `S × S`).
/// - Returns: grid maps (B, G, G), pre-ReLU maps, upsampled maps (B, H, W), logits and the target classes.
public func gradCAM<T: NNScalar>(model: ViT<T>, images: UnsafePointer<T>, count: Int, layer: Int = 0,
                                 target: GradCAMTarget = .top1, outputHeight: Int? = nil,
                                 outputWidth: Int? = nil) throws -> GradCAMResult {
    let cfg = model.config
    let S = cfg.imageSize, G = cfg.gridSize, Np = cfg.numPatches, K = max(cfg.numClasses, 1)
    let oh = outputHeight ?? S, ow = outputWidth ?? S
    guard count >= 0, oh > 0, ow > 0 else {
        throw PatchGuardError.invalidArgument("Grad-CAM: \(count) images to \(oh)×\(ow)")
    }
    var maps = [Float](), pre = [Float](), up = [Float](), logits = [Float](), targets: [[Int]] = []
    maps.reserveCapacity(count * Np); pre.reserveCapacity(count * Np); up.reserveCapacity(count * oh * ow)
    logits.reserveCapacity(count * K)
    var start = 0
    while start < count {
        let b = min(model.maxBatch, count - start)
        let cap = try GradCAM.capture(model: model, images: images + start * 3 * S * S, batch: b, layer: layer,
                                      target: target)
        let p = GradCAM.preReLUMap(cap)
        for i in 0..<(b * Np) {
            let v = Float(p.data[i])
            pre.append(v)
            maps.append(max(0, v))
        }
        for i in 0..<(b * K) { logits.append(Float(cap.logits.data[i])) }
        targets += cap.targets
        for i in 0..<b {
            let grid = Array(maps[((start + i) * Np)..<((start + i + 1) * Np)])
            up += try bilinearUpsample(grid, inHeight: G, inWidth: G, outHeight: oh, outWidth: ow)
        }
        start += b
    }
    return GradCAMResult(count: count, gridSize: G, outputHeight: oh, outputWidth: ow, maps: maps, preReLU: pre,
                         upsampled: up, logits: logits, targets: targets)
}
