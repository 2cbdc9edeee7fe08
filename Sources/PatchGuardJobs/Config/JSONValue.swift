import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// A JSON document as a tree, used to check a job config strictly before it is decoded into ``JobConfig``:
/// unknown keys, `--set` overrides and defaults are all resolved on this tree.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .number(d):
            if d == d.rounded(), abs(d) < 1e15 { try c.encode(Int64(d)) } else { try c.encode(d) }
        case let .string(s): try c.encode(s)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }

    /// The JSON type name used in error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The value as an error message shows it: `2.5`, `"abc"`, `true`, `an array`.
    public var shortDescription: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return "\(b)"
        case let .number(d): return d == d.rounded() && abs(d) < 1e15 ? "\(Int64(d))" : "\(d)"
        case let .string(s): return "\"\(s)\""
        case .array, .object: return typeName
        }
    }

    /// One-line JSON (`"vit_cpu_tiny"`, `[2, 4]`, `{"heads":4}`), for error messages.
    public var compactJSON: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? typeName
    }

    /// Parses a `--set` value: JSON if it parses (numbers, booleans, arrays, quoted strings, null), a fraction
    /// such as `8/255` as its number, anything else as a plain string.
    public static func parseCommandLineValue(_ text: String) -> JSONValue {
        if let v = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) { return v }
        if let f = fraction(text) { return .number(f) }
        return .string(text)
    }

    /// `"8/255"` → 0.03137…; nil for anything that is not `number/number`.
    static func fraction(_ text: String) -> Double? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2,
              let a = Double(parts[0].trimmingCharacters(in: .whitespaces)),
              let b = Double(parts[1].trimmingCharacters(in: .whitespaces)), b != 0 else { return nil }
        return a / b
    }
}
