import PatchGuardCore

/// Hyper-parameters of a ``ViT`` (timm `VisionTransformer` vocabulary). JSON keys are snake_case.
///
/// Derived sizes: grid `G = imageSize / patchSize`, patches `Np = G²`, prefix tokens `1 + numRegisters`
/// (class token first, then registers), tokens `N = 1 + numRegisters + Np`, head size `HS = dim / heads`,
/// MLP hidden size `int(dim · mlpRatio)`.
public struct ViTConfig: Codable, Equatable, Sendable {
    /// Input side length in pixels (square images), a multiple of `patchSize`.
    public var imageSize: Int
    public var patchSize: Int
    /// Embedding width `C`.
    public var dim: Int
    /// Number of transformer blocks.
    public var depth: Int
    /// Attention heads `NH` (must divide `dim`).
    public var heads: Int
    public var mlpRatio: Double
    /// Bias on the fused `qkv` projection (timm default true).
    public var qkvBias: Bool
    /// LayerScale initial value (`ls1.gamma`, `ls2.gamma`); 0 = no LayerScale. JSON also accepts a Bool
    /// (`true` = 1e-5, DINOv2's value).
    public var layerScale: Double
    /// Register tokens (`reg_token`), after the class token.
    public var numRegisters: Int
    /// timm `no_embed_class`: `pos_embed` covers only the patch tokens (see ``TokenEmbed``).
    public var noEmbedClass: Bool
    /// LayerNorm ε.
    public var lnEps: Double
    /// Classes of the head on the final-normed class token (timm `global_pool='token'`); 0 = no head.
    public var numClasses: Int

    public init(imageSize: Int = 224, patchSize: Int = 16, dim: Int, depth: Int, heads: Int, mlpRatio: Double = 4,
                qkvBias: Bool = true, layerScale: Double = 0, numRegisters: Int = 0, noEmbedClass: Bool = false,
                lnEps: Double = 1e-6, numClasses: Int = 0) {
        self.imageSize = imageSize; self.patchSize = patchSize; self.dim = dim; self.depth = depth
        self.heads = heads; self.mlpRatio = mlpRatio; self.qkvBias = qkvBias; self.layerScale = layerScale
        self.numRegisters = numRegisters; self.noEmbedClass = noEmbedClass; self.lnEps = lnEps
        self.numClasses = numClasses
    }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", patchSize = "patch_size", dim, depth, heads, mlpRatio = "mlp_ratio"
        case qkvBias = "qkv_bias", layerScale = "layer_scale", numRegisters = "num_registers"
        case noEmbedClass = "no_embed_class", lnEps = "ln_eps", numClasses = "num_classes"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ViTConfig(dim: 0, depth: 0, heads: 0)
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        dim = try c.decode(Int.self, forKey: .dim)
        depth = try c.decode(Int.self, forKey: .depth)
        heads = try c.decode(Int.self, forKey: .heads)
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? d.mlpRatio
        qkvBias = try c.decodeIfPresent(Bool.self, forKey: .qkvBias) ?? d.qkvBias
        if let flag = try? c.decodeIfPresent(Bool.self, forKey: .layerScale) {
            layerScale = flag ? 1e-5 : 0
        } else {
            layerScale = try c.decodeIfPresent(Double.self, forKey: .layerScale) ?? d.layerScale
        }
        numRegisters = try c.decodeIfPresent(Int.self, forKey: .numRegisters) ?? d.numRegisters
        noEmbedClass = try c.decodeIfPresent(Bool.self, forKey: .noEmbedClass) ?? d.noEmbedClass
        lnEps = try c.decodeIfPresent(Double.self, forKey: .lnEps) ?? d.lnEps
        numClasses = try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? d.numClasses
    }

    // MARK: derived sizes


    public var gridSize: Int { imageSize / patchSize }
    public var numPatches: Int { gridSize * gridSize }
    public var numPrefixTokens: Int { 1 + numRegisters }
    public var numTokens: Int { numPrefixTokens + numPatches }
    public var headSize: Int { dim / heads }
    public var mlpHidden: Int { Int(Double(dim) * mlpRatio) }
    public var hasLayerScale: Bool { layerScale != 0 }
    /// Rows of `pos_embed`: `Np` with `noEmbedClass`, else `1 + R + Np`.
    public var posEmbedRows: Int { noEmbedClass ? numPatches : numTokens }

    /// Throws ``PatchGuardError/config(_:)`` naming the first inconsistent field.
    public func validate() throws {
        func fail(_ m: String) throws -> Never { throw PatchGuardError.config("ViT config: \(m)") }
        if patchSize < 1 { try fail("patch_size must be ≥ 1, got \(patchSize)") }
        if imageSize < patchSize || imageSize % patchSize != 0 {
            try fail("image_size \(imageSize) must be a positive multiple of patch_size \(patchSize)")
        }
        if dim < 1 || depth < 1 || heads < 1 { try fail("dim, depth, heads must be ≥ 1 (got \(dim), \(depth), \(heads))") }
        if dim % heads != 0 { try fail("heads \(heads) must divide dim \(dim)") }
        if mlpHidden < 1 { try fail("mlp_ratio \(mlpRatio) gives an empty MLP") }
        if numRegisters < 0 || numClasses < 0 { try fail("num_registers and num_classes must be ≥ 0") }
        if !(lnEps > 0) { try fail("ln_eps must be > 0, got \(lnEps)") }
    }

    // MARK: presets (timm names)

    /// Names accepted by ``preset(_:imageSize:)``.
    public static let presetNames = ["vit_cpu_tiny", "vit_tiny_patch16_224", "vit_small_patch16_224",
                                     "vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2",
                                     "vit_base_patch16_224"]

    /// A timm architecture by name (no head: `numClasses = 0`; set it for a classifier). `imageSize` defaults to
    /// 224 for every preset (timm's DINOv2 models use 518; load their weights with position-embedding resampling).
    public static func preset(_ name: String, imageSize: Int = 224) throws -> ViTConfig {
        switch name {
        case "vit_cpu_tiny":
            // A small model for quick CPU jobs: 8×8 patches, width 128, 4 blocks.
            return ViTConfig(imageSize: imageSize, patchSize: 8, dim: 128, depth: 4, heads: 4)
        case "vit_tiny_patch16_224":
            return ViTConfig(imageSize: imageSize, patchSize: 16, dim: 192, depth: 12, heads: 3)
        case "vit_small_patch16_224":
            return ViTConfig(imageSize: imageSize, patchSize: 16, dim: 384, depth: 12, heads: 6)
        case "vit_small_patch14_dinov2":
            return ViTConfig(imageSize: imageSize, patchSize: 14, dim: 384, depth: 12, heads: 6, layerScale: 1e-5)
        case "vit_small_patch14_reg4_dinov2":
            return ViTConfig(imageSize: imageSize, patchSize: 14, dim: 384, depth: 12, heads: 6, layerScale: 1e-5,
                             numRegisters: 4, noEmbedClass: true)
        case "vit_base_patch16_224":
            return ViTConfig(imageSize: imageSize, patchSize: 16, dim: 768, depth: 12, heads: 12)
        default:
            let hint = presetNames.min { levenshtein($0, name) < levenshtein($1, name) } ?? ""
            throw PatchGuardError.config("unknown ViT architecture '\(name)' (did you mean '\(hint)'? known: "
                                         + presetNames.joined(separator: ", ") + ")")
        }
    }
}

