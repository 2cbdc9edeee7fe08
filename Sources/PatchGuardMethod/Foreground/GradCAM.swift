import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

// Grad-CAM over a ViT classifier's patch tokens (Selvaraju et al. 2017, applied to token activations as
// pytorch-grad-cam's ViT recipe does), DESIGN.md §2 "Foreground masks".
//
// Shape legend: B images, N = 1 + R + Np tokens, Np = G·G patch tokens on a G × G grid, C channels, K classes,
// H × W output size.
//
//   images (B, 3, S, S) ──ViT forward──▶ X = norm1 output of block l (B, N, C) ──…──▶ logits (B, K)
//   score s_b = target(logits_b)            top-1 logit | logit of a class | sum of the top-k logits
//   G = ∂s/∂X (B, N, C)                     ViT backward from dLogits (computeParameterGradients: false) to block
//                                           l's output, then through block l's branches to its norm1 output
//   A, Ĝ = patch tokens of X, G              (B, Np, C)   (class and register tokens dropped)
//   w[b, c]   = (1/Np) Σ_p Ĝ[b, p, c]                     channel weights (B, C)
//   pre[b, p] = Σ_c w[b, c]·A[b, p, c]                    pre-ReLU map (B, Np) on the G × G grid
//   cam[b, p] = max(0, pre[b, p])                         Grad-CAM map (B, G, G)
//   up[b]     = bilinear(cam[b], G × G → H × W)           PyTorch align_corners=False (Scoring's upsampler)
//
// Why norm1 (pytorch-grad-cam's `blocks[-1].norm1`) and not the raw block output: the raw residual stream enters
// the next block only through a scale-invariant LayerNorm, so each token's gradient is orthogonal to the token
// (Σ_c G_pc·X_pc = 0) and Grad-CAM degenerates (``GradCAMSite/residual``; the tests measure both).
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
        // `k` is validated against the class count by the caller; the shared kernel only throws outside 1...count.
        (try? topKIndices(UnsafeBufferPointer(start: values, count: count), k: min(max(k, 1), count))) ?? []
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

    public init(activations: Tensor<T>, gradients: Tensor<T>, logits: Tensor<T>, targets: [[Int]], scores: [Double],
                gridSize: Int, layer: Int) {
        self.activations = activations; self.gradients = gradients; self.logits = logits; self.targets = targets
        self.scores = scores; self.gridSize = gridSize; self.layer = layer
    }
}

/// Where Grad-CAM reads the token activations of block `l`.
public enum GradCAMSite: String, Sendable, CaseIterable {
    /// The output of block `l`'s first LayerNorm (`blocks[l-1].norm1`): the normalised tokens entering the block's
    /// attention — pytorch-grad-cam's ViT recipe (`target_layers = [model.blocks[-1].norm1]`). The default.
    case norm1
    /// The raw output of block `l` (the residual stream). Degenerate right before a LayerNorm: a LayerNorm is
    /// scale-invariant, so the gradient it passes back to a token is orthogonal to that token (`Σ_c G_pc·X_pc = 0`);
    /// the map then measures how much each token resembles the *other* tokens' gradients. Kept for comparison.
    case residual
}

extension GradCAM {
    /// The 1-based block a config's `layer` names (0 = the deepest useful block), checked against the model.
    ///
    /// - ``GradCAMSite/norm1``: `1...depth`, 0 = `depth` (the last block's normalised input).
    /// - ``GradCAMSite/residual``: `1...depth − 1`, 0 = `depth − 1`. The head reads only the class token of the last
    ///   block's output, and output token `t` of a block depends on the block's *input* tokens only, so the
    ///   gradient on the patch tokens of the last block's output is identically zero.
    /// - Throws: ``PatchGuardError/config(_:)`` for a layer outside the range.
    public static func resolveLayer(_ layer: Int, depth: Int, site: GradCAMSite = .norm1) throws -> Int {
        let deepest = site == .norm1 ? depth : depth - 1
        guard deepest >= 1 else {
            throw PatchGuardError.config("Grad-CAM on block outputs needs a classifier with at least 2 blocks "
                                         + "(got \(depth)): the last block's output patch tokens do not reach the head")
        }
        if layer == 0 { return deepest }
        guard (1...deepest).contains(layer) else {
            if site == .residual && layer == depth {
                throw PatchGuardError.config(
                    "Grad-CAM layer \(layer): the patch tokens of the last block's output never reach the "
                    + "class-token head (their gradient is zero); use 1...\(deepest)")
            }
            throw PatchGuardError.config("foreground.layer \(layer) is outside 1...\(deepest) (the classifier has "
                                         + "\(depth) blocks; 0 means block \(deepest))")
        }
        return layer
    }

    /// Runs the model forward and back for one batch and captures the patch tokens of block `layer` at `site`
    /// and the target's gradient on them.
    ///
    /// The ViT backward (``ViT/backward(dFeatures:dAttention:dLogits:dBlockOutputs:computeParameterGradients:dImage:blockOutputGradients:norm1Gradients:)``,
    /// no parameter gradients) captures the gradient at the site with its capture hook (`norm1Gradients` or
    /// `blockOutputGradients`) and stops there: at block `layer`'s output, or for ``GradCAMSite/norm1`` after
    /// block `layer`'s own MLP and attention branches, at its `norm1` output.
    ///
    /// - Parameters:
    ///   - model: a ViT with a head (`numClasses > 0`); its parameter gradients are not touched.
    ///   - images: (B, 3, S, S) in [0, 1], `S = model.config.imageSize`, `B ≤ model.maxBatch`.
    ///   - layer: 1-based block (0 = the deepest useful one, see ``resolveLayer(_:depth:site:)``).
    public static func capture<T: NNScalar>(model: ViT<T>, images: UnsafePointer<T>, batch: Int, layer: Int = 0,
                                            target: GradCAMTarget = .top1,
                                            site: GradCAMSite = .norm1) throws -> GradCAMCapture<T> {
        let cfg = model.config
        guard cfg.numClasses > 0 else {
            throw PatchGuardError.invalidArgument("Grad-CAM needs a classifier: the ViT has no head (num_classes 0)")
        }
        let l = try resolveLayer(layer, depth: cfg.depth, site: site)
        let K = cfg.numClasses, N = cfg.numTokens, Np = cfg.numPatches, C = cfg.dim, skip = cfg.numPrefixTokens
        try model.forward(images: images, batch: batch)
        guard let logitsView = model.logits else {
            throw PatchGuardError.invalidArgument("Grad-CAM: the ViT produced no logits")
        }
        let logits = Tensor<T>(shape: [batch, K])
        logits.data.update(from: logitsView.data, count: batch * K)
        let dLogits = Tensor<T>(shape: [batch, K])
        let (targets, scores) = try targetGradient(dLogits.data, logits.data, batch: batch, classes: K, target: target)

        // The ViT backward (no parameter gradients) writes the target's gradient at the site and stops there.
        let dSite = Tensor<T>(shape: [batch, N, C])
        let acts: UnsafePointer<T>
        switch site {
        case .residual:
            try model.backward(dLogits: UnsafePointer(dLogits.data), computeParameterGradients: false,
                               blockOutputGradients: [l: dSite.data])
            acts = UnsafePointer(model.blockOutput(layer: l).data)
        case .norm1:
            try model.backward(dLogits: UnsafePointer(dLogits.data), computeParameterGradients: false,
                               norm1Gradients: [l: dSite.data])
            acts = UnsafePointer(try model.norm1Output(layer: l).data)
        }
        let grads = UnsafePointer(dSite.data)
        let activations = Tensor<T>(shape: [batch, Np, C]), gradients = Tensor<T>(shape: [batch, Np, C])
        for b in 0..<batch {
            activations.data.advanced(by: b * Np * C).update(from: acts + (b * N + skip) * C, count: Np * C)
            gradients.data.advanced(by: b * Np * C).update(from: grads + (b * N + skip) * C, count: Np * C)
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
///   - layer: 1-based block whose tokens are explained; 0 = the deepest useful one (see
///     ``GradCAM/resolveLayer(_:depth:site:)``).
///   - site: where the block's tokens are read (default: its norm1 output, see ``GradCAMSite``).
///   - target: the explained score (default: each image's top predicted class).
///   - outputHeight, outputWidth: size of the upsampled maps (default: `S × S`).
/// - Returns: grid maps (B, G, G), pre-ReLU maps, upsampled maps (B, H, W), logits and the target classes.
public func gradCAM<T: NNScalar>(model: ViT<T>, images: UnsafePointer<T>, count: Int, layer: Int = 0,
                                 target: GradCAMTarget = .top1, site: GradCAMSite = .norm1, outputHeight: Int? = nil,
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
                                      target: target, site: site)
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
