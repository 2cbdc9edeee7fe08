import Foundation

/// A safetensors file read into memory (https://github.com/huggingface/safetensors).
///
/// Layout, all little-endian:
/// ```
/// [0, 8)            N: UInt64, the header length in bytes (at most 100 MB)
/// [8, 8+N)          UTF-8 JSON object, optionally padded with spaces:
///                   {"__metadata__": {"k": "v", …},
///                    "name": {"dtype": "F32", "shape": [d0, d1, …], "data_offsets": [begin, end]}, …}
/// [8+N, end)        the data buffer; `begin`/`end` are relative to its start, row-major (C order)
/// ```
/// Validation follows the reference reader: every tensor's `end − begin` equals `∏ shape × dtype size`, the
/// tensors sorted by offset tile the data buffer exactly (no holes, no overlaps, nothing after the last one), names
/// are unique and `__metadata__` maps strings to strings. Anything else — truncated file, absurd header length,
/// invalid UTF-8 or JSON, missing or mistyped keys, unknown dtype, negative or non-integer dimensions, overflowing
/// sizes — throws ``PatchGuardError/io(path:reason:)`` naming the file and, where there is one, the tensor.
/// Parsing never reads out of bounds, whatever the bytes.
///
/// Reading converts F32, F64, F16 and BF16 to `Float` or `Double`; integer, boolean and FP8 tensors can be
/// listed and described but not read as floats.
public struct SafeTensorsFile: Sendable {
    /// Where the bytes came from (the file path, or the name given to ``parse(bytes:name:)``); used in errors.
    public let path: String
    /// The free-form `__metadata__` map (empty when the file has none).
    public var metadata: [String: String]
    /// Tensor names in ascending UTF-8 byte order.
    public private(set) var names: [String]

    private let bytes: [UInt8]
    private let dataStart: Int
    private let entries: [String: Entry]

    /// One header entry, with offsets absolute in `bytes`.
    private struct Entry: Sendable {
        let dtype: SafeTensorsDType
        let shape: [Int]
        let count: Int
        let begin: Int
        let end: Int
    }

    /// The header's maximum length, as in the reference implementation.
    static let maxHeaderLength = 100_000_000

    /// The dtype name (`"F32"`, `"BF16"`, `"I64"`, …) and shape of tensor `name`, or nil if there is none.
    public func info(_ name: String) -> (dtype: String, shape: [Int])? {
        guard let e = entries[name] else { return nil }
        return (e.dtype.rawValue, e.shape)
    }

    /// Whether the file holds a tensor called `name`.
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// Tensor `name` as Floats (F32 copied; F16, BF16 widened exactly; F64 rounded to nearest), row-major.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` if there is no such tensor or its dtype is not a float type.
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name, reading: "floats")
        return [Float](unsafeUninitializedCapacity: e.count) { out, n in
            decode(e, into: out.baseAddress!)
            n = e.count
        }
    }

    /// Tensor `name` as Doubles (all supported float dtypes convert exactly), row-major.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` if there is no such tensor or its dtype is not a float type.
    public func doubles(_ name: String) throws -> [Double] {
        let e = try entry(name, reading: "doubles")
        return [Double](unsafeUninitializedCapacity: e.count) { out, n in
            decode(e, into: out.baseAddress!)
            n = e.count
        }
    }

    /// Copies tensor `name` into `destination` (e.g. an arena view), converting to `T`; F32 → Float and
    /// F64 → Double are a single `memcpy` on little-endian hosts.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` for a missing tensor or non-float dtype,
    ///   ``PatchGuardError/invalidArgument(_:)`` when `destination.count` differs from the tensor's element count.
    public func copy<T: NNScalar>(_ name: String, into destination: UnsafeMutableBufferPointer<T>) throws {
        let e = try entry(name, reading: "\(T.self)")
        guard destination.count == e.count else {
            throw PatchGuardError.invalidArgument(
                "\(path): tensor '\(name)' has \(e.count) elements \(e.shape), destination holds \(destination.count)")
        }
        guard let base = destination.baseAddress else { return }
        if T.self == Float.self {
            base.withMemoryRebound(to: Float.self, capacity: e.count) { decode(e, into: $0) }
        } else if T.self == Double.self {
            base.withMemoryRebound(to: Double.self, capacity: e.count) { decode(e, into: $0) }
        } else {
            let values = try doubles(name)
            for i in 0..<e.count { base[i] = T(values[i]) }
        }
    }

    /// The raw little-endian bytes of tensor `name` (any dtype).
    public func rawBytes(_ name: String) throws -> ArraySlice<UInt8> {
        guard let e = entries[name] else { throw missing(name) }
        return bytes[e.begin..<e.end]
    }

    // MARK: Loading

    /// Reads and validates the safetensors file at `path`.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` if the file cannot be read or is malformed.
    public static func load(path: String) throws -> SafeTensorsFile {
        try parse(bytes: readWholeFile(path), name: path)
    }

    /// Validates an in-memory safetensors image; `name` stands for the path in errors.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` if the bytes are not a valid safetensors file.
    public static func parse(bytes: [UInt8], name: String) throws -> SafeTensorsFile {
        func fail(_ reason: String) -> PatchGuardError { .io(path: name, reason: reason) }
        guard bytes.count >= 8 else {
            throw fail("not a safetensors file: \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let headerLength = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard headerLength <= UInt64(maxHeaderLength) else {
            throw fail("header length \(headerLength) exceeds the \(maxHeaderLength)-byte limit (corrupt or not safetensors)")
        }
        let n = Int(headerLength)
        guard 8 + n <= bytes.count else {
            throw fail("header length \(n) runs past the end of the \(bytes.count)-byte file (truncated?)")
        }
        let dataStart = 8 + n, dataLength = bytes.count - dataStart

        let root: SafeTensorsJSON = try bytes.withUnsafeBufferPointer { all in
            let header = UnsafeBufferPointer(rebasing: all[8..<dataStart])
            guard String(decoding: header, as: UTF8.self).utf8.elementsEqual(header) else {
                throw fail("header is not valid UTF-8")
            }
            guard header.first == UInt8(ascii: "{") else { throw fail("header does not start with '{'") }
            do {
                return try SafeTensorsJSON.parse(header)
            } catch let e as SafeTensorsJSON.ParseError {
                throw fail("invalid JSON header at byte \(8 + e.offset): \(e.message)")
            }
        }
        guard case let .object(members) = root else { throw fail("header is not a JSON object") }

        var metadata: [String: String]? = nil
        var entries: [String: Entry] = [:]
        entries.reserveCapacity(members.count)
        for (key, value) in members {
            if key == "__metadata__" {
                guard metadata == nil else { throw fail("duplicate '__metadata__'") }
                var pairsRead: [String: String] = [:]
                switch value {
                case .null: break
                case let .object(pairs):
                    for (k, v) in pairs {
                        guard case let .string(s) = v else {
                            throw fail("__metadata__ value for '\(k)' is \(v.kindName), expected a string")
                        }
                        guard pairsRead.updateValue(s, forKey: k) == nil else { throw fail("duplicate __metadata__ key '\(k)'") }
                    }
                default: throw fail("'__metadata__' is \(value.kindName), expected an object of strings")
                }
                metadata = pairsRead
                continue
            }
            guard entries[key] == nil else { throw fail("duplicate tensor name '\(key)'") }
            entries[key] = try parseEntry(key, value, dataStart: dataStart, fail: fail)
        }

        // The reference reader's rule: sorted by offsets, the tensors tile [0, dataLength) exactly.
        let ordered = entries.sorted { ($0.value.begin, $0.value.end) < ($1.value.begin, $1.value.end) }
        var expected = dataStart
        for (name, e) in ordered {
            guard e.end <= bytes.count else {
                throw fail("tensor '\(name)': data_offsets [\(e.begin - dataStart), \(e.end - dataStart)] run past the \(dataLength)-byte data buffer")
            }
            guard e.begin == expected else {
                throw fail("tensor '\(name)': data starts at \(e.begin - dataStart), expected \(expected - dataStart) (\(e.begin < expected ? "overlaps the previous tensor" : "leaves a gap"))")
            }
            expected = e.end
        }
        guard expected == bytes.count else {
            throw fail("the tensors cover \(expected - dataStart) of the \(dataLength) data bytes (trailing bytes)")
        }

        return SafeTensorsFile(path: name, metadata: metadata ?? [:],
                               names: entries.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) },
                               bytes: bytes, dataStart: dataStart, entries: entries)
    }

    private static func parseEntry(_ name: String, _ value: SafeTensorsJSON, dataStart: Int,
                                   fail: (String) -> PatchGuardError) throws -> Entry {
        func bad(_ reason: String) -> PatchGuardError { fail("tensor '\(name)': \(reason)") }
        guard case let .object(fields) = value else { throw bad("entry is \(value.kindName), expected an object") }
        func field(_ key: String) throws -> SafeTensorsJSON {
            let matches = fields.filter { $0.key == key }
            guard matches.count == 1 else { throw bad(matches.isEmpty ? "missing '\(key)'" : "duplicate '\(key)'") }
            return matches[0].value
        }
        guard case let .string(dtypeName) = try field("dtype") else { throw bad("'dtype' is not a string") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw bad("unknown dtype '\(dtypeName)' (known: \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard case let .array(dims) = try field("shape") else { throw bad("'shape' is not an array") }
        var shape: [Int] = []
        var count = 1
        for d in dims {
            guard let v = d.nonNegativeInt else {
                throw bad("shape entry \(d.literalText) is not a non-negative integer")
            }
            shape.append(v)
            let (p, overflow) = count.multipliedReportingOverflow(by: v)
            guard !overflow else { throw bad("shape \(dims.map(\.literalText)) overflows") }
            count = p
        }
        guard case let .array(offsets) = try field("data_offsets"), offsets.count == 2,
              let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt else {
            throw bad("'data_offsets' must be [begin, end] with non-negative integers")
        }
        guard begin <= end else { throw bad("data_offsets [\(begin), \(end)]: begin > end") }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, byteCount == end - begin else {
            throw bad("\(dtypeName) shape \(shape) needs \(overflow ? "too many" : String(byteCount)) bytes, data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        guard end <= Int.max - dataStart else { throw bad("data_offsets [\(begin), \(end)] out of range") }
        return Entry(dtype: dtype, shape: shape, count: count, begin: dataStart + begin, end: dataStart + end)
    }

    /// The largest safetensors file read (16 GiB: ViT-B with AdamW moments is about 1 GiB).
    public static let maxFileBytes = 16 << 30

    /// Reads a whole regular file (no FIFOs or devices, at most ``maxFileBytes``; see ``RegularFile``).
    private static func readWholeFile(_ path: String) throws -> [UInt8] {
        try RegularFile.read(path: path, maxBytes: maxFileBytes, what: "safetensors file")
    }

    // MARK: Decoding

    private func missing(_ name: String) -> PatchGuardError {
        .io(path: path, reason: "no tensor named '\(name)' (\(names.count) tensors\(names.isEmpty ? "" : ", e.g. '\(names[0])'"))")
    }

    private func entry(_ name: String, reading what: String) throws -> Entry {
        guard let e = entries[name] else { throw missing(name) }
        guard e.dtype.isFloat else {
            throw PatchGuardError.io(path: path, reason:
                "tensor '\(name)' has dtype \(e.dtype.rawValue); reading \(what) needs F32, F64, F16 or BF16")
        }
        return e
    }

    private func decode(_ e: Entry, into out: UnsafeMutablePointer<Float>) {
        bytes.withUnsafeBytes { all in
            let src = UnsafeRawBufferPointer(rebasing: all[e.begin..<e.end])
            switch e.dtype {
            case .F32:
                #if _endian(little)
                if e.count > 0 { UnsafeMutableRawPointer(out).copyMemory(from: src.baseAddress!, byteCount: src.count) }
                #else
                for i in 0..<e.count { out[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                #endif
            case .F64:
                for i in 0..<e.count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .F16:
                for i in 0..<e.count { out[i] = HalfPrecision.float(fromFloat16Bits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .BF16:
                for i in 0..<e.count { out[i] = HalfPrecision.float(fromBFloat16Bits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            default:
                preconditionFailure("decode called for non-float dtype \(e.dtype)")  // entry(_:reading:) rejects these
            }
        }
    }

    private func decode(_ e: Entry, into out: UnsafeMutablePointer<Double>) {
        bytes.withUnsafeBytes { all in
            let src = UnsafeRawBufferPointer(rebasing: all[e.begin..<e.end])
            switch e.dtype {
            case .F64:
                #if _endian(little)
                if e.count > 0 { UnsafeMutableRawPointer(out).copyMemory(from: src.baseAddress!, byteCount: src.count) }
                #else
                for i in 0..<e.count { out[i] = Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
                #endif
            case .F32:
                for i in 0..<e.count { out[i] = Double(Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))) }
            case .F16:
                for i in 0..<e.count { out[i] = Double(HalfPrecision.float(fromFloat16Bits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            case .BF16:
                for i in 0..<e.count { out[i] = Double(HalfPrecision.float(fromBFloat16Bits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            default:
                preconditionFailure("decode called for non-float dtype \(e.dtype)")
            }
        }
    }
}

/// The element types of the safetensors format, in the reference implementation's order (increasing alignment;
/// the writer lays tensors out in decreasing order of this rank, then by name).
enum SafeTensorsDType: String, CaseIterable, Sendable {
    case BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64

    /// Bytes per element.
    var size: Int {
        switch self {
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3: return 1
        case .I16, .U16, .F16, .BF16: return 2
        case .I32, .U32, .F32: return 4
        case .F64, .I64, .U64: return 8
        }
    }

    /// Position in the reference ordering.
    var rank: Int { Self.allCases.firstIndex(of: self)! }

    var isFloat: Bool { self == .F32 || self == .F64 || self == .F16 || self == .BF16 }
}

extension SafeTensorsJSON {
    /// The value as it would appear in the header, shortened, for error messages.
    var literalText: String {
        switch self {
        case let .number(t): return t
        case let .string(s): return "\"\(s.prefix(40))\""
        case let .bool(b): return String(b)
        case .null: return "null"
        case .array, .object: return kindName
        }
    }
}
