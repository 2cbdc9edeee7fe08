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

    /// Writes the file atomically: a temporary file in the same directory is written, `fsync`ed and renamed over
    /// `path` (then the directory is synced), so a crash leaves either the old file or the complete new one.
    /// - Throws: ``PatchGuardError/io(path:reason:)`` naming `path` if any step fails (the temporary file is removed).
    public func write(to path: String) throws {
        let ordered = ordered
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func fail(_ what: String) -> PatchGuardError {
            .io(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode_t(0o644))
        guard fd >= 0 else { throw fail("cannot create temporary file \(temporary)") }
        var done = false
        defer { if !done { close(fd); unlink(temporary) } }

        func writeAll(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { raw in
                var written = 0
                while written < raw.count {
                    let r = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                    if r < 0 && errno == EINTR { continue }
                    guard r > 0 else { throw fail("write failed after \(written) of \(raw.count) bytes") }
                    written += r
                }
            }
        }
        try writeAll(headerBytes(ordered))
        for (_, e) in ordered { try writeAll(e.data) }
        guard fsync(fd) == 0 else { throw fail("fsync failed") }
        done = true
        guard close(fd) == 0 else { unlink(temporary); throw fail("close failed") }
        guard rename(temporary, path) == 0 else { let e = fail("rename failed"); unlink(temporary); throw e }
        let dirFD = open(directory, O_RDONLY)  // best effort: make the rename itself durable
        if dirFD >= 0 { _ = fsync(dirFD); close(dirFD) }
    }
}
