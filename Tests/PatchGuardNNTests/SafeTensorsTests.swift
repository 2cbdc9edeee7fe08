import Foundation
import PatchGuardCore
import PatchGuardNN
import Testing

/// safetensors reader/writer: round trips, byte compatibility with the reference writer, F16/BF16 codecs and
/// rejection of malformed files (every error must be a `PatchGuardError.io` naming the file).
@Suite struct SafeTensorsTests {
    // MARK: Helpers

    /// A fresh empty directory under the system temporary directory.
    static func temporaryDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// `N` (little-endian u64) + `header` + `data`: a file image built by hand.
    static func image(_ header: String, _ data: [UInt8] = []) -> [UInt8] { image(bytes: Array(header.utf8), data) }

    static func image(bytes header: [UInt8], _ data: [UInt8] = []) -> [UInt8] {
        withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header + data
    }

    static func le(_ floats: [Float]) -> [UInt8] { floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
    static func le16(_ bits: [UInt16]) -> [UInt8] { bits.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }

    /// `info` as text, e.g. "F32 [2, 3]" (nil → "none").
    static func describe(_ info: (dtype: String, shape: [Int])?) -> String {
        info.map { "\($0.dtype) \($0.shape)" } ?? "none"
    }

    static let badPath = "/models/broken.safetensors"

    /// Expects `parse` to throw an `.io` error whose description names the file and contains every string in `mentions`.
    static func expectRejected(_ bytes: [UInt8], mentions: [String] = [], _ label: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let file = try SafeTensorsFile.parse(bytes: bytes, name: badPath)
            Issue.record("\(label): accepted, names \(file.names)", sourceLocation: sourceLocation)
        } catch let error as PatchGuardError {
            guard case let .io(path, _) = error else {
                Issue.record("\(label): expected .io, got \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(path == badPath, "\(label)", sourceLocation: sourceLocation)
            for m in [badPath] + mentions {
                #expect(error.description.contains(m), "\(label): '\(error.description)' does not mention '\(m)'",
                        sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("\(label): unexpected error type \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: Round trips

    @Test func roundTripF32AndF64WithMetadataThroughAFile() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"

        let weight: [Float] = [1.5, -2.25, 3.0e-8, .greatestFiniteMagnitude, -.leastNonzeroMagnitude, 0.1]
        let bias: [Double] = [.pi, -1e300, 0.1, .leastNonzeroMagnitude]
        var writer = SafeTensorsWriter()
        writer.add("blocks.0.attn.qkv.weight", shape: [2, 3], floats: weight)
        writer.add("blocks.0.attn.qkv.bias", shape: [4], doubles: bias)
        writer.add("scale", shape: [], floats: [0.5])  // 0-d tensor: one element
        writer.add("empty", shape: [0, 7], floats: [])
        writer.add("tête", shape: [1], floats: [7])
        writer.metadata = ["format": "pt", "epoch": "3", "note": "quote \" backslash \\ newline \n tab \t ctl \u{1} é 😀"]
        try writer.write(to: path)

        let file = try SafeTensorsFile.load(path: path)
        #expect(file.path == path)
        #expect(file.names == ["blocks.0.attn.qkv.bias", "blocks.0.attn.qkv.weight", "empty", "scale", "tête"])
        #expect(file.metadata == writer.metadata)
        #expect(Self.describe(file.info("blocks.0.attn.qkv.weight")) == "F32 [2, 3]")
        #expect(Self.describe(file.info("blocks.0.attn.qkv.bias")) == "F64 [4]")
        #expect(Self.describe(file.info("scale")) == "F32 []")
        #expect(file.info("missing") == nil)
        #expect(try file.floats("blocks.0.attn.qkv.weight").map(\.bitPattern) == weight.map(\.bitPattern))
        #expect(try file.doubles("blocks.0.attn.qkv.bias").map(\.bitPattern) == bias.map(\.bitPattern))
        #expect(try file.doubles("blocks.0.attn.qkv.weight") == weight.map(Double.init))  // widening is exact
        #expect(try file.floats("blocks.0.attn.qkv.bias") == bias.map(Float.init))        // narrowing rounds
        #expect(try file.floats("scale") == [0.5])
        #expect(try file.floats("empty") == [])
        #expect(try file.floats("tête") == [7])

        // The file on disk is exactly `encoded()`, its header is 8-byte aligned, and F64 data comes first.
        let onDisk = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(onDisk == writer.encoded())
        let n = Int(onDisk[0]) | Int(onDisk[1]) << 8
        #expect(n % 8 == 0)
        #expect(Array(onDisk[(8 + n)..<(8 + n + 8)]) == withUnsafeBytes(of: Double.pi.bitPattern.littleEndian, Array.init))
        // serde_json escaping of metadata: only quote, backslash and control characters are escaped.
        let header = String(decoding: onDisk[8..<(8 + n)], as: UTF8.self)
        #expect(header.contains(#""note":"quote \" backslash \\ newline \n tab \t ctl \u0001 é 😀""#))

        // Copy into caller memory (an arena view), in both scalar types, and a wrong-size destination.
        var floatBuffer = [Float](repeating: 0, count: 6)
        try floatBuffer.withUnsafeMutableBufferPointer { try file.copy("blocks.0.attn.qkv.weight", into: $0) }
        #expect(floatBuffer.map(\.bitPattern) == weight.map(\.bitPattern))
        var doubleBuffer = [Double](repeating: 0, count: 4)
        try doubleBuffer.withUnsafeMutableBufferPointer { try file.copy("blocks.0.attn.qkv.bias", into: $0) }
        #expect(doubleBuffer.map(\.bitPattern) == bias.map(\.bitPattern))
        var small = [Float](repeating: 0, count: 5)
        #expect(throws: PatchGuardError.self) {
            try small.withUnsafeMutableBufferPointer { try file.copy("blocks.0.attn.qkv.weight", into: $0) }
        }

        // Writing again replaces the file atomically and leaves no temporary file behind.
        writer.add("scale", shape: [], floats: [2])
        try writer.write(to: path)
        #expect(try SafeTensorsFile.load(path: path).floats("scale") == [2])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["model.safetensors"])
    }

    @Test func writerAcceptsMemoryFromArenasAndTensors() throws {
        let arena = Arena<Float>(layout: [("w", [3, 2]), ("b", [5])])
        for i in 0..<arena.totalCount { arena.storage[i] = Float(i) * 0.25 - 1 }
        let tensor = Tensor<Double>(shape: [2, 2], values: [1, 2, 3, 4.5])
        var writer = SafeTensorsWriter()
        for e in arena.entries {
            writer.add(e.name, shape: e.shape, values: UnsafeBufferPointer(arena[e.name].buffer))
        }
        writer.add("t", shape: tensor.shape, values: UnsafeBufferPointer(tensor.buffer))
        let file = try SafeTensorsFile.parse(bytes: writer.encoded(), name: "mem")
        #expect(try file.floats("w") == Array(arena["w"].buffer))
        #expect(try file.floats("b") == Array(arena["b"].buffer))
        #expect(Self.describe(file.info("t")) == "F64 [2, 2]")
        #expect(try file.doubles("t") == [1, 2, 3, 4.5])
        // Loading back into a second arena.
        let restored = Arena<Float>(sameLayoutAs: arena)
        for e in restored.entries { try file.copy(e.name, into: restored[e.name].buffer) }
        #expect(Array(restored["w"].buffer) == Array(arena["w"].buffer))
    }

    // MARK: Byte compatibility with the reference writer

    /// Expected images follow the reference implementation's own serialization tests (safetensors/src/tensor.rs:
    /// `test_serialization`, `test_serialization_forced_alignement`, `test_empty`): header lengths 64, 72, 8, 40.
    @Test func writerIsByteIdenticalToTheReferenceSerializer() throws {
        let data = Self.le([0, 1, 2, 3, 4, 5])

        var w1 = SafeTensorsWriter()
        w1.add("attn.0", shape: [1, 2, 3], floats: [0, 1, 2, 3, 4, 5])
        let e1 = Self.image(#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#, data)
        #expect(e1[0] == 64)
        #expect(w1.encoded() == e1)

        var w2 = SafeTensorsWriter()
        w2.add("attn0", shape: [1, 1, 2, 3], floats: [0, 1, 2, 3, 4, 5])
        let e2 = Self.image(#"{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}"# + "       ", data)
        #expect(e2[0] == 72)
        #expect(w2.encoded() == e2)

        #expect(SafeTensorsWriter().encoded() == [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
        var w3 = SafeTensorsWriter()
        w3.metadata = ["framework": "pt"]
        let e3 = Self.image(#"{"__metadata__":{"framework":"pt"}}"# + "     ")
        #expect(e3[0] == 40)
        #expect(w3.encoded() == e3)

        // Layout order: decreasing dtype alignment rank (F64 > F32 > BF16 > F16), then name.
        var w4 = SafeTensorsWriter()
        w4.add("a", shape: [1], float16: [1])
        w4.add("b", shape: [1], bfloat16: [1])
        w4.add("m", shape: [1], floats: [1])
        w4.add("c", shape: [1], floats: [2])
        w4.add("z", shape: [1], doubles: [1])
        let header4 = #"{"z":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"#
            + #""c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"m":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},"#
            + #""b":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]},"a":{"dtype":"F16","shape":[1],"data_offsets":[18,20]}}"#
        let padded4 = header4 + String(repeating: " ", count: (8 - header4.utf8.count % 8) % 8)
        let data4 = withUnsafeBytes(of: Double(1).bitPattern.littleEndian, Array.init) + Self.le([2, 1]) + Self.le16([0x3F80, 0x3C00])
        #expect(w4.encoded() == Self.image(padded4, data4))

        for (i, bytes) in [e1, e2, e3].enumerated() {
            let file = try SafeTensorsFile.parse(bytes: bytes, name: "ref\(i)")
            #expect(file.names.count == (i < 2 ? 1 : 0))
        }
    }

    /// Headers from other writers: pretty-printed JSON, `__metadata__` last, escaped names, tensors out of order.
    @Test func readerAcceptsOtherValidLayouts() throws {
        let header = """
        { "b" : {"shape": [2], "dtype": "F32", "data_offsets": [8, 16]},
          "\\u00e9\\ud83d\\ude00": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "extra": null},
          "__metadata__": {"format": "pt"} }\t\n
        """
        let file = try SafeTensorsFile.parse(bytes: Self.image(header, Self.le([1, 2, 3, 4])), name: "pretty")
        #expect(file.names == ["b", "é😀"])
        #expect(file.metadata == ["format": "pt"])
        #expect(try file.floats("é😀") == [1, 2])
        #expect(try file.floats("b") == [3, 4])
        let nullMetadata = try SafeTensorsFile.parse(bytes: Self.image(#"{"__metadata__":null}"#), name: "null")
        #expect(nullMetadata.metadata.isEmpty && nullMetadata.names.isEmpty)
    }

    /// The timm fixtures in Fixtures/ were written by Python (Tools/make_vit_fixtures.py, `json.dumps` with
    /// sorted keys: `__metadata__` among the tensors, not first). Values checked here were read with `struct` in Python;
    /// if the fixtures are regenerated (new seed or version), refresh them.
    @Test func readsThePythonWrittenFixtures() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        let plain = try SafeTensorsFile.load(path: fixtures.appendingPathComponent("vit_tiny_plain.safetensors").path)
        #expect(plain.names.count == 76)
        #expect(plain.metadata["format"] == "pt" && plain.metadata["config"]?.hasPrefix("{\"act\"") == true)
        #expect(Self.describe(plain.info("ref.loss")) == "F64 []")
        #expect(try plain.doubles("ref.loss").map(\.bitPattern) == [0x4030_60DE_4A33_AA97])
        #expect(Self.describe(plain.info("patch_embed.proj.weight")) == "F32 [24, 3, 7, 7]")
        #expect(try plain.floats("patch_embed.proj.weight").prefix(3).map(\.bitPattern) == [0xBDD2_9C1E, 0xBCC1_612B, 0xBE1E_1236])
        #expect(try plain.floats("cls_token").prefix(3).map(\.bitPattern) == [0x3F25_5B40, 0xBF9A_7A41, 0xBFDB_901F])

        // Re-encoding every tensor with our writer gives a file with the same contents.
        var writer = SafeTensorsWriter()
        writer.metadata = plain.metadata
        for name in plain.names {
            guard let info = plain.info(name) else { continue }
            if info.dtype == "F64" { writer.add(name, shape: info.shape, doubles: try plain.doubles(name)) }
            else { writer.add(name, shape: info.shape, floats: try plain.floats(name)) }
        }
        let again = try SafeTensorsFile.parse(bytes: writer.encoded(), name: "re-encoded")
        #expect(again.names == plain.names && again.metadata == plain.metadata)
        for name in plain.names {
            #expect(Array(try again.rawBytes(name)) == Array(try plain.rawBytes(name)), "\(name)")
        }

        let dinov2 = try SafeTensorsFile.load(path: fixtures.appendingPathComponent("vit_tiny_dinov2.safetensors").path)
        #expect(dinov2.names.count == 80)
        for name in dinov2.names { _ = try dinov2.doubles(name) }
    }

    // MARK: F16 / BF16

    @Test func decodesFloat16AndBFloat16KnownBitPatterns() throws {
        let f16: [(UInt16, Float)] = [
            (0x3C00, 1), (0xC100, -2.5), (0x7BFF, 65504), (0xFBFF, -65504), (0x0000, 0), (0x3555, 0.333251953125),
            (0x0001, 0x1p-24), (0x03FF, 1023 * 0x1p-24), (0x8001, -0x1p-24), (0x0400, 0x1p-14), (0x3BFF, 0.99951171875),
            (0x7C00, .infinity), (0xFC00, -.infinity),
        ]
        let bf16: [(UInt16, Float)] = [
            (0x3F80, 1), (0xC020, -2.5), (0x4049, 3.140625), (0x7F7F, Float(bitPattern: 0x7F7F_0000)),
            (0x0001, Float(bitPattern: 0x0001_0000)), (0x0080, .leastNormalMagnitude), (0x7F80, .infinity), (0xFF80, -.infinity),
        ]
        let nanBits: [UInt16] = [0x7E00, 0x7C01]
        var writer = SafeTensorsWriter()
        try writer.add("h", shape: [f16.count], dtype: "F16", bytes: Self.le16(f16.map(\.0)))
        try writer.add("hz", shape: [2], dtype: "F16", bytes: Self.le16([0x8000, 0x0000]))
        try writer.add("hnan", shape: [2], dtype: "F16", bytes: Self.le16(nanBits))
        try writer.add("b", shape: [bf16.count], dtype: "BF16", bytes: Self.le16(bf16.map(\.0)))
        let file = try SafeTensorsFile.parse(bytes: writer.encoded(), name: "half")
        #expect(try file.floats("h") == f16.map(\.1))
        #expect(try file.doubles("h") == f16.map { Double($0.1) })
        #expect(try file.floats("b") == bf16.map(\.1))
        #expect(try file.doubles("b") == bf16.map { Double($0.1) })
        #expect(try file.floats("hz").map(\.sign) == [.minus, .plus])
        #expect(try file.floats("hnan").allSatisfy(\.isNaN))
        #if !(os(macOS) && arch(x86_64))
        for bits in UInt16.min...UInt16.max {  // all 65536 patterns against the platform's Float16
            let mine = HalfPrecision.float(fromFloat16Bits: bits), reference = Float(Float16(bitPattern: bits))
            guard mine.bitPattern == reference.bitPattern || (mine.isNaN && reference.isNaN) else {
                Issue.record("F16 0x\(String(bits, radix: 16)): \(mine) ≠ \(reference)")
                return
            }
        }
        #endif
    }

    @Test func encodesFloat16AndBFloat16WithRoundingToNearestEven() throws {
        let f16Cases: [(Float, UInt16)] = [
            (1, 0x3C00), (-2.5, 0xC100), (65504, 0x7BFF), (65519, 0x7BFF), (65520, 0x7C00), (1e6, 0x7C00), (-1e6, 0xFC00),
            (1 + 0x1p-11, 0x3C00), (1 + 3 * 0x1p-11, 0x3C02), (1 + 0x1p-11 + 0x1p-20, 0x3C01),
            (0x1p-24, 0x0001), (0x1p-25, 0x0000), (0x1p-25 * 1.0001, 0x0001), (3 * 0x1p-25, 0x0002), (0x1p-30, 0),
            (0x1p-14 - 0x1p-25, 0x0400), (-0.0, 0x8000), (.infinity, 0x7C00), (-.infinity, 0xFC00),
        ]
        for (f, bits) in f16Cases {
            #expect(HalfPrecision.float16Bits(f) == bits, "F16(\(f))")
        }
        #expect(HalfPrecision.float(fromFloat16Bits: HalfPrecision.float16Bits(.nan)).isNaN)
        let bf16Cases: [(UInt32, UInt16)] = [
            (0x3F80_0000, 0x3F80), (0x3F80_8000, 0x3F80), (0x3F81_8000, 0x3F82), (0x3F80_8001, 0x3F81),
            (0x7F7F_FFFF, 0x7F80), (0x8000_0000, 0x8000), (0x0000_8000, 0x0000),
        ]
        for (x, bits) in bf16Cases {
            #expect(HalfPrecision.bfloat16Bits(Float(bitPattern: x)) == bits, "BF16(0x\(String(x, radix: 16)))")
        }
        #expect(HalfPrecision.float(fromBFloat16Bits: HalfPrecision.bfloat16Bits(.nan)).isNaN)

        // Random floats across the whole range: against the platform Float16 where it exists, and round trips.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var values: [Float] = []
        for _ in 0..<20_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32))
            if !f.isNaN { values.append(f) }
        }
        #if !(os(macOS) && arch(x86_64))
        for f in values where HalfPrecision.float16Bits(f) != Float16(f).bitPattern {
            Issue.record("F16 encode \(f): 0x\(String(HalfPrecision.float16Bits(f), radix: 16)) ≠ Float16 0x\(String(Float16(f).bitPattern, radix: 16))")
            break
        }
        #endif
        var writer = SafeTensorsWriter()
        writer.add("h", shape: [values.count], float16: values)
        writer.add("b", shape: [values.count], bfloat16: values)
        let file = try SafeTensorsFile.parse(bytes: writer.encoded(), name: "enc")
        #expect(try file.floats("h") == values.map { HalfPrecision.float(fromFloat16Bits: HalfPrecision.float16Bits($0)) })
        let bf = try file.floats("b")
        for (f, g) in zip(values, bf) where f.isFinite && g.isFinite && abs(f - g) > max(abs(f) * 0x1p-8, 0x1p-134) {
            Issue.record("BF16 \(f) → \(g): error above half an ulp")
            break
        }
    }

    // MARK: Reading errors

    @Test func nonFloatAndMissingTensorsAreNamedInErrors() throws {
        var writer = SafeTensorsWriter()
        try writer.add("step", shape: [1], dtype: "I64", bytes: [42, 0, 0, 0, 0, 0, 0, 0])
        try writer.add("mask", shape: [3], dtype: "BOOL", bytes: [1, 0, 1])
        let file = try SafeTensorsFile.parse(bytes: writer.encoded(), name: Self.badPath)
        #expect(Self.describe(file.info("step")) == "I64 [1]")
        #expect(Array(try file.rawBytes("step")) == [42, 0, 0, 0, 0, 0, 0, 0])
        for (name, dtype) in [("step", "I64"), ("mask", "BOOL")] {
            let error = #expect(throws: PatchGuardError.self) { try file.floats(name) }
            #expect(error.map { "\($0)".contains(name) && "\($0)".contains(dtype) && "\($0)".contains(Self.badPath) } == true)
            #expect(throws: PatchGuardError.self) { try file.doubles(name) }
        }
        let missing = #expect(throws: PatchGuardError.self) { try file.floats("weight") }
        #expect(missing.map { "\($0)".contains("'weight'") } == true)
        #expect(throws: PatchGuardError.self) {
            var w = SafeTensorsWriter()
            try w.add("x", shape: [2], dtype: "F32", bytes: [0, 0, 0])
        }
        #expect(throws: PatchGuardError.self) {
            var w = SafeTensorsWriter()
            try w.add("x", shape: [1], dtype: "Q4", bytes: [0])
        }
        #expect(throws: PatchGuardError.self) {  // overflowing shape: an error, not a trap
            var w = SafeTensorsWriter()
            try w.add("x", shape: [1 << 40, 1 << 40], dtype: "U8", bytes: [0])
        }
    }

    @Test func malformedFilesThrowNamingTheFile() {
        let ok = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let eight = [UInt8](repeating: 0, count: 8)
        Self.expectRejected([], mentions: ["8-byte"], "empty file")
        Self.expectRejected([16, 0, 0, 0, 0, 0, 0], mentions: ["7 bytes"], "7-byte file")
        Self.expectRejected(Array(Self.image(ok, eight).dropLast(60)), mentions: ["header length"], "header past end of file")
        Self.expectRejected([0, 0, 0, 0, 0, 0, 0, 0x80] + Array(ok.utf8), mentions: ["limit"], "header length 2^63")
        Self.expectRejected([0x00, 0xC2, 0xEB, 0x0B, 0, 0, 0, 0] + Array(ok.utf8), mentions: ["limit"], "header length 2e8")
        Self.expectRejected(Self.image(""), mentions: ["'{'"], "empty header")
        Self.expectRejected(Self.image("[]"), mentions: ["'{'"], "array header")
        Self.expectRejected(Self.image(#"{"w":"#), mentions: ["JSON"], "truncated JSON")
        Self.expectRejected(Self.image(#"{"w":{}} x"#), mentions: ["JSON"], "trailing garbage")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32",}}"#), mentions: ["JSON"], "trailing comma")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#), mentions: ["JSON"], "leading zero")
        Self.expectRejected(Self.image(#"{"\ud800":{}}"#), mentions: ["surrogate"], "lone surrogate")
        Self.expectRejected(Self.image("{\"w\u{1}\":{}}"), mentions: ["control"], "raw control character")
        Self.expectRejected(Self.image(bytes: Array("{".utf8) + [0xFF, 0xFE] + Array("}".utf8)), mentions: ["UTF-8"], "invalid UTF-8")
        Self.expectRejected(Self.image("{\"a\":" + String(repeating: "[", count: 100_000)), mentions: ["nesting"], "deep nesting")
        Self.expectRejected(Self.image(#"{"w":[1]}"#), mentions: ["'w'", "object"], "entry not an object")
        Self.expectRejected(Self.image(#"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "dtype"], "missing dtype")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "shape"], "missing shape")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2]}}"#, eight), mentions: ["'w'", "data_offsets"], "missing offsets")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, eight),
                            mentions: ["'w'", "duplicate"], "duplicate field")
        Self.expectRejected(Self.image(#"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "dtype"], "dtype not a string")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "F12"], "unknown dtype")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "12 bytes"], "shape × size ≠ end − begin")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "-2"], "negative dimension")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "2.0"], "non-integer dimension")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, eight), mentions: ["'w'"], "string dimension")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}"#, eight), mentions: ["'w'", "shape"], "shape not an array")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, eight),
                            mentions: ["'w'", "overflows"], "element count overflow")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}"#, eight),
                            mentions: ["'w'"], "byte count overflow")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999]}}"#, eight),
                            mentions: ["'w'", "data_offsets"], "offset beyond Int")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#, eight), mentions: ["'w'", "data_offsets"], "three offsets")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, eight), mentions: ["'w'", "begin > end"], "begin > end")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, eight), mentions: ["'w'", "run past"], "offsets out of range")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775799,9223372036854775807]}}"#, eight),
                            mentions: ["'w'"], "offsets near Int.max")
        Self.expectRejected(Self.image(ok, eight + [0]), mentions: ["trailing"], "trailing data bytes")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, eight), mentions: ["'w'", "gap"], "hole before first tensor")
        Self.expectRejected(Self.image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, eight + [0, 0, 0, 0]),
                            mentions: ["'b'", "overlaps"], "overlapping tensors")
        Self.expectRejected(Self.image(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, eight + eight),
                            mentions: ["'w'", "duplicate"], "duplicate tensor names")
        Self.expectRejected(Self.image(#"{"__metadata__":{"epoch":3}}"#), mentions: ["epoch"], "non-string metadata value")
        Self.expectRejected(Self.image(#"{"__metadata__":[]}"#), mentions: ["__metadata__"], "metadata not an object")
        Self.expectRejected(Self.image(#"{"__metadata__":{},"__metadata__":{}}"#), mentions: ["__metadata__"], "duplicate metadata")
    }

    /// Every truncation of a valid file is rejected, and random corruption never crashes or reads out of bounds.
    @Test func truncatedAndCorruptedFilesNeverCrash() throws {
        var writer = SafeTensorsWriter()
        writer.add("a", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        writer.add("b", shape: [3], float16: [1, 2, 3])
        writer.add("c", shape: [1], doubles: [9])
        writer.metadata = ["k": "v"]
        let valid = writer.encoded()
        _ = try SafeTensorsFile.parse(bytes: valid, name: "valid")
        for length in 0..<valid.count {
            Self.expectRejected(Array(valid.prefix(length)), "truncated to \(length) bytes")
        }
        var state: UInt64 = 12345
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
        var accepted = 0
        for _ in 0..<3000 {
            var bytes = valid
            for _ in 0...next(3) { bytes[next(bytes.count)] = UInt8(next(256)) }
            guard let file = try? SafeTensorsFile.parse(bytes: bytes, name: "fuzz") else { continue }
            accepted += 1
            for name in file.names where file.info(name).map({ ["F32", "F64", "F16", "BF16"].contains($0.dtype) }) == true {
                _ = try file.floats(name)
                _ = try file.doubles(name)
            }
        }
        #expect(accepted > 0)  // data-byte flips still parse: the loop exercised the readers too
    }

    @Test func fileSystemErrorsNameThePath() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let short = dir + "/short.safetensors"
        try Data([1, 2, 3, 4, 5]).write(to: URL(fileURLWithPath: short))
        for path in [short, dir + "/missing.safetensors", dir] {
            let error = #expect(throws: PatchGuardError.self) { try SafeTensorsFile.load(path: path) }
            #expect(error.map { "\($0)".contains(path) } == true, "\(path)")
        }
        let unwritable = dir + "/no/such/dir/model.safetensors"
        let error = #expect(throws: PatchGuardError.self) { try SafeTensorsWriter().write(to: unwritable) }
        #expect(error.map { "\($0)".contains(unwritable) } == true)
    }
}
