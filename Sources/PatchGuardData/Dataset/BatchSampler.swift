import PatchGuardCore
import PatchGuardImage

/// Seeded shuffling and batching of `count` sample indices.
///
/// Epoch `e`'s order is a Fisher–Yates permutation drawn from `SeededRNG(seed: seed, stream: e)`: the same seed
/// and epoch always give the same order (on every machine and thread count), different epochs give independent
/// orders, and no state is carried between epochs (resuming at epoch `e` needs nothing but `e`).
public struct BatchSampler: Sendable, Equatable {
    public let count: Int
    public let batchSize: Int
    public let seed: UInt64
    /// Shuffle each epoch (training); `false` keeps `0..<count` (evaluation).
    public let shuffle: Bool
    /// Drop the last batch when it has fewer than `batchSize` indices.
    public let dropLast: Bool

    public init(count: Int, batchSize: Int, seed: UInt64, shuffle: Bool = true, dropLast: Bool = false) throws {
        guard count >= 0 else { throw PatchGuardError.invalidArgument("sample count must be ≥ 0, got \(count)") }
        guard batchSize > 0 else {
            throw PatchGuardError.invalidArgument("batch size must be positive, got \(batchSize)")
        }
        self.count = count; self.batchSize = batchSize; self.seed = seed
        self.shuffle = shuffle; self.dropLast = dropLast
    }

    /// Batches per epoch: `⌊count / b⌋` when dropping the last partial batch, else `⌈count / b⌉`.
    public var batchesPerEpoch: Int {
        dropLast ? count / batchSize : (count + batchSize - 1) / batchSize
    }

    /// The order of epoch `epoch`: a permutation of `0..<count` (identity when not shuffling).
    public func permutation(epoch: Int) -> [Int] {
        var order = Array(0..<count)
        guard shuffle, count > 1 else { return order }
        var rng = SeededRNG(seed: seed, stream: UInt64(truncatingIfNeeded: epoch))
        // Fisher–Yates, written out so the order never depends on the standard library's shuffle algorithm.
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
        return order
    }

    /// Epoch `epoch`'s batches of indices, in order.
    public func batches(epoch: Int) -> [[Int]] {
        let order = permutation(epoch: epoch)
        var out: [[Int]] = []
        out.reserveCapacity(batchesPerEpoch)
        var start = 0
        while start < count {
            let end = min(count, start + batchSize)
            if end - start < batchSize && dropLast { break }
            out.append(Array(order[start..<end]))
            start = end
        }
        return out
    }
}
