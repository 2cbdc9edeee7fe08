import PatchGuardCore
import PatchGuardData

/// The held-back share of the normal training images (`train.validation_fraction`): never trained on, scored
/// with the final model to calibrate the decision threshold (``ScoreCalibration``), and available for model
/// selection (``Trainer/validation``).
///
/// `n_val = round(fraction · n)`, at least 1 when `fraction > 0` and `n ≥ 2`, at most `n − 1` (one image always
/// trains); `fraction = 0` or `n < 2` holds nothing back. Which images: the first `n_val` of a Fisher–Yates
/// permutation of `0..<n` drawn from `SeededRNG(seed: seed, stream: ValidationSplit.stream)`, so the split depends
/// only on the seed and the (sorted) training file list: the same on every run, machine and `--resume`. Both
/// index lists are returned in ascending order (the training set keeps the scan's order).
public enum ValidationSplit {
    /// The RNG stream of the split (apart from the batch sampler's per-epoch streams and the training passes').
    public static let stream: UInt64 = 0x5641_4C49_4400_0001

    /// `n_val` for `count` images.
    public static func validationCount(total count: Int, fraction: Double) -> Int {
        guard fraction > 0, count >= 2 else { return 0 }
        return min(count - 1, max(1, Int((fraction * Double(count)).rounded())))
    }

    /// The training and validation indices of `0..<count`.
    public static func indices(total count: Int, fraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
        let k = validationCount(total: count, fraction: fraction)
        guard k > 0 else { return (Array(0..<max(0, count)), []) }
        var order = Array(0..<count)
        var rng = SeededRNG(seed: seed, stream: stream)
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        return (order[k...].sorted(), order[..<k].sorted())
    }
}

extension Trainer {
    /// Splits the loaded training images (``ValidationSplit``), keeps the validation ones in ``validation``, logs
    /// the counts and returns the images to train on.
    func holdOutValidation(_ samples: [LoadedSample]) -> [LoadedSample] {
        let fraction = config.train.validationFraction
        let (train, held) = ValidationSplit.indices(total: samples.count, fraction: fraction, seed: config.seed)
        validation = held.map { samples[$0] }
        if held.isEmpty {
            run.log("validation: none held back (train.validation_fraction = \(fraction), \(samples.count) images); "
                    + "no decision threshold will be stored")
        } else {
            run.log("validation: \(held.count) of \(samples.count) normal training images held back "
                    + "(train.validation_fraction = \(fraction)), training on \(train.count)")
        }
        return train.map { samples[$0] }
    }
}
