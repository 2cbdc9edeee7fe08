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
}

/// What PGD attacks.
/// What PGD attacks. JSON and `--target` spelling: `"patches"`, `"image"`.
public enum PGDTarget: String, ConfigEnum {
    /// The official PatchGuard attack, per image: mean logit of the normal patches minus mean logit of the
    /// anomalous patches (ground-truth patch labels). It attacks the pixel map. It is *not* an attack on the
    /// image score: on a defective image it raises every normal patch, which raises the top-k image score.
    case patches
    /// The image score, per image: + mean logit of all patches for a normal image, − for a defective one (image
    /// label = any anomalous patch). A smooth surrogate of the top-k mean that moves every patch the same way.
    case image

    /// The attacked quantity as ``metrics.json`` spells it (`"target"`): `"pixel (patch labels)"` or
    /// `"image (image labels)"`.
    public var reportName: String {
        switch self {
        case .patches: return "pixel (patch labels)"
        case .image: return "image (image labels)"
        }
    }
}

/// PGD's objective for `target` (``PGDTarget``; labels (B, Np), 1 = anomalous). Raising it makes normal
/// patches (or images) look anomalous and anomalies look normal. Returns the gradient of the summed objective
/// w.r.t. the logits (constant: the objective is linear).
public func pgdObjectiveGradient(labels: UnsafePointer<Float>, batch B: Int, patches Np: Int,
                                 target: PGDTarget = .patches) -> [Float] {
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
