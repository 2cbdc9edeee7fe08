import Foundation
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
    /// the counts and returns the images to train on. On `resume`, checks that the checkpoint was trained with
    /// the same split (its stored config has the same `train.validation_fraction` and `seed`); otherwise its
    /// "held-back" images were trained on, so ``validationIsClean`` is false and no threshold is calibrated.
    func holdOutValidation(_ samples: [LoadedSample], resume: Bool) -> [LoadedSample] {
        let fraction = config.train.validationFraction
        let (train, held) = ValidationSplit.indices(total: samples.count, fraction: fraction, seed: config.seed)
        validation = held.map { samples[$0] }
        validationIsClean = true
        if resume, !held.isEmpty, let problem = splitMismatch() {
            validationIsClean = false
            run.log("warning: \(problem): the validation images may have been trained on, so no decision threshold "
                    + "will be stored (predict then needs --threshold)")
        }
        if held.isEmpty {
            run.log("validation: none held back (train.validation_fraction = \(fraction), \(samples.count) images); "
                    + "no decision threshold will be stored")
        } else {
            run.log("validation: \(held.count) of \(samples.count) normal training images held back "
                    + "(train.validation_fraction = \(fraction)), training on \(train.count)")
        }
        return train.map { samples[$0] }
    }

    /// Why the checkpoint being resumed was not trained with this run's split, or nil.
    func splitMismatch() -> String? {
        guard let file = try? SafeTensorsFile.load(path: checkpointPath),
              let text = file.metadata["config"],
              let stored = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return nil }
        let train = stored["train"] as? [String: Any]
        guard let fraction = (train?["validation_fraction"] as? NSNumber)?.doubleValue else {
            return "\(checkpointPath) was trained before validation splits existed"
        }
        let seed = (stored["seed"] as? NSNumber)?.uint64Value
        if fraction != config.train.validationFraction || seed != config.seed {
            return "\(checkpointPath) was trained with train.validation_fraction = \(fraction) and seed "
                + "\(seed.map(String.init) ?? "?"), this run uses \(config.train.validationFraction) and \(config.seed)"
        }
        return nil
    }
}
