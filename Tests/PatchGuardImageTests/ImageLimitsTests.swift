import CImageCodecs
import Foundation
import PatchGuardCore
import PatchGuardImage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The decoder's resource limits (README, "Limits"): image pixels checked from the header before any pixel buffer
/// is allocated, regular files only (no FIFO, no device behind a symlink), encoded size bounded.
@Suite struct ImageLimitsTests {
    static func folder() throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("pg-limits-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        return be(UInt32(data.count)) + body + be(crc32(body))
    }

    /// A valid PNG header of `width × height` gray 8-bit pixels with an IDAT of a few bytes: what a small file
    /// that decompresses to a huge image looks like up to the point where the decoder must allocate.
    static func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        let ihdr = be(width) + be(height) + [8, 0, 0, 0, 0]
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr)
            + chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + chunk("IEND", [])
    }

    func expectRefused(_ path: String, containing fragments: [String],
                       sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try ImageIO.read(path: path)
            Issue.record("\(path) was decoded", sourceLocation: sourceLocation)
        } catch let PatchGuardError.io(errorPath, reason) {
            #expect(errorPath == path, sourceLocation: sourceLocation)
            for f in fragments {
                #expect(reason.contains(f), "reason '\(reason)' lacks '\(f)'", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func hugePNGIsRefusedFromItsHeaderNamingPathAndSize() throws {
        let path = try Self.folder() + "/huge.png"
        try Data(Self.pngHeader(width: 16384, height: 16384)).write(to: URL(fileURLWithPath: path))
        let start = Date()
        expectRefused(path, containing: ["16384x16384", "268.4 M", "limit"])
        #expect(Date().timeIntervalSince(start) < 1, "refusing must not decode")
    }

    @Test func hugeJPEGIsRefusedFromItsHeader() throws {
        // A real 8×8 JPEG whose SOF0 claims 16384×16384.
        var bytes = try ImageIO.encodeJPEG(Image(width: 8, height: 8, channels: 3, value: 0.5), quality: 90)
        let sof = try #require((0..<bytes.count - 1).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        bytes[sof + 5] = 0x40; bytes[sof + 6] = 0x00; bytes[sof + 7] = 0x40; bytes[sof + 8] = 0x00
        let path = try Self.folder() + "/huge.jpg"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        expectRefused(path, containing: ["16384x16384", "limit"])
    }

    @Test func imagesAtTheLimitStillDecode() throws {
        // 8192 × 8192 is the documented limit; a header just above it is refused, one at it passes the check
        // (its data is then found truncated, which proves the size check let it through).
        let dir = try Self.folder()
        let over = dir + "/over.png", at = dir + "/at.png"
        try Data(Self.pngHeader(width: 8192, height: 8193)).write(to: URL(fileURLWithPath: over))
        try Data(Self.pngHeader(width: 8192, height: 8192)).write(to: URL(fileURLWithPath: at))
        expectRefused(over, containing: ["8192x8193", "limit"])
        do { _ = try ImageIO.read(path: at); Issue.record("a PNG without pixel data decoded") } catch let PatchGuardError.io(_, reason) {
            #expect(!reason.contains("limit"), "\(reason)")
        }
    }

    @Test func symlinkToDevZeroIsRefusedWithoutReading() throws {
        let path = try Self.folder() + "/zero.png"
        #expect(symlink("/dev/zero", path) == 0)
        expectRefused(path, containing: ["not a regular file", "character device"])
    }

    @Test func fifoIsRefusedWithoutBlocking() throws {
        let path = try Self.folder() + "/x.png"
        #expect(mkfifo(path, 0o644) == 0)
        let start = Date()
        expectRefused(path, containing: ["not a regular file", "FIFO"])
        #expect(Date().timeIntervalSince(start) < 1)
    }

    @Test func oversizedFileIsRefusedFromItsSize() throws {
        let path = try Self.folder() + "/big.png"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        #expect(truncate(path, off_t(PG_MAX_FILE_BYTES) + 1) == 0) // sparse: no disk used
        expectRefused(path, containing: ["over the decoder's limit of 256 MiB"])
    }
}
