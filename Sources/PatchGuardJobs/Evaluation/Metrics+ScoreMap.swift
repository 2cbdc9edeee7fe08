import PatchGuardCore
import PatchGuardImage
import PatchGuardMethod
import PatchGuardMetrics

// The metrics (Core only) take plain score and mask arrays; these adapters feed them a score map and a mask image.

extension PixelAUROC {
    /// Adds one image: `map` and a one-channel `mask` of the same size (pixel anomalous when > 0.5).
    public mutating func update(map: ScoreMap, mask: Image) throws {
        try update(scores: map.values, mask: try binaryMask(mask, width: map.width, height: map.height))
    }
}

extension PixelMetrics {
    /// Adds one image: a score map and a one-channel mask image of the same size (anomalous when > 0.5).
    public mutating func update(map: ScoreMap, mask: Image) throws {
        try update(scores: map.values, mask: try binaryMask(mask, width: map.width, height: map.height),
                   width: map.width, height: map.height)
    }
}

/// A one-channel mask image → 0/1 bytes (`> 0.5` is anomalous), checked against the score map's size.
func binaryMask(_ mask: Image, width: Int, height: Int) throws -> [UInt8] {
    guard mask.channels == 1, mask.width == width, mask.height == height else {
        throw PatchGuardError.invalidArgument(
            "mask is \(mask.channels)×\(mask.height)×\(mask.width), score map is 1×\(height)×\(width)")
    }
    return mask.pixels.map { $0 > 0.5 ? 1 : 0 }
}
