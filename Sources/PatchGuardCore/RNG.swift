/// Seeded random numbers, passed explicitly (`using: &rng`) everywhere; no global generator.
///
/// SplitMix64: tiny state (one `UInt64`, checkpointed as is), good statistical quality, and cheap independent
/// streams: `SeededRNG(seed: s, stream: i)` gives work item `i` its own generator, so parallel loops produce the same
/// result whatever the thread count.
public struct SeededRNG: RandomNumberGenerator, Sendable, Codable, Equatable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    /// An independent stream derived from `seed` and a stream index.
    public init(seed: UInt64, stream: UInt64) {
        var mixer = SeededRNG(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03))
        state = mixer.next() ^ stream
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [lo, hi).
    @inlinable
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }

    /// Standard normal (Box–Muller; one of the pair is discarded so the stream position is simple to reason about).
    @inlinable
    public mutating func normal() -> Double {
        var u1 = uniform()
        while u1 <= .leastNormalMagnitude { u1 = uniform() }
        let u2 = uniform()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }

    /// Uniform integer in `range`.
    @inlinable
    public mutating func int(in range: Range<Int>) -> Int { Int.random(in: range, using: &self) }

    /// Fills `buffer` with N(mean, std²) samples (truncated to ±2 std when `truncate`, as timm's trunc_normal_ does).
    public mutating func fillNormal<T: NNScalar>(_ buffer: UnsafeMutableBufferPointer<T>, mean: Double = 0,
                                                 std: Double, truncate: Bool = false) {
        for i in buffer.indices {
            var z = normal()
            if truncate { while abs(z) > 2 { z = normal() } }
            buffer[i] = T(mean + std * z)
        }
    }

    public mutating func fillUniform<T: NNScalar>(_ buffer: UnsafeMutableBufferPointer<T>, lo: Double, hi: Double) {
        for i in buffer.indices { buffer[i] = T(uniform(lo, hi)) }
    }
}

import Foundation
@usableFromInline func _log(_ x: Double) -> Double { Foundation.log(x) }
@usableFromInline func _cos(_ x: Double) -> Double { Foundation.cos(x) }
