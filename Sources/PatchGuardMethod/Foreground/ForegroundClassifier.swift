import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// The classifier whose Grad-CAM gives the foreground masks: a ViT preset with a head on its final-normed class
/// token, loaded from a safetensors checkpoint with timm names.
///
/// From the checkpoint: the class count (rows of `head.weight`) and the input size (rows of `pos_embed`: `1 + R + G²`,
/// or `G²` with `no_embed_class`, gives the grid `G`, and `S = G·patch`). Every parameter of the preset must be
/// present with its exact shape (``ViT/loadWeights(from:)``); extra tensors are ignored, except `fc_norm.*` (an
/// average-pooled head, which this classifier does not implement) which is refused.
public enum ForegroundClassifier {
    /// The message for object categories without a classifier (the CLI prints it as is).
    public static let missingWeightsMessage = """
        Grad-CAM foreground masks (foreground.method = "gradcam") need a classifier, but foreground.weights is \
        empty. Choose one:
          • set foreground.method to "border": masks from contrast with the image border, no classifier (one \
        object on a plain background, as in MVTec AD);
          • supply a ViT classifier checkpoint (safetensors, timm names, head included), e.g. an ImageNet \
        vit_small_patch16_224 exported with timm's `save_file(model.state_dict(), path)`: set foreground.weights to \
        its path and foreground.arch to its preset;
          • or, for a texture category, set data.category_type to "texture" (the whole image is the foreground, \
        no masks are needed).
        """

    /// Loads the classifier named by `config` (`arch` + `weights`) for Grad-CAM in Float.
    /// - Throws: ``PatchGuardError/config(_:)`` when `weights` is empty (``missingWeightsMessage``), the preset is
    ///   unknown, or the checkpoint does not fit the preset; ``PatchGuardError/io(path:reason:)`` when the file
    ///   cannot be read.
    public static func load(config: ForegroundConfig, maxBatch: Int = 4) throws -> ViT<Float> {
        try config.validate()
        guard !config.weights.isEmpty else { throw PatchGuardError.config(missingWeightsMessage) }
        let file = try SafeTensorsFile.load(path: config.weights)
        return try load(file: file, arch: config.arch, maxBatch: maxBatch)
    }

    /// Builds a ViT of preset `arch` sized from `file` and copies its parameters in.
    public static func load<T: NNScalar>(file: SafeTensorsFile, arch: String, maxBatch: Int) throws -> ViT<T> {
        let source = file.path
        func fail(_ m: String) -> PatchGuardError { .config("foreground.weights \(source): \(m)") }
        var cfg = try ViTConfig.preset(arch)
        guard let head = file.info("head.weight"), head.shape.count == 2, head.shape[0] >= 1 else {
            throw fail("no classifier head: expected a tensor 'head.weight' of shape (classes, \(cfg.dim)) — a "
                       + "backbone-only checkpoint cannot give Grad-CAM masks")
        }
        guard head.shape[1] == cfg.dim else {
            throw fail("head.weight is \(head.shape) but \(arch) has width \(cfg.dim): wrong foreground.arch?")
        }
        if file.contains("fc_norm.weight") {
            throw fail("has fc_norm (an average-pooled head); only class-token heads (timm global_pool='token') "
                       + "are supported")
        }
        cfg.numClasses = head.shape[0]
        guard let pos = file.info("pos_embed"), pos.shape.count == 3, pos.shape[2] == cfg.dim else {
            throw fail("no pos_embed of shape (1, tokens, \(cfg.dim))")
        }
        let patches = pos.shape[1] - (cfg.noEmbedClass ? 0 : cfg.numPrefixTokens)
        let grid = Int(Double(max(0, patches)).squareRoot().rounded())
        guard grid >= 1, grid * grid == patches else {
            throw fail("pos_embed has \(pos.shape[1]) rows, which is not \(cfg.noEmbedClass ? "" : "\(cfg.numPrefixTokens) + ")"
                       + "a square number of patches")
        }
        cfg.imageSize = grid * cfg.patchSize
        let model = try ViT<T>(config: cfg, maxBatch: maxBatch)
        do {
            try model.loadWeights(from: file)     // unused tensors (e.g. optimizer state) are ignored
        } catch let PatchGuardError.invalidArgument(m) {
            throw PatchGuardError.config("foreground.weights: \(m) (does foreground.arch = \"\(arch)\" match the "
                                         + "checkpoint?)")
        }
        return model
    }
}
