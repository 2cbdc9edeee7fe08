/// A minimal, strict JSON reader and writer for safetensors headers.
///
/// Why not `JSONSerialization`: the header must reject duplicate keys (Foundation keeps one silently), tell an
/// integer `2` from `2.5` or `2.0` (Foundation hands back `NSNumber`s whose kind differs between platforms), bound
/// nesting depth (a 100 MB header of `[[[[…` must not overflow the stack) and report the byte offset of an error.
/// Objects keep their key order; numbers keep their literal text so that the caller decides what they may be.
/// Output follows `serde_json` (compact, escapes only `"`, `\` and control characters), which is what the
/// reference safetensors writer uses, so headers are byte-identical.
enum SafeTensorsJSON: Equatable {
    case object([(key: String, value: SafeTensorsJSON)])
    case array([SafeTensorsJSON])
    case string(String)
    /// The number's literal text, already checked against the JSON number grammar.
    case number(String)
    case bool(Bool)
    case null

    static func == (a: SafeTensorsJSON, b: SafeTensorsJSON) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)), let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// A short name for error messages ("a string", "an array", …).
    var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    /// The value as a non-negative integer that fits in `Int`, or nil (`2.0`, `1e3`, `-1` and huge values are nil).
    var nonNegativeInt: Int? {
        guard case let .number(text) = self, !text.isEmpty,
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return Int(text)
    }

    // MARK: Parsing

    struct ParseError: Error { let offset: Int; let message: String }

    /// Parses one JSON value spanning `bytes`; only whitespace may follow it. `bytes` must be valid UTF-8.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = 64) throws -> SafeTensorsJSON {
        var parser = Parser(bytes: bytes, maxDepth: maxDepth)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.pos == bytes.count else { throw parser.error("unexpected trailing characters") }
        return value
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let maxDepth: Int
        var pos = 0

        init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) { self.bytes = bytes; self.maxDepth = maxDepth }

        func error(_ message: String) -> ParseError { ParseError(offset: pos, message: message) }

        var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

        mutating func skipWhitespace() {
            while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 }
        }

        mutating func expect(_ c: UInt8) throws {
            guard peek == c else { throw error("expected '\(Character(Unicode.Scalar(c)))'") }
            pos += 1
        }

        mutating func literal(_ word: String, _ value: SafeTensorsJSON) throws -> SafeTensorsJSON {
            for c in word.utf8 {
                guard peek == c else { throw error("invalid literal, expected '\(word)'") }
                pos += 1
            }
            return value
        }

        mutating func value(depth: Int) throws -> SafeTensorsJSON {
            guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
            guard let c = peek else { throw error("unexpected end of header") }
            switch c {
            case UInt8(ascii: "{"):
                pos += 1
                var members: [(key: String, value: SafeTensorsJSON)] = []
                skipWhitespace()
                if peek == UInt8(ascii: "}") { pos += 1; return .object(members) }
                while true {
                    skipWhitespace()
                    guard peek == UInt8(ascii: "\"") else { throw error("expected a string key") }
                    let key = try string()
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"))
                    skipWhitespace()
                    members.append((key, try value(depth: depth + 1)))
                    skipWhitespace()
                    if peek == UInt8(ascii: ",") { pos += 1; continue }
                    try expect(UInt8(ascii: "}"))
                    return .object(members)
                }
            case UInt8(ascii: "["):
                pos += 1
                var elements: [SafeTensorsJSON] = []
                skipWhitespace()
                if peek == UInt8(ascii: "]") { pos += 1; return .array(elements) }
                while true {
                    skipWhitespace()
                    elements.append(try value(depth: depth + 1))
                    skipWhitespace()
                    if peek == UInt8(ascii: ",") { pos += 1; continue }
                    try expect(UInt8(ascii: "]"))
                    return .array(elements)
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw error("unexpected character")
            }
        }

        /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
        mutating func number() throws -> SafeTensorsJSON {
            let start = pos
            func digits(_ p: inout Parser) -> Int {
                let s = p.pos
                while let c = p.peek, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") { p.pos += 1 }
                return p.pos - s
            }
            if peek == UInt8(ascii: "-") { pos += 1 }
            if peek == UInt8(ascii: "0") { pos += 1 } else if digits(&self) == 0 { throw error("invalid number") }
            if peek == UInt8(ascii: ".") {
                pos += 1
                guard digits(&self) > 0 else { throw error("invalid number: no digits after '.'") }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                pos += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
                guard digits(&self) > 0 else { throw error("invalid number: no digits in exponent") }
            }
            return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self))
        }

        mutating func hex4() throws -> UInt32 {
            guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw error("invalid \\u escape")
                }
                v = v << 4 | UInt32(d)
                pos += 1
            }
            return v
        }

        mutating func string() throws -> String {
            pos += 1  // opening quote
            var out: [UInt8] = []
            while true {
                guard let c = peek else { throw error("unterminated string") }
                pos += 1
                switch c {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let e = peek else { throw error("unterminated string") }
                    pos += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        if (0xD800..<0xDC00).contains(code) {
                            guard peek == UInt8(ascii: "\\"), pos + 1 < bytes.count, bytes[pos + 1] == UInt8(ascii: "u")
                            else { throw error("unpaired surrogate in \\u escape") }
                            pos += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(code) else { throw error("unpaired surrogate in \\u escape") }
                        out.append(contentsOf: String(Character(scalar)).utf8)
                    default: throw error("invalid escape")
                    }
                default:
                    guard c >= 0x20 else { throw error("control character in string") }
                    out.append(c)
                }
            }
        }
    }

    // MARK: Writing

    /// Appends `s` as a JSON string literal, escaped the way `serde_json` does.
    static func appendString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20: out += Array("\\u00".utf8) + [hex[Int(c >> 4)], hex[Int(c & 15)]]
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
