import Foundation

/// Builds a safetensors file byte-identical to what the reference writer (Python `safetensors.save_file`, Rust
/// `safetensors::serialize`) produces for the same tensors and metadata:
///
/// - data laid out by decreasing dtype rank (F64 before F32 before BF16 before F16 …), then by name (UTF-8 bytes);
/// - compact header JSON, `__metadata__` first (omitted when empty, keys sorted), then the tensors in data order,
///   each `{"dtype":…,"shape":[…],"data_offsets":[begin,end]}`;
/// - header padded with spaces to a multiple of 8 bytes, so every tensor starts 8-byte aligned.
///
/// Adding a name twice replaces the earlier tensor. Shapes must be non-negative and match the element count
/// (a precondition: these come from the caller's own tensors, not from user input).
public struct SafeTensorsWriter: Sendable {
    private struct Entry: Sendable {
        let dtype: SafeTensorsDType
        let shape: [Int]
        let data: [UInt8]  // little-endian
    }

    private var entries: [String: Entry] = [:]
    /// Free-form string metadata, written as `__metadata__`.
    public var metadata: [String: String] = [:]

    public init() {}

    /// Names added so far, in ascending UTF-8 byte order.
    public var names: [String] { entries.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }

    /// Adds an F32 tensor (row-major `floats`, `∏ shape` of them).
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, values: $0) }
    }

    /// Adds an F64 tensor (row-major `doubles`, `∏ shape` of them).
    public mutating func add(_ name: String, shape: [Int], doubles: [Double]) {
        doubles.withUnsafeBufferPointer { add(name, shape: shape, values: $0) }
    }

    /// Adds a tensor straight from memory (an arena view, a ``Tensor``): F32 for `Float`, F64 for `Double`;
    /// other scalar types are widened to F64.
    public mutating func add<T: NNScalar>(_ name: String, shape: [Int], values: UnsafeBufferPointer<T>) {
        checkShape(name, shape, values.count)
        let dtype: SafeTensorsDType = T.self == Float.self ? .F32 : .F64
        #if _endian(little)
        if T.self == Float.self || T.self == Double.self {
            entries[name] = Entry(dtype: dtype, shape: shape, data: Array(UnsafeRawBufferPointer(values)))
            return
        }
        #endif
        var data: [UInt8] = []
        data.reserveCapacity(dtype.size * values.count)
        for v in values {
            if dtype == .F32 {
                withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { data += $0 }
            } else {
                withUnsafeBytes(of: Double(v).bitPattern.littleEndian) { data += $0 }
            }
        }
        entries[name] = Entry(dtype: dtype, shape: shape, data: data)
    }

    /// Adds an F16 tensor: each Float rounded to the nearest binary16 (ties to even; beyond ±65504 → ±∞).
    public mutating func add(_ name: String, shape: [Int], float16 floats: [Float]) {
        checkShape(name, shape, floats.count)
        entries[name] = Entry(dtype: .F16, shape: shape, data: Self.pack16(floats, HalfPrecision.float16Bits))
    }

    /// Adds a BF16 tensor: each Float rounded to the nearest bfloat16 (ties to even).
    public mutating func add(_ name: String, shape: [Int], bfloat16 floats: [Float]) {
        checkShape(name, shape, floats.count)
        entries[name] = Entry(dtype: .BF16, shape: shape, data: Self.pack16(floats, HalfPrecision.bfloat16Bits))
    }

    /// Adds a tensor of any safetensors dtype from its little-endian bytes (e.g. an I64 step counter).
    /// - Throws: ``PatchGuardError/invalidArgument(_:)`` for an unknown dtype, a negative dimension or a byte
    ///   count other than `∏ shape × dtype size`.
    public mutating func add(_ name: String, shape: [Int], dtype: String, bytes: [UInt8]) throws {
        guard let t = SafeTensorsDType(rawValue: dtype) else {
            throw PatchGuardError.invalidArgument("tensor '\(name)': unknown safetensors dtype '\(dtype)'")
        }
        let elements = shape.reduce(Optional(1)) { acc, d in
            guard let acc, d >= 0 else { return nil }
            let (p, overflow) = acc.multipliedReportingOverflow(by: d)
            return overflow ? nil : p
        }
        guard let elements, elements.multipliedReportingOverflow(by: t.size) == (bytes.count, false) else {
            throw PatchGuardError.invalidArgument(
                "tensor '\(name)': \(bytes.count) bytes do not hold \(dtype) shape \(shape)")
        }
        entries[name] = Entry(dtype: t, shape: shape, data: bytes)
    }

    private func checkShape(_ name: String, _ shape: [Int], _ count: Int) {
        precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) == count,
                     "safetensors tensor '\(name)': \(count) values for shape \(shape)")
    }

    private static func pack16(_ floats: [Float], _ bits: (Float) -> UInt16) -> [UInt8] {
        var data = [UInt8](repeating: 0, count: 2 * floats.count)
        for (i, f) in floats.enumerated() {
            let b = bits(f)
            data[2 * i] = UInt8(truncatingIfNeeded: b)
            data[2 * i + 1] = UInt8(truncatingIfNeeded: b >> 8)
        }
        return data
    }

    // MARK: Encoding

    /// Tensors in data order: decreasing dtype rank, then name.
    private var ordered: [(name: String, entry: Entry)] {
        entries.map { (name: $0.key, entry: $0.value) }.sorted { a, b in
            a.entry.dtype.rank != b.entry.dtype.rank ? a.entry.dtype.rank > b.entry.dtype.rank
                                                     : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }

    /// The 8-byte length prefix followed by the space-padded header.
    private func headerBytes(_ ordered: [(name: String, entry: Entry)]) -> [UInt8] {
        var json: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func separator() { if !first { json.append(UInt8(ascii: ",")) }; first = false }
        if !metadata.isEmpty {
            separator()
            SafeTensorsJSON.appendString("__metadata__", to: &json)
            json += Array(":{".utf8)
            for (i, key) in metadata.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                SafeTensorsJSON.appendString(key, to: &json)
                json.append(UInt8(ascii: ":"))
                SafeTensorsJSON.appendString(metadata[key] ?? "", to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        var offset = 0
        for (name, e) in ordered {
            separator()
            SafeTensorsJSON.appendString(name, to: &json)
            let shape = e.shape.map(String.init).joined(separator: ",")
            json += Array(":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.data.count)]}".utf8)
            offset += e.data.count
        }
        json.append(UInt8(ascii: "}"))
        json += [UInt8](repeating: UInt8(ascii: " "), count: (8 - json.count % 8) % 8)
        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out += $0 }
        return out + json
    }

    /// The complete file image.
    public func encoded() -> [UInt8] {
        let ordered = ordered
        var out = headerBytes(ordered)
        out.reserveCapacity(out.count + ordered.reduce(0) { $0 + $1.entry.data.count })
        for (_, e) in ordered { out += e.data }
        return out
    }

    /// Writes the file atomically through ``AtomicFile`` (temporary file beside `path`, `fsync`, rename, folder
    /// `fsync`): a crash leaves either the old file or the complete new one. The header and each tensor's bytes are
    /// streamed, never concatenated.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` naming `path` if any step fails (the temporary file is removed).
    public func write(to path: String) throws {
        let ordered = ordered
        try AtomicFile.write(to: path) { emit in
            try headerBytes(ordered).withUnsafeBytes { try emit($0) }
            for (_, e) in ordered { try e.data.withUnsafeBytes { try emit($0) } }
        }
    }
}
