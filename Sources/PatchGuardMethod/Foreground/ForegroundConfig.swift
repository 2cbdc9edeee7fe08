import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// Settings of the foreground masks (DESIGN.md §2 "Foreground masks"): Grad-CAM of a classifier (the paper) or,
/// without one, contrast with the image border. Embedded in the job config under `foreground`. snake_case JSON keys; every default lives in a property initialiser below.
///
/// ```json
/// "foreground": {
///   "method": "gradcam", "border_width": 0.05,
///   "arch": "vit_small_patch16_224", "weights": "/models/vit_small_patch16_224.safetensors",
///   "layer": 0, "target": "top1", "class_index": 0, "top_k": 5,
///   "threshold": "otsu", "quantile": 0.5, "dilation": 0, "min_component": 0, "largest_component": true
/// }
/// ```
/// The classifier is a ViT preset (`arch`) with a head on its final-normed class token, loaded from a safetensors
/// checkpoint with timm names (`weights`; the class count comes from `head.weight`, the input size from
/// `pos_embed`). With `method = "gradcam"` and no weights the masks cannot be computed: ``ForegroundMaskJob``
/// throws ``PatchGuardError/config(_:)`` explaining the ways out (the `"border"` method, `foreground.weights`, or
/// `data.category_type = "texture"`), and never writes all-ones masks silently. The default is `"border"`: it
/// needs nothing beyond the images, so training an object category works out of the box; Grad-CAM masks written
/// by `patchguard foreground` take precedence whenever they exist.
public struct ForegroundConfig: Codable, Equatable, Sendable {
    /// How masks are found: `"gradcam"` (the paper's way: Grad-CAM of an ImageNet classifier, `weights` required)
    /// or `"border"` (no classifier: what differs from the image border in colour or texture, for one object on a
    /// plain background; see `borderContrastMap`). With `"border"`, training computes missing masks itself.
    public var method: ForegroundMethod = .border
    /// `"border"` only: width of the border band that defines the background, as a fraction of the shorter side.
    public var borderWidth = 0.05
    /// ViT preset of the classifier (a name of `ViTConfig.presetNames`).
    public var arch = "vit_small_patch16_224"
    /// Safetensors checkpoint of the classifier with timm names, head included (`head.weight`, `head.bias`).
    /// Empty: no classifier (an error for object categories).
    public var weights = ""
    /// 1-based block whose tokens Grad-CAM explains, read at the block's norm1 output (the normalised tokens
    /// entering its attention, pytorch-grad-cam's ViT recipe); `0` = the last block (`blocks[-1].norm1`).
    public var layer = 0
    /// Target score: `"top1"` (the top predicted class logit), `"class"` (the logit of `class_index`) or
    /// `"topk"` (the sum of the `top_k` largest logits).
    public var target: GradCAMTargetKind = .top1
    /// Class explained when `target` is `"class"` (0-based, as in the checkpoint's head).
    public var classIndex = 0
    /// Number of top logits summed when `target` is `"topk"`.
    public var topK = 5
    /// `"otsu"` (Otsu's threshold on the min–max normalised map, 256 levels) or `"quantile"` (pixels above the
    /// `quantile`-quantile of the normalised map).
    public var threshold: ThresholdKind = .otsu
    /// Quantile in [0, 1) used by the `"quantile"` threshold: `0.5` keeps the brighter half.
    public var quantile = 0.5
    /// Radius in pixels of the square dilation applied to the final mask (0 = none).
    public var dilation = 0
    /// Connected components (8-neighbourhood) smaller than this many pixels are removed (0 = keep all).
    public var minComponent = 0
    /// Keep only the largest connected component, as the paper does.
    public var largestComponent = true

    public init() {}

    enum CodingKeys: String, CodingKey {
        case method, borderWidth = "border_width", arch, weights, layer, target, classIndex = "class_index", topK = "top_k", threshold, quantile
        case dilation, minComponent = "min_component", largestComponent = "largest_component"
    }

    /// The target as a typed value (call ``validate()`` first for a message naming the key).
    public var gradCAMTarget: GradCAMTarget {
        get throws {
            switch target {
            case .top1: return .top1
            case .classIndex: return .classIndex(classIndex)
            case .topK: return .topK(topK)
            }
        }
    }

    /// The threshold rule as a typed value.
    public var thresholdRule: ThresholdRule {
        get throws {
            switch threshold {
            case .otsu: return .otsu
            case .quantile: return .quantile(quantile)
            }
        }
    }

    /// The border-contrast settings (`method = "border"`).
    public var borderOptions: BorderContrastOptions {
        BorderContrastOptions(borderFraction: borderWidth, dilation: dilation)
    }

    /// The mask post-processing settings.
    public var maskOptions: ForegroundMaskOptions {
        get throws {
            ForegroundMaskOptions(threshold: try thresholdRule, dilation: dilation, minComponent: minComponent,
                                  largestComponent: largestComponent)
        }
    }

    /// Checks value ranges; the error names the key (`foreground.<key>`). Checks against the model (layer within
    /// its depth, class index within its classes) happen when the model is loaded.
    public func validate() throws {
        func fail(_ key: String, _ why: String) -> PatchGuardError { .config("foreground.\(key): \(why)") }
        if method == .border && !weights.isEmpty {
            throw fail("method", "foreground.weights is set but the method is \"border\", which uses no classifier; "
                       + "set foreground.method to \"gradcam\" to use it")
        }
        guard borderWidth.isFinite, borderWidth > 0, borderWidth < 0.5 else {
            throw fail("border_width", "must be in (0, 0.5), found \(borderWidth)")
        }
        _ = try gradCAMTarget
        _ = try thresholdRule
        guard layer >= 0 else {
            throw fail("layer", "must be ≥ 1 (a 1-based block) or 0 for the last block, found \(layer)")
        }
        guard classIndex >= 0 else { throw fail("class_index", "must be ≥ 0, found \(classIndex)") }
        guard topK >= 1 else { throw fail("top_k", "must be ≥ 1, found \(topK)") }
        guard quantile.isFinite, quantile >= 0, quantile < 1 else {
            throw fail("quantile", "must be in [0, 1), found \(quantile)")
        }
        guard dilation >= 0 else { throw fail("dilation", "must be ≥ 0, found \(dilation)") }
        guard minComponent >= 0 else { throw fail("min_component", "must be ≥ 0, found \(minComponent)") }
    }
}

/// `foreground.method`: Grad-CAM of a classifier (the paper) or contrast with the image border.
public enum ForegroundMethod: String, ConfigEnum {
    case border, gradcam
}

/// `foreground.target`: which logit Grad-CAM explains (with `class_index` / `top_k` it becomes a
/// ``GradCAMTarget``).
public enum GradCAMTargetKind: String, ConfigEnum {
    case top1
    case classIndex = "class"
    case topK = "topk"
}

/// `foreground.threshold`: how the normalised map becomes binary (with `quantile` it becomes a ``ThresholdRule``).
public enum ThresholdKind: String, ConfigEnum {
    case otsu, quantile
}

/// The score whose gradient Grad-CAM follows.
public enum GradCAMTarget: Equatable, Sendable, CustomStringConvertible {
    /// The largest logit of each image (ties: the lowest class index).
    case top1
    /// The logit of one class.
    case classIndex(Int)
    /// The sum of the `k` largest logits of each image.
    case topK(Int)

    public var description: String {
        switch self {
        case .top1: return "top1"
        case let .classIndex(c): return "class \(c)"
        case let .topK(k): return "top-\(k)"
        }
    }
}

/// How the normalised Grad-CAM map becomes binary.
public enum ThresholdRule: Equatable, Sendable {
    /// Otsu's threshold over 256 levels (see ``otsuThreshold(levels:)``).
    case otsu
    /// Pixels strictly above the `q`-quantile of the map's values (`q` in [0, 1)).
    case quantile(Double)
}

/// Post-processing of a thresholded map, in this order: threshold → drop components smaller than
/// `minComponent` pixels → keep the largest component (`largestComponent`) → square dilation by `dilation`
/// → whole-image fallback when nothing is left.
public struct ForegroundMaskOptions: Equatable, Sendable {
    public var threshold: ThresholdRule
    public var dilation: Int
    public var minComponent: Int
    public var largestComponent: Bool

    public init(threshold: ThresholdRule = .otsu, dilation: Int = 0, minComponent: Int = 0,
                largestComponent: Bool = true) {
        self.threshold = threshold; self.dilation = dilation; self.minComponent = minComponent
        self.largestComponent = largestComponent
    }
}
