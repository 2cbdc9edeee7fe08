import PatchGuardCore
import PatchGuardMethod
import PatchGuardMetrics

/// The display normalisation of heat maps: `t = clamp((v − lower) / (upper − lower), 0, 1)`, with ONE `lower`
/// and `upper` for the whole test set (per-image min–max would stretch a normal image's noise to full red).
///
/// Statistics are fitted on the clean maps of all test images and applied unchanged to the attacked maps, so an
/// attack that lifts a normal image's scores shows as more red; values outside the bounds saturate.
///
/// - ``Method/minMax``: lower = min, upper = max over every pixel of every clean map.
/// - ``Method/percentiles(lower:upper:)``: the `lower` and `upper` percentiles (in [0, 100], linear interpolation
///   between order statistics, numpy's default) over those pixels — robust to a few extreme pixels.
public struct HeatmapNormalization: Codable, Sendable, Equatable {
    public enum Method: Sendable, Equatable {
        case minMax
        case percentiles(lower: Double, upper: Double)
    }

    public var lower: Float
    public var upper: Float
    /// How the bounds were found, for reports (`"min-max"`, `"percentiles 1–99"`).
    public var method: String

    public init(lower: Float, upper: Float, method: String = "fixed") {
        self.lower = lower; self.upper = upper; self.method = method
    }

    /// Fits the bounds on `maps` (all the clean maps of the test set). Throws on no maps or a NaN value, or a
    /// percentile outside [0, 100] / lower ≥ upper.
    public static func fit(_ maps: [ScoreMap], method: Method = .minMax) throws -> HeatmapNormalization {
        let count = maps.reduce(0) { $0 + $1.values.count }
        guard count > 0 else { throw PatchGuardError.invalidArgument("heat-map normalisation: no maps") }
        switch method {
        case .minMax:
            var lo = Float.infinity, hi = -Float.infinity
            for m in maps {
                for v in m.values {
                    guard !v.isNaN else { throw PatchGuardError.numeric("heat-map normalisation: NaN in a map") }
                    lo = min(lo, v); hi = max(hi, v)
                }
            }
            return HeatmapNormalization(lower: lo, upper: hi, method: "min-max")
        case let .percentiles(pl, pu):
            guard pl >= 0, pu <= 100, pl < pu else {
                throw PatchGuardError.invalidArgument("heat-map normalisation: percentiles \(pl), \(pu) must satisfy 0 ≤ lower < upper ≤ 100")
            }
            // Order-preserving keys + O(n) radix sort (the metrics' machinery): exact order statistics.
            var keys = [UInt32]()
            keys.reserveCapacity(count)
            for m in maps {
                for v in m.values {
                    guard !v.isNaN else { throw PatchGuardError.numeric("heat-map normalisation: NaN in a map") }
                    keys.append(orderedKey(v))
                }
            }
            var temp = [UInt32](repeating: 0, count: count)
            temp.withUnsafeMutableBufferPointer { t in keys.withUnsafeMutableBufferPointer { radixSort($0, temp: t, shift: 0) } }
            func quantile(_ p: Double) -> Float {
                let pos = p / 100 * Double(count - 1)
                let i = Int(pos.rounded(.down)), j = min(i + 1, count - 1)
                let f = Float(pos - Double(i))
                let a = floatFromKey(keys[i]), b = floatFromKey(keys[j])
                return a + (b - a) * f
            }
            return HeatmapNormalization(lower: quantile(pl), upper: quantile(pu),
                                        method: "percentiles \(EvaluationReport.trim(pl))–\(EvaluationReport.trim(pu))")
        }
    }

    /// `clamp((v − lower) / (upper − lower), 0, 1)`; a constant test set (`upper ≤ lower`) maps everything to 0.
    @inline(__always)
    public func unit(_ v: Float) -> Float {
        guard upper > lower else { return 0 }
        let t = (v - lower) / (upper - lower)
        return t.isNaN ? 0 : min(1, max(0, t))
    }
}
