import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// Strict loading of JSON job configs onto a defaults tree.
///
/// 1. The defaults (one place: the property initialisers of ``JobConfig``) are encoded into a `JSONValue` tree;
///    its keys are the schema.
/// 2. The user's file is parsed; every key must exist in the schema at the same path, otherwise the error names the
///    key path, the file and the closest valid key ("did you mean").
/// 3. The file is merged over the defaults, then `--set a.b.c=value` overrides are applied (same key check).
/// 4. The merged tree is decoded; a wrong type names the key path and the expected type.
public enum StrictConfig {
    /// The longest array a config may hold (any key: `train.reg_layers`, `eval.attacks`, …).
    public static let maxArrayLength = 1024

    /// Merges `user` over `defaults`, checking keys. `source` names the file (or `--set`) in errors.
    public static func merge(_ user: JSONValue, over defaults: JSONValue, path: [String] = [],
                             source: String) throws -> JSONValue {
        switch (defaults, user) {
        case let (.object(d), .object(u)):
            var out = d
            for key in u.keys.sorted() {
                guard let dv = d[key] else {
                    throw PatchGuardError.config(unknownKeyMessage(key: key, path: path, siblings: Array(d.keys),
                                                                   source: source))
                }
                out[key] = try merge(u[key]!, over: dv, path: path + [key], source: source)
            }
            return .object(out)
        case (.object, _):
            throw PatchGuardError.config("\(source): \(dotted(path)) must be an object, found \(user.typeName)")
        case let (.array(d), .array(u)):
            guard u.count <= maxArrayLength else {
                throw PatchGuardError.config("\(source): \(dotted(path)) has \(u.count) entries, over the limit of \(maxArrayLength)")
            }
            // Arrays replace the default; object elements are checked against (and completed from) the first
            // default element.
            guard let template = d.first, case .object = template else { return .array(u) }
            return .array(try u.enumerated().map { i, e in
                try merge(e, over: template, path: path + ["\(i)"], source: source)
            })
        case let (.number, .string(s)):
            // Fractions such as "8/255" are accepted wherever a number is expected.
            if let f = JSONValue.fraction(s) { return .number(f) }
            return user // the decoder reports the type error with the path
        default:
            return user
        }
    }

    /// Applies one `key.path=value` override to a merged tree; the key must exist in `schema`.
    /// The key path of a `--set key.path=value` assignment (`["key", "path"]`), or nil without `=`.
    public static func overrideKeyPath(_ assignment: String) -> [String]? {
        guard let eq = assignment.firstIndex(of: "=") else { return nil }
        return assignment[..<eq].split(separator: ".").map(String.init)
    }

    public static func applyOverride(_ assignment: String, to tree: JSONValue, schema: JSONValue) throws -> JSONValue {
        guard let keyPath = overrideKeyPath(assignment), let eq = assignment.firstIndex(of: "=") else {
            throw PatchGuardError.config("--set \(assignment): expected key.path=value (e.g. --set train.epochs=5)")
        }
        let valueText = String(assignment[assignment.index(after: eq)...])
        guard !keyPath.isEmpty else { throw PatchGuardError.config("--set \(assignment): empty key") }
        // Build {"a": {"b": value}} and merge it with the usual checks.
        var patch = JSONValue.parseCommandLineValue(valueText)
        for key in keyPath.reversed() { patch = .object([key: patch]) }
        _ = try merge(patch, over: schema, source: "--set \(assignment)")
        return try merge(patch, over: tree, source: "--set \(assignment)")
    }

    static func dotted(_ path: [String]) -> String { path.isEmpty ? "(top level)" : path.joined(separator: ".") }

    static func unknownKeyMessage(key: String, path: [String], siblings: [String], source: String) -> String {
        let full = dotted(path + [key])
        var message = "\(source): unknown key '\(full)'"
        if let best = closest(to: key, among: siblings) {
            message += "; did you mean '\(dotted(path + [best]))'?"
        }
        message += " Valid keys here: \(siblings.sorted().joined(separator: ", "))."
        return message
    }

    /// The candidate with the smallest edit distance, if it is close enough to be a plausible typo.
    public static func closest(to word: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }) else { return nil }
        return best.1 <= max(2, word.count / 3) ? best.0 : nil
    }

    /// Levenshtein distance (``PatchGuardCore/levenshtein(_:_:)``).
    public static func editDistance(_ a: String, _ b: String) -> Int { levenshtein(a, b) }

    /// The key path of a decoding error, as the tree spells it (`["eval", "attacks", "0", "steps"]`).
    static func keyPath(_ ctx: DecodingError.Context) -> [String] {
        ctx.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
    }

    static func context(_ error: DecodingError) -> DecodingError.Context? {
        switch error {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c): return c
        @unknown default: return nil
        }
    }

    /// The last `--set` whose key path contains the error's key, or lies inside it (`eval.attacks=[…]` for
    /// `eval.attacks.0.steps`; `train.epochs=abc` for `train.epochs`); nil when the file is to blame.
    public static func override(responsibleFor error: DecodingError, among overrides: [String]) -> String? {
        guard let ctx = context(error) else { return nil }
        let path = keyPath(ctx)
        return overrides.last { assignment in
            guard let eq = assignment.firstIndex(of: "=") else { return false }
            let keys = assignment[..<eq].split(separator: ".").map(String.init)
            let n = min(keys.count, path.count)
            return n > 0 && Array(keys.prefix(n)) == Array(path.prefix(n))
        }
    }

    /// A key of a path rebuilt from its spelling (`"0"` is an array index).
    public struct PathKey: CodingKey {
        public var stringValue: String
        public var intValue: Int?
        public init(_ key: String) { stringValue = key; intValue = Int(key) }
        public init?(stringValue: String) { self.init(stringValue) }
        public init?(intValue: Int) { self.init(String(intValue)) }
    }

    /// The first non-integral number in `tree` whose rounding changes how `T` decodes (the one an integer field
    /// rejected), or nil.
    public static func nonIntegerCulprit<T: Decodable>(in tree: JSONValue, decoding type: T.Type) -> [String]? {
        func leaves(_ node: JSONValue, _ path: [String]) -> [[String]] {
            switch node {
            case let .object(o): return o.keys.sorted().flatMap { leaves(o[$0]!, path + [$0]) }
            case let .array(a): return a.indices.flatMap { leaves(a[$0], path + ["\($0)"]) }
            case let .number(v): return v == v.rounded() ? [] : [path]
            default: return []
            }
        }
        func replacing(_ path: ArraySlice<String>, in node: JSONValue, with value: JSONValue) -> JSONValue {
            guard let key = path.first else { return value }
            switch node {
            case var .object(o): o[key] = replacing(path.dropFirst(), in: o[key] ?? .null, with: value); return .object(o)
            case var .array(a):
                guard let i = Int(key), a.indices.contains(i) else { return node }
                a[i] = replacing(path.dropFirst(), in: a[i], with: value); return .array(a)
            default: return node
            }
        }
        func topLevelCorrupt(_ t: JSONValue) -> Bool {
            do { _ = try JSONDecoder().decode(T.self, from: try JSONEncoder().encode(t)); return false } catch {
                if case let DecodingError.dataCorrupted(ctx) = error { return ctx.codingPath.isEmpty }
                return false
            }
        }
        for path in leaves(tree, []) {
            guard case let .number(v)? = value(at: path, in: tree) else { continue }
            if !topLevelCorrupt(replacing(path[...], in: tree, with: .number(v.rounded(.down)))) { return path }
        }
        return nil
    }

    /// The value at `path` in `tree`, if any.
    static func value(at path: [String], in tree: JSONValue) -> JSONValue? {
        var node = tree
        for key in path {
            switch node {
            case let .object(o): guard let next = o[key] else { return nil }; node = next
            case let .array(a): guard let i = Int(key), a.indices.contains(i) else { return nil }; node = a[i]
            default: return nil
            }
        }
        return node
    }

    /// Turns a `DecodingError` into a message naming the key path and the expected type (and, given the decoded
    /// `tree`, the value found). A number where an integer is expected (`train.epochs=2.5`) is a wrong type.
    public static func describe(_ error: DecodingError, source: String, tree: JSONValue? = nil) -> String {
        func path(_ ctx: DecodingError.Context) -> String { dotted(keyPath(ctx)) }
        func found(_ ctx: DecodingError.Context) -> JSONValue? { tree.flatMap { value(at: keyPath(ctx), in: $0) } }
        switch error {
        case let .typeMismatch(type, ctx):
            let detail = found(ctx).map { "found \($0.shortDescription)" } ?? ctx.debugDescription
            return "\(source): \(path(ctx)) has the wrong type: expected \(typeDescription(type)), \(detail)"
        case let .valueNotFound(type, ctx):
            return "\(source): \(path(ctx)) is missing or null: expected \(typeDescription(type))"
        case let .keyNotFound(key, ctx):
            return "\(source): missing key '\(dotted(ctx.codingPath.map(\.stringValue) + [key.stringValue]))'"
        case let .dataCorrupted(ctx):
            // A number that failed to decode was expected to be an integer (a Double takes any number).
            if case let .number(v)? = found(ctx) {
                return "\(source): \(path(ctx)) has the wrong type: expected an integer, found \(JSONValue.number(v).shortDescription)"
            }
            return "\(source): \(path(ctx)): \(ctx.debugDescription)"
        @unknown default:
            return "\(source): \(error)"
        }
    }

    static func typeDescription(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type, is Int64.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is Bool.Type: return "a boolean (true/false)"
        case is String.Type: return "a string"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return name
        }
    }
}
