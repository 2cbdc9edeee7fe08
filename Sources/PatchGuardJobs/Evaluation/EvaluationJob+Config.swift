import Foundation
import PatchGuardCore
import PatchGuardMethod

extension EvaluationJob {
    /// The keys the checkpoint decides: the model section except `model.weights` (the backbone's initial weights,
    /// replaced by the checkpoint's) and `model.precision` (how the products are computed, not what the model is:
    /// a model trained in one precision is evaluated in either), and `data.image_size`; `train` is taken from the checkpoint without a check
    /// (it shapes nothing that evaluation uses except the regulariser layers the model is built with).
    static func isModelKey(_ path: [String]) -> Bool {
        (path.first == "model" && path != ["model", "weights"] && path != ["model", "precision"])
            || path == ["data", "image_size"]
    }

    /// The job config for evaluating `checkpoint`; see ``EvaluationJob``. Returns warnings to log.
    public static func resolveConfig(checkpoint: String, configPath: String?,
                                     overrides: [String]) throws -> (JobConfig, [String]) {
        guard let stored = try SafeTensorsFile.load(path: checkpoint).metadata["config"] else {
            let used = configPath ?? "the built-in defaults"
            return (try JobConfig.load(path: configPath, overrides: overrides),
                    ["\(checkpoint) has no stored config (an old checkpoint); the model is built from \(used)"])
        }
        let source = "\(checkpoint) (stored config)"
        // `model.precision` is how a job computes, not what the model is: a checkpoint trained in bf16 is used in
        // fp32 (the default) unless the user asks for bf16, so it also runs on a CPU without AVX512_BF16.
        let trained = replacing(["model", "precision"],
                                in: try JobConfig.tree(json: Data(stored.utf8), source: source).merged,
                                from: JobConfig.defaultsTree)
        var tree = trained
        if let configPath {
            let file = try JobConfig.fileTree(path: configPath)
            // A key that a `--set` assigns is the override's to agree on (checked below), not the file's.
            let overridden = overrides.compactMap(StrictConfig.overrideKeyPath)
            if let key = firstModelDifference(stated: file.user, in: file.merged, from: trained, ignoring: overridden) {
                throw mismatch(key, source: configPath, given: file.merged, trained: trained, checkpoint: checkpoint)
            }
            // Keys were checked against the schema by `fileTree`; the file's stated values go over the checkpoint's.
            tree = try StrictConfig.merge(file.user, over: trained, source: configPath)
            for section in ["model", "train"] { tree = replacing([section], in: tree, from: trained) }
            tree = replacing(["data", "image_size"], in: tree, from: trained)
            tree = replacing(["model", "precision"], in: tree, from: file.user)  // the file's, when it states one
        }
        for assignment in overrides {
            let patched = try StrictConfig.applyOverride(assignment, to: trained, schema: JobConfig.defaultsTree)
            if let key = firstModelDifference(stated: patched, in: patched, from: trained) {
                throw mismatch(key, source: "--set \(assignment)", given: patched, trained: trained, checkpoint: checkpoint)
            }
        }
        return (try JobConfig.decode(tree, source: configPath ?? source, overrides: overrides), [])
    }

    static func mismatch(_ key: [String], source: String, given: JSONValue, trained: JSONValue,
                         checkpoint: String) -> PatchGuardError {
        func show(_ t: JSONValue) -> String { StrictConfig.value(at: key, in: t)?.compactJSON ?? "missing" }
        let k = key.joined(separator: ".")
        return .config("\(source): \(k) is \(show(given)) but \(checkpoint) was trained with \(k) = \(show(trained)); "
                       + "the model comes from the checkpoint: drop \(k) from the config (or --set) or make it agree")
    }

    /// The first model key (``isModelKey(_:)``) that `stated` spells out and whose value in `merged` differs
    /// from `trained`'s, skipping the paths under any of `ignoring`.
    static func firstModelDifference(stated: JSONValue, in merged: JSONValue, from trained: JSONValue,
                                     path: [String] = [], ignoring: [[String]] = []) -> [String]? {
        if ignoring.contains(where: { !$0.isEmpty && path.starts(with: $0) }) { return nil }
        if case let .object(o) = stated, case .object? = StrictConfig.value(at: path, in: trained) {
            for key in o.keys.sorted() {
                if let d = firstModelDifference(stated: o[key]!, in: merged, from: trained, path: path + [key],
                                                ignoring: ignoring) {
                    return d
                }
            }
            return nil
        }
        guard isModelKey(path) else { return nil }
        return StrictConfig.value(at: path, in: merged) == StrictConfig.value(at: path, in: trained) ? nil : path
    }

    /// `tree` with the value at `path` taken from `source` (unchanged when `source` lacks it).
    static func replacing(_ path: [String], in tree: JSONValue, from source: JSONValue) -> JSONValue {
        guard let value = StrictConfig.value(at: path, in: source) else { return tree }
        func setting(_ path: ArraySlice<String>, in node: JSONValue) -> JSONValue {
            guard let key = path.first else { return value }
            guard case var .object(o) = node else { return node }
            o[key] = setting(path.dropFirst(), in: o[key] ?? .null)
            return .object(o)
        }
        return setting(path[...], in: tree)
    }
}
