import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// What an attack (or a certification procedure) needs from a detector: patch logits for a batch of [0,1] images
/// and the gradient of a linear objective on those logits w.r.t. the images. PatchGuard implements it; the
/// diffusion detector will too.
///
/// Shapes: images (B, 3, S, S) in [0,1]; logits (B, Np), higher = more anomalous.
public protocol PatchDetector: AnyObject {
    var imageSize: Int { get }
    var numPatches: Int { get }
    /// Patch logits in evaluation mode (no dropout).
    func patchLogits(_ images: UnsafePointer<Float>, batch: Int) -> [Float]
    /// Evaluation-mode forward, then `dImages = ∂(Σ dLogits ⊙ logits)/∂images` (overwritten). Returns the logits.
    func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dLogits: UnsafePointer<Float>,
                       dImages: UnsafeMutablePointer<Float>) -> [Float]
    /// Evaluation-mode forward, `dLogits = dLogitsFor(logits)` from these logits, then the input gradient as
    /// above. Default: ``patchLogits(_:batch:)`` then ``inputGradient(_:batch:dLogits:dImages:)`` (two forwards);
    /// a detector that can keep its activations does it in one.
    func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dImages: UnsafeMutablePointer<Float>,
                       dLogitsFor: ([Float]) -> [Float]) -> [Float]
    /// Whether two calls on the same images may differ (then attacks use EOT). Default false.
    var isStochastic: Bool { get }
}

extension PatchDetector {
    public var isStochastic: Bool { false }

    public func inputGradient(_ images: UnsafePointer<Float>, batch: Int, dImages: UnsafeMutablePointer<Float>,
                              dLogitsFor: ([Float]) -> [Float]) -> [Float] {
        let d = dLogitsFor(patchLogits(images, batch: batch))
        return d.withUnsafeBufferPointer { inputGradient(images, batch: batch, dLogits: $0.baseAddress!, dImages: dImages) }
    }
}

/// What an attack maximises (the threat model: normal images pushed to look anomalous, defective ones to look
/// normal). JSON and `--target` spelling: `"patches"`, `"image"`, `"image_topk"`, `"patches_sea"`.
public enum PGDTarget: String, ConfigEnum {
    /// The official PatchGuard attack, per image: mean logit of the normal patches minus mean logit of the
    /// anomalous patches (ground-truth patch labels). It attacks the pixel map. It is *not* an attack on the
    /// image score: on a defective image it raises every normal patch, which raises the top-k image score.
    case patches
    /// The image score, per image: + mean logit of all patches for a normal image, − for a defective one (image
    /// label = any anomalous patch). A smooth surrogate of the top-k mean that moves every patch the same way.
    case image
    /// The exact image score, per image: `+s_b` for a normal image, `−s_b` for a defective one, `s_b` the
    /// detector's own image score (PatchGuard: the top-k mean the evaluation uses; the gradient flows through the
    /// patches selected at the current step). JSON `"image_topk"`.
    case imageTopK = "image_topk"
    /// The pixel map, counting only the map cells not yet flipped (like SEA for segmentation): with the decision
    /// threshold τ = ``flipThreshold`` (0: a logit above it is called anomalous),
    /// `J_b = Σ_normal min(m − τ, 0)/N_normal + Σ_anomalous min(τ − m, 0)/N_anomalous`, so a cell that has crossed
    /// τ no longer pulls the gradient and the others get it all. JSON `"patches_sea"`.
    case patchesSEA = "patches_sea"

    /// τ of ``patchesSEA``: the map value at which a cell counts as anomalous (a PatchGuard logit 0 = p 0.5).
    public static let flipThreshold: Float = 0

    /// The attacked quantity as ``metrics.json`` spells it (`"target"`): `"pixel (patch labels)"`,
    /// `"image (image labels)"`, `"image (top-k score)"`, `"pixel (unflipped patches)"`.
    public var reportName: String {
        switch self {
        case .patches: return "pixel (patch labels)"
        case .image: return "image (image labels)"
        case .imageTopK: return "image (top-k score)"
        case .patchesSEA: return "pixel (unflipped patches)"
        }
    }

    /// Short form for tables and labels: `""` (the paper's), `"image"`, `"image_topk"`, `"patches_sea"`.
    public var shortName: String { self == .patches ? "" : rawValue }

    /// Whether the objective attacks the image score (else the map).
    public var attacksImageScore: Bool { self == .image || self == .imageTopK }
}

/// ``PGDTarget``'s objective for one batch, with the labels at the detector's map resolution (B, M), 1 =
/// anomalous; an image is defective when any cell is.
public struct TargetObjective: AttackObjective {
    public let target: PGDTarget
    public let labels: [Float]
    public let mapCount: Int

    public init(target: PGDTarget, labels: [Float], mapCount: Int) {
        self.target = target; self.labels = labels; self.mapCount = mapCount
    }

    public var needsOutput: Bool { target == .imageTopK || target == .patchesSEA }

    func imageSigns(batch B: Int) -> [Float] {
        (0..<B).map { b in (0..<mapCount).contains { labels[b * mapCount + $0] > 0.5 } ? -1 : 1 }
    }

    public func values(_ output: DetectorOutput, batch B: Int) -> [Float] {
        let M = mapCount
        switch target {
        case .patches, .image:
            return labels.withUnsafeBufferPointer {
                pgdObjective(logits: output.maps, labels: $0.baseAddress!, batch: B, patches: M, target: target)
            }
        case .imageTopK:
            return zip(imageSigns(batch: B), output.scores).map { $0 * $1 }
        case .patchesSEA:
            return (0..<B).map { b in seaTerms(output.maps, b).value }
        }
    }

    /// `J_b` of ``PGDTarget/patchesSEA`` and its map gradient for image b.
    func seaTerms(_ maps: [Float], _ b: Int) -> (value: Float, grad: [Float]) {
        let M = mapCount, tau = PGDTarget.flipThreshold
        var anomalous = 0
        for p in 0..<M where labels[b * M + p] > 0.5 { anomalous += 1 }
        let normal = M - anomalous
        var v: Float = 0
        var g = [Float](repeating: 0, count: M)
        for p in 0..<M {
            let m = maps[b * M + p]
            if labels[b * M + p] > 0.5 {
                if m > tau { v += (tau - m) / Float(anomalous); g[p] = -1 / Float(anomalous) }
            } else if m < tau {
                v += (m - tau) / Float(normal); g[p] = 1 / Float(normal)
            }
        }
        return (v, g)
    }

    public func gradient(_ output: DetectorOutput?, batch B: Int) -> OutputGradient {
        switch target {
        case .patches, .image:
            return OutputGradient(dMaps: labels.withUnsafeBufferPointer {
                pgdObjectiveGradient(labels: $0.baseAddress!, batch: B, patches: mapCount, target: target)
            })
        case .imageTopK:
            return OutputGradient(dScores: imageSigns(batch: B))
        case .patchesSEA:
            guard let output else { preconditionFailure("patches_sea needs the current map") }
            return OutputGradient(dMaps: (0..<B).flatMap { seaTerms(output.maps, $0).grad })
        }
    }
}

/// PGD's objective for the linear targets `.patches` and `.image` (labels (B, Np), 1 = anomalous). Raising it
/// makes normal patches (or images) look anomalous and anomalies look normal. Returns the gradient of the summed
/// objective w.r.t. the logits (constant: the objective is linear). The other targets: ``TargetObjective``.
public func pgdObjectiveGradient(labels: UnsafePointer<Float>, batch B: Int, patches Np: Int,
                                 target: PGDTarget = .patches) -> [Float] {
    precondition(target == .patches || target == .image, "pgdObjectiveGradient: \(target) is not linear")
    var d = [Float](repeating: 0, count: B * Np)
    if target == .image {
        for b in 0..<B {
            var anomalous = false
            for p in 0..<Np where labels[b * Np + p] > 0.5 { anomalous = true }
            for p in 0..<Np { d[b * Np + p] = (anomalous ? -1 : 1) / Float(Np) }
        }
        return d
    }
    for b in 0..<B {
        var anomalous = 0
        for p in 0..<Np where labels[b * Np + p] > 0.5 { anomalous += 1 }
        let normal = Np - anomalous
        for p in 0..<Np {
            if labels[b * Np + p] > 0.5 { d[b * Np + p] = -1 / Float(anomalous) } else { d[b * Np + p] = 1 / Float(normal) }
        }
    }
    return d
}

/// The objective's value per image, for reports and tests.
public func pgdObjective(logits: [Float], labels: UnsafePointer<Float>, batch B: Int, patches Np: Int,
                         target: PGDTarget = .patches) -> [Float] {
    let g = pgdObjectiveGradient(labels: labels, batch: B, patches: Np, target: target)
    return (0..<B).map { b in (0..<Np).reduce(Float(0)) { $0 + g[b * Np + $1] * logits[b * Np + $1] } }
}
