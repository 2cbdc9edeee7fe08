import PatchGuardCore
import PatchGuardImage
import PatchGuardNN
import PatchGuardData

/// Settings of the foreground-aware pseudo-anomaly synthesis (DESIGN.md §2 "Pseudo-anomalies"), embedded in the job
/// config under `synthesis`. Defaults follow the official PatchGuard code (`RandomAugmentations` /
/// `AnomalyGenerator`), with these deliberate differences, each documented where it is implemented:
/// - the patch width and height are drawn uniformly in `[min_size, max_size]` (the official code draws them from the
///   foreground run lengths and never uses its upper bound);
/// - pixel-valued parameters live in [0, 1] (`perlin_threshold` 200/255 instead of 200);
/// - the elastic field is drawn from the sample's generator (the official code reuses one fixed field).
///
/// Sizes are in pixels of the configured image size (`data.image_size`).
public struct SynthesisConfig: Codable, Equatable, Sendable {
    /// Smallest patch side in pixels; also the fallback size when no larger placement is found.
    public var minSize = 14
    /// Largest patch side in pixels (width and height are drawn independently, so the aspect ratio varies).
    public var maxSize = 86
    /// Radius (pixels) of the square dilation of the foreground mask before sampling locations: a
    /// `(2r+1)×(2r+1)` structuring element, the official code's 3×3 kernel applied 10 times.
    public var dilation = 10
    /// Probability of each augmentation level.
    public var levelProbabilities = LevelProbabilities()
    /// The patch is rotated by an angle drawn uniformly in `[-max_rotation, max_rotation]` degrees.
    public var maxRotation = 90.0
    /// Random placements tried at sizes in `[min_size, max_size]` before falling back to `min_size × min_size`.
    public var maxAttempts = 250
    public var light = SynthesisLevelConfig.light
    public var medium = SynthesisLevelConfig.medium
    public var heavy = SynthesisLevelConfig.heavy

    public init() {}

    enum CodingKeys: String, CodingKey {
        case minSize = "min_size", maxSize = "max_size", dilation, levelProbabilities = "level_probabilities"
        case maxRotation = "max_rotation", maxAttempts = "max_attempts", light, medium, heavy
    }

    /// The settings of one level.
    public func level(_ level: AnomalyLevel) -> SynthesisLevelConfig {
        switch level {
        case .light: return light
        case .medium: return medium
        case .heavy: return heavy
        }
    }

    /// Checks value ranges; the error names the key (`synthesis.<key>`).
    public func validate() throws {
        func fail(_ key: String, _ why: String) -> PatchGuardError { .config("synthesis.\(key): \(why)") }
        guard minSize >= 1 else { throw fail("min_size", "must be ≥ 1, found \(minSize)") }
        guard maxSize >= minSize else { throw fail("max_size", "must be ≥ min_size (\(minSize)), found \(maxSize)") }
        guard dilation >= 0 else { throw fail("dilation", "must be ≥ 0, found \(dilation)") }
        guard maxAttempts >= 0 else { throw fail("max_attempts", "must be ≥ 0, found \(maxAttempts)") }
        guard maxRotation.isFinite, maxRotation >= 0, maxRotation <= 180 else {
            throw fail("max_rotation", "must be in [0, 180] degrees, found \(maxRotation)")
        }
        let p = levelProbabilities
        guard [p.light, p.medium, p.heavy].allSatisfy({ $0.isFinite && $0 >= 0 }), p.light + p.medium + p.heavy > 0
        else { throw fail("level_probabilities", "must be ≥ 0 with a positive sum, found \(p)") }
        for level in AnomalyLevel.allCases { try self.level(level).validate(key: "synthesis.\(level.rawValue)") }
    }
}

/// Augmentation strength of a pseudo-anomaly patch.
public enum AnomalyLevel: String, Codable, CaseIterable, Sendable {
    case light, medium, heavy
}

/// Probabilities of the levels (need not sum to 1: they are normalised). Official: 0.2 / 0.2 / 0.6.
public struct LevelProbabilities: Codable, Equatable, Sendable {
    public var light = 0.2
    public var medium = 0.2
    public var heavy = 0.6
    public init() {}
    public init(light: Double, medium: Double, heavy: Double) {
        self.light = light; self.medium = medium; self.heavy = heavy
    }

    /// Draws a level with probability proportional to its weight.
    public func sample(using rng: inout SeededRNG) -> AnomalyLevel {
        let u = rng.uniform() * (light + medium + heavy)
        if u < light { return .light }
        if u < light + medium { return .medium }
        return .heavy
    }
}

/// The augmentations a patch can receive. Colour jitter is applied to every patch; the others are drawn from a
/// level's pool.
public enum PatchAugmentation: String, Codable, CaseIterable, Sendable {
    case colorJitter = "color_jitter"
    case gaussianBlur = "gaussian_blur"
    case elastic
    case swirl
    case jpegArtifacts = "jpeg_artifacts"
    case perlinFill = "perlin_fill"
    case randomErasing = "random_erasing"
    case tornLines = "torn_lines"
}

/// A closed interval `[lo, hi]` of a random parameter, written in JSON as `[lo, hi]` (a single number means a fixed
/// value). Integer parameters (JPEG quality, counts) draw integers in `lo...hi`.
public struct ParamRange: Codable, Equatable, Sendable, CustomStringConvertible {
    public var lo: Double
    public var hi: Double

    public init(_ lo: Double, _ hi: Double) { self.lo = lo; self.hi = hi }
    public init(_ value: Double) { self.init(value, value) }

    public init(from decoder: Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let v = try? single.decode(Double.self) {
            self.init(v); return
        }
        var c = try decoder.unkeyedContainer()
        let lo = try c.decode(Double.self), hi = try c.decode(Double.self)
        guard c.isAtEnd else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "a range is [lo, hi]: two numbers")
        }
        self.init(lo, hi)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(lo); try c.encode(hi)
    }

    public var description: String { "[\(lo), \(hi)]" }

    /// Uniform in `[lo, hi]` (exactly `lo` when the range is a point).
    public func sample(using rng: inout SeededRNG) -> Double { lo == hi ? lo : rng.uniform(lo, hi) }

    /// Uniform integer in `ceil(lo)...floor(hi)`.
    public func sampleInt(using rng: inout SeededRNG) -> Int {
        let a = Int(lo.rounded(.up)), b = max(a, Int(hi.rounded(.down)))
        return a == b ? a : Int.random(in: a...b, using: &rng)
    }

    func check(_ key: String, within bounds: ClosedRange<Double>) throws {
        guard lo.isFinite, hi.isFinite, lo <= hi, bounds.contains(lo), bounds.contains(hi) else {
            throw PatchGuardError.config("\(key): must be [lo, hi] with lo ≤ hi inside \(bounds), found \(self)")
        }
    }
}

/// Parameter ranges of one augmentation level. Every patch gets colour jitter (brightness, contrast, saturation, hue
/// strengths as in torchvision's `ColorJitter`: a strength `b` gives a factor uniform in `[max(0, 1−b), 1+b]`, a
/// hue strength `h` a hue shift uniform in `[−h, h]`), inserted at a random position among `0…max_extra_augmentations`
/// distinct augmentations drawn from `augmentations`.
public struct SynthesisLevelConfig: Codable, Equatable, Sendable {
    /// The number of extra augmentations is uniform in `0...max_extra_augmentations` (official: 1, 2, 4).
    public var maxExtraAugmentations: Int
    /// Pool the extra augmentations are drawn from (distinct). Official pools: light = blur, elastic, swirl;
    /// medium = blur, swirl, JPEG, elastic; heavy = all seven.
    public var augmentations: [PatchAugmentation]
    public var brightness: ParamRange
    public var contrast: ParamRange
    public var saturation: ParamRange
    /// Hue strength, at most 0.5 (a full turn of the hue circle is 1).
    public var hue: ParamRange
    /// Standard deviation (pixels) of the Gaussian blur.
    public var blurSigma: ParamRange
    /// Elastic deformation: displacement = `alpha × (Gaussian(σ) ∗ U(−1, 1) noise)`, in pixels.
    public var elasticAlpha: ParamRange
    public var elasticSigma: Double
    /// Peak swirl angle (radians) at the patch centre.
    public var swirlStrength: ParamRange
    /// libjpeg quality (1–100).
    public var jpegQuality: ParamRange
    /// Perlin noise period (pixels) of the first octave.
    public var perlinScale: ParamRange
    /// Pixels whose min–max-normalised noise exceeds this threshold (in [0, 1]) are filled with a random colour.
    public var perlinThreshold: ParamRange
    public var perlinOctaves: Int
    /// Random erasing: each rectangle covers this fraction of the patch area …
    public var eraseRatio: ParamRange
    /// … and there are this many rectangles.
    public var eraseRects: ParamRange
    /// Torn lines: number of straight lines of a random corner colour of the RGB cube …
    public var tornLines: ParamRange
    /// … of this width in pixels.
    public var tornLineWidth: Int

    enum CodingKeys: String, CodingKey {
        case maxExtraAugmentations = "max_extra_augmentations", augmentations
        case brightness, contrast, saturation, hue, blurSigma = "blur_sigma"
        case elasticAlpha = "elastic_alpha", elasticSigma = "elastic_sigma", swirlStrength = "swirl_strength"
        case jpegQuality = "jpeg_quality", perlinScale = "perlin_scale", perlinThreshold = "perlin_threshold"
        case perlinOctaves = "perlin_octaves", eraseRatio = "erase_ratio", eraseRects = "erase_rects"
        case tornLines = "torn_lines", tornLineWidth = "torn_line_width"
    }

    public static let light = SynthesisLevelConfig(
        maxExtraAugmentations: 1, augmentations: [.gaussianBlur, .elastic, .swirl],
        brightness: ParamRange(0.1), contrast: ParamRange(0.1), saturation: ParamRange(0.1), hue: ParamRange(0.1),
        blurSigma: ParamRange(0.2, 0.5), elasticAlpha: ParamRange(10, 20), elasticSigma: 3,
        swirlStrength: ParamRange(0.5, 1.0), jpegQuality: ParamRange(30, 50),
        perlinScale: ParamRange(20, 50), perlinThreshold: ParamRange(200.0 / 255, 1), perlinOctaves: 6,
        eraseRatio: ParamRange(0.01, 0.05), eraseRects: ParamRange(1, 2), tornLines: ParamRange(1, 3),
        tornLineWidth: 1)

    public static let medium = SynthesisLevelConfig(
        maxExtraAugmentations: 2, augmentations: [.gaussianBlur, .swirl, .jpegArtifacts, .elastic],
        brightness: ParamRange(0.4), contrast: ParamRange(0.4), saturation: ParamRange(0.4), hue: ParamRange(0.3),
        blurSigma: ParamRange(0.8, 1.5), elasticAlpha: ParamRange(20, 40), elasticSigma: 3,
        swirlStrength: ParamRange(1.0, 1.5), jpegQuality: ParamRange(20, 30),
        perlinScale: ParamRange(10, 20), perlinThreshold: ParamRange(150.0 / 255, 200.0 / 255), perlinOctaves: 6,
        eraseRatio: ParamRange(0.05, 0.1), eraseRects: ParamRange(2, 3), tornLines: ParamRange(5, 10),
        tornLineWidth: 1)

    public static let heavy = SynthesisLevelConfig(
        maxExtraAugmentations: 4,
        augmentations: [.elastic, .tornLines, .jpegArtifacts, .perlinFill, .swirl, .randomErasing, .gaussianBlur],
        brightness: ParamRange(0.8, 1), contrast: ParamRange(0.8, 1), saturation: ParamRange(0.8, 1),
        hue: ParamRange(0.5), blurSigma: ParamRange(2, 3), elasticAlpha: ParamRange(40, 100), elasticSigma: 3,
        swirlStrength: ParamRange(1.5, 2), jpegQuality: ParamRange(1, 20),
        perlinScale: ParamRange(5, 10), perlinThreshold: ParamRange(128.0 / 255, 150.0 / 255), perlinOctaves: 6,
        eraseRatio: ParamRange(0.1, 0.2), eraseRects: ParamRange(3, 5), tornLines: ParamRange(10, 20),
        tornLineWidth: 1)

    func validate(key: String) throws {
        func fail(_ k: String, _ why: String) -> PatchGuardError { .config("\(key).\(k): \(why)") }
        guard maxExtraAugmentations >= 0 else { throw fail("max_extra_augmentations", "must be ≥ 0") }
        if augmentations.contains(.colorJitter) {
            throw fail("augmentations", "color_jitter is always applied; list only the extra augmentations")
        }
        guard Set(augmentations).count == augmentations.count else { throw fail("augmentations", "duplicates") }
        let unbounded = 0.0...Double.greatestFiniteMagnitude
        try brightness.check("\(key).brightness", within: unbounded)
        try contrast.check("\(key).contrast", within: unbounded)
        try saturation.check("\(key).saturation", within: unbounded)
        try hue.check("\(key).hue", within: 0...0.5)
        try blurSigma.check("\(key).blur_sigma", within: unbounded)
        try elasticAlpha.check("\(key).elastic_alpha", within: unbounded)
        guard elasticSigma > 0, elasticSigma.isFinite else { throw fail("elastic_sigma", "must be > 0") }
        try swirlStrength.check("\(key).swirl_strength", within: -100...100)
        try jpegQuality.check("\(key).jpeg_quality", within: 1...100)
        try perlinScale.check("\(key).perlin_scale", within: 0.5...1e6)
        try perlinThreshold.check("\(key).perlin_threshold", within: 0...1)
        guard (1...12).contains(perlinOctaves) else { throw fail("perlin_octaves", "must be in 1...12") }
        try eraseRatio.check("\(key).erase_ratio", within: 0...1)
        try eraseRects.check("\(key).erase_rects", within: 0...1000)
        try tornLines.check("\(key).torn_lines", within: 0...10000)
        guard tornLineWidth >= 1 else { throw fail("torn_line_width", "must be ≥ 1") }
    }
}
