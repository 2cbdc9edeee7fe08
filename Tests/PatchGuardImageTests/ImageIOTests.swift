import CImageCodecs
import Foundation
import PatchGuardCore
import PatchGuardImage
import Testing

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
private struct TemporaryDirectory {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("pg-imageio-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }
    func contents() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Deterministic test pattern: every 8-bit level appears, channels differ.
private func pattern(width: Int, height: Int, channels: Int, levels: Int = 255) -> Image {
    var image = Image(width: width, height: height, channels: channels)
    for c in 0..<channels {
        for y in 0..<height {
            for x in 0..<width { image[c, y, x] = Float((x * 7 + y * 13 + c * 29) % (levels + 1)) / Float(levels) }
        }
    }
    return image
}

/// Smooth colour image (JPEG's friendly case).
private func smooth(width: Int, height: Int) -> Image {
    var image = Image(width: width, height: height, channels: 3)
    for y in 0..<height {
        for x in 0..<width {
            let u = Float(x) / Float(width), v = Float(y) / Float(height)
            image[0, y, x] = 0.2 + 0.6 * u
            image[1, y, x] = 0.5 + 0.3 * sinf(3 * v)
            image[2, y, x] = 0.3 + 0.4 * u * v
        }
    }
    return image
}

/// PNG bytes from raw rows through the C test writer (`samples` as PNG stores them).
private func rawPNG(_ samples: [UInt8], width: Int, height: Int, colorType: Int32, bitDepth: Int32,
                    palette: [UInt8] = [], trns: [UInt8] = [], trns16: [UInt16] = [], interlace: Bool = false,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    var buffer = pg_buffer()
    defer { pg_buffer_free(&buffer) }
    var message = [CChar](repeating: 0, count: Int(PG_ERROR_CAPACITY))
    let status = samples.withUnsafeBufferPointer { s in
        palette.withUnsafeBufferPointer { p in
            trns.withUnsafeBufferPointer { t in
                trns16.withUnsafeBufferPointer { t16 in
                    pg_encode_png_samples(s.baseAddress, Int32(width), Int32(height), colorType, bitDepth,
                                          p.baseAddress, Int32(palette.count / 3), t.baseAddress, t16.baseAddress,
                                          Int32(max(trns.count, trns16.count)), interlace ? 1 : 0, &buffer,
                                          &message, message.count)
                }
            }
        }
    }
    try #require(status == PG_OK, "pg_encode_png_samples failed: \(status)", sourceLocation: sourceLocation)
    let data = try #require(buffer.data, sourceLocation: sourceLocation)
    return Array(UnsafeBufferPointer(start: data, count: buffer.size))
}

/// JPEG bytes from interleaved 8-bit rows (`components` 1, 3 or 4 = CMYK).
private func rawJPEG(_ samples: [UInt8], width: Int, height: Int, components: Int32,
                     sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    var buffer = pg_buffer()
    defer { pg_buffer_free(&buffer) }
    var message = [CChar](repeating: 0, count: Int(PG_ERROR_CAPACITY))
    let status = samples.withUnsafeBufferPointer { s in
        pg_encode_jpeg_samples(s.baseAddress, Int32(width), Int32(height), components, 90, &buffer, &message,
                               message.count)
    }
    try #require(status == PG_OK, "pg_encode_jpeg_samples failed: \(status)", sourceLocation: sourceLocation)
    let data = try #require(buffer.data, sourceLocation: sourceLocation)
    return Array(UnsafeBufferPointer(start: data, count: buffer.size))
}

/// Expects `body` to throw `.io(path: path, reason:)` with `reason` containing `fragment`, and the error's
/// description to name the path.
private func expectIOError(path: String, containing fragment: String,
                           sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an error for \(path)", sourceLocation: sourceLocation)
    } catch let PatchGuardError.io(errorPath, reason) {
        #expect(errorPath == path, sourceLocation: sourceLocation)
        #expect(reason.contains(fragment), "reason '\(reason)' lacks '\(fragment)'", sourceLocation: sourceLocation)
        #expect(PatchGuardError.io(path: errorPath, reason: reason).description.contains(path),
                sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

private func maxAbsDifference(_ a: Image, _ b: Image) -> Float {
    zip(a.pixels, b.pixels).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

@Suite("ImageIO")
struct ImageIOTests {
    // MARK: Round trips

    @Test func png8BitRGBRoundTripIsExactOnLevels() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let image = pattern(width: 37, height: 23, channels: 3)
        let path = dir.file("rgb.png")
        try ImageIO.writePNG(image, path: path)
        let back = try ImageIO.read(path: path)
        #expect(back == image) // v/255 in, v/255 out: bit-exact
        #expect(try dir.contents() == ["rgb.png"]) // no temporary file left behind
    }

    @Test func png8BitRoundTripRoundsToNearestLevel() throws {
        var image = Image(width: 64, height: 3, channels: 3)
        for i in 0..<image.pixels.count { image.pixels[i] = Float(i % 1000) / 999 }
        let back = try ImageIO.decode(ImageIO.encodePNG(image), name: "mem")
        #expect(back.channels == 3)
        #expect(maxAbsDifference(back, image) <= 0.5 / 255 + 1e-6)
        #expect(maxAbsDifference(back, image) > 0) // values off the 8-bit grid really were quantised
    }

    @Test func png8BitGrayRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let gray = pattern(width: 29, height: 31, channels: 1)
        let path = dir.file("gray.png")
        try ImageIO.writePNG(gray, path: path)
        #expect(try ImageIO.readMask(path: path) == gray)
        #expect(try ImageIO.decodeFile(path: path) == gray)
        let rgb = try ImageIO.read(path: path)
        #expect(rgb.channels == 3)
        #expect(rgb == gray.toRGB())
    }

    @Test func png16BitGrayRoundTripIsExactTo65535() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var levels = Image(width: 256, height: 4, channels: 1)
        for i in 0..<levels.pixels.count { levels.pixels[i] = Float((i * 257 + i / 3) % 65536) / 65535 }
        let path = dir.file("gray16.png")
        try ImageIO.writePNG(levels, path: path, bitDepth: 16)
        #expect(try ImageIO.readMask(path: path) == levels)

        var arbitrary = Image(width: 50, height: 2, channels: 1)
        for i in 0..<arbitrary.pixels.count { arbitrary.pixels[i] = Float(i) / 99 + 1e-6 }
        let back = try ImageIO.decode(ImageIO.encodePNG(arbitrary, bitDepth: 16), name: "mem")
        #expect(maxAbsDifference(back, arbitrary) <= 0.5 / 65535 + 1e-7)
    }

    @Test func png16BitRGBRoundTrip() throws {
        var image = pattern(width: 11, height: 7, channels: 3)
        image.pixels = image.pixels.map { ($0 * 65535).rounded() / 65535 * 0.999 }
        let back = try ImageIO.decode(ImageIO.encodePNG(image, bitDepth: 16), name: "mem")
        #expect(maxAbsDifference(back, image) <= 0.5 / 65535 + 1e-7)
    }

    @Test func encoderClampsAndZeroesNaN() throws {
        let image = Image(width: 4, height: 1, channels: 1, pixels: [-0.5, 1.7, .nan, .infinity])
        let back = try ImageIO.decode(ImageIO.encodePNG(image), name: "mem")
        #expect(back.pixels == [0, 1, 0, 1])
    }

    @Test func jpegRoundTripAtQuality95() throws {
        let image = smooth(width: 64, height: 48)
        let bytes = try ImageIO.encodeJPEG(image, quality: 95)
        #expect(bytes.prefix(3) == [0xFF, 0xD8, 0xFF])
        let back = try ImageIO.decode(bytes, name: "mem.jpg")
        #expect(back.width == 64 && back.height == 48 && back.channels == 3)
        let meanError = zip(back.pixels, image.pixels).reduce(0) { $0 + abs($1.0 - $1.1) } / Float(image.pixels.count)
        #expect(meanError < 0.005, "mean abs error \(meanError)")
        // Lower quality loses more: the round trip is a real encode, not a copy.
        let rough = try ImageIO.decode(ImageIO.encodeJPEG(pattern(width: 64, height: 48, channels: 3), quality: 10),
                                       name: "mem.jpg")
        #expect(maxAbsDifference(rough, pattern(width: 64, height: 48, channels: 3)) > 0.05)
    }

    @Test func grayJPEGDecodesToOneChannel() throws {
        let gray = pattern(width: 16, height: 16, channels: 1, levels: 15)
        let back = try ImageIO.decode(ImageIO.encodeJPEG(gray, quality: 100), name: "g.jpg")
        #expect(back.channels == 1)
        #expect(maxAbsDifference(back, gray) < 0.05)
    }

    @Test func cmykJPEGIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let bytes = try rawJPEG([UInt8](repeating: 100, count: 8 * 8 * 4), width: 8, height: 8, components: 4)
        let path = try dir.write(bytes, "cmyk.jpg")
        expectIOError(path: path, containing: "CMYK JPEG not supported") { _ = try ImageIO.read(path: path) }
    }

    // MARK: PNG variants

    @Test func palettePNGWithTransparencyDecodesToPaletteColours() throws {
        let palette: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
        // 4-bit indices, 3 × 2 pixels: rows [0 1 2], [3 2 1] packed two per byte (high nibble first).
        let samples: [UInt8] = [0x01, 0x20, 0x32, 0x10]
        let bytes = try rawPNG(samples, width: 3, height: 2, colorType: 3, bitDepth: 4, palette: palette,
                               trns: [0, 128, 255, 255])
        let image = try ImageIO.decode(bytes, name: "palette.png")
        #expect(image.channels == 3)
        let indices = [0, 1, 2, 3, 2, 1]
        for (i, index) in indices.enumerated() {
            for c in 0..<3 {
                #expect(image.pixels[c * 6 + i] == Float(palette[3 * index + c]) / 255, "pixel \(i) channel \(c)")
            }
        }
    }

    @Test func grayAlphaPNGDropsAlpha() throws {
        // 8-bit gray + alpha, 2 × 2: (gray, alpha) pairs; alpha must not change the gray values.
        let samples: [UInt8] = [0, 255, 64, 0, 128, 17, 255, 200]
        let image = try ImageIO.decode(rawPNG(samples, width: 2, height: 2, colorType: 4, bitDepth: 8), name: "ga")
        #expect(image.channels == 1)
        #expect(image.pixels == [0, 64, 128, 255].map { Float($0) / 255 })
    }

    @Test func rgbaPNGDropsAlpha() throws {
        let samples: [UInt8] = [10, 20, 30, 0, 40, 50, 60, 255]
        let image = try ImageIO.decode(rawPNG(samples, width: 2, height: 1, colorType: 6, bitDepth: 8), name: "rgba")
        #expect(image.channels == 3)
        #expect(image.pixels == [10, 40, 20, 50, 30, 60].map { Float($0) / 255 })
    }

    @Test func sixteenBitRGBPNGScalesBy65535() throws {
        let values: [UInt16] = [0, 1, 65535, 256, 32768, 12345]
        let samples = values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } // big-endian, as PNG stores them
        let image = try ImageIO.decode(rawPNG(samples, width: 2, height: 1, colorType: 2, bitDepth: 16), name: "rgb16")
        // Interleaved (R0 G0 B0 R1 G1 B1) → planar (R0 R1 G0 G1 B0 B1).
        let expected = [values[0], values[3], values[1], values[4], values[2], values[5]].map { Float($0) / 65535 }
        #expect(image.pixels == expected)
        #expect(image.pixels[1] == Float(256) / 65535)
    }

    @Test func sixteenBitGrayAlphaAndOneBitGray() throws {
        let ga: [UInt8] = [0x12, 0x34, 0xFF, 0xFF, 0xAB, 0xCD, 0x00, 0x00]
        let image = try ImageIO.decode(rawPNG(ga, width: 2, height: 1, colorType: 4, bitDepth: 16), name: "ga16")
        #expect(image.pixels == [Float(0x1234) / 65535, Float(0xABCD) / 65535])

        // 1-bit masks (common in datasets) read as exact 0/1.
        let bits = try ImageIO.decode(rawPNG([0b1010_0000, 0b0101_0000], width: 4, height: 2, colorType: 0,
                                             bitDepth: 1, trns16: [1]), name: "mask1")
        #expect(bits.pixels == [1, 0, 1, 0, 0, 1, 0, 1])
    }

    @Test func interlacedPNGMatchesNonInterlaced() throws {
        let image = pattern(width: 19, height: 13, channels: 3)
        var samples = [UInt8]()
        for y in 0..<13 { for x in 0..<19 { for c in 0..<3 { samples.append(UInt8(image[c, y, x] * 255 + 0.5)) } } }
        let plain = try ImageIO.decode(rawPNG(samples, width: 19, height: 13, colorType: 2, bitDepth: 8), name: "p")
        let adam7 = try ImageIO.decode(rawPNG(samples, width: 19, height: 13, colorType: 2, bitDepth: 8,
                                              interlace: true), name: "i")
        #expect(plain == image)
        #expect(adam7 == image)
    }

    @Test func rgbMaskBecomesChannelMean() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let rgb = Image(width: 2, height: 1, channels: 3, pixels: [1, 0, 1, 0, 1, 0.2])
        let path = dir.file("mask.png")
        try ImageIO.writePNG(rgb, path: path)
        let mask = try ImageIO.readMask(path: path)
        #expect(mask.channels == 1)
        #expect(abs(mask.pixels[0] - 1) < 1e-6)
        #expect(abs(mask.pixels[1] - Float(51) / 255 / 3) < 1e-6)
    }

    // MARK: Errors

    @Test func truncatedPNGFileNamesPath() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let bytes = try ImageIO.encodePNG(pattern(width: 40, height: 40, channels: 3))
        let half = try dir.write(Array(bytes.prefix(bytes.count / 2)), "half.png")
        expectIOError(path: half, containing: "truncated PNG") { _ = try ImageIO.read(path: half) }
        let header = try dir.write(Array(bytes.prefix(20)), "header.png")
        expectIOError(path: header, containing: "truncated PNG") { _ = try ImageIO.read(path: header) }
        let noEnd = try dir.write(Array(bytes.dropLast(12)), "noiend.png") // IEND chunk missing
        expectIOError(path: noEnd, containing: "truncated PNG") { _ = try ImageIO.readMask(path: noEnd) }
    }

    @Test func truncatedJPEGFileNamesPath() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let bytes = try ImageIO.encodeJPEG(smooth(width: 48, height: 48), quality: 90)
        let half = try dir.write(Array(bytes.prefix(bytes.count / 2)), "half.jpg")
        expectIOError(path: half, containing: "truncated JPEG") { _ = try ImageIO.read(path: half) }
        let header = try dir.write(Array(bytes.prefix(30)), "header.jpg")
        expectIOError(path: header, containing: "truncated JPEG") { _ = try ImageIO.read(path: header) }
    }

    @Test func everyPrefixOfAFileFailsCleanly() throws {
        let png = try ImageIO.encodePNG(pattern(width: 9, height: 5, channels: 3))
        let jpeg = try ImageIO.encodeJPEG(smooth(width: 9, height: 5), quality: 80)
        for (bytes, kind) in [(png, "PNG"), (jpeg, "JPEG")] {
            #expect(throws: Never.self) { _ = try ImageIO.decode(bytes, name: "whole") }
            for n in 0..<bytes.count {
                expectIOError(path: "cut", containing: n == 0 ? "empty file" : "truncated \(kind)") {
                    _ = try ImageIO.decode(Array(bytes.prefix(n)), name: "cut")
                }
            }
        }
    }

    @Test func corruptBytesNeverCrash() throws {
        let png = try ImageIO.encodePNG(pattern(width: 12, height: 8, channels: 3))
        // Any flipped byte after the signature breaks a CRC (or the zlib stream): always an error.
        for i in stride(from: 8, to: png.count, by: 3) {
            var bad = png
            bad[i] ^= 0x5A
            #expect(throws: PatchGuardError.self) { _ = try ImageIO.decode(bad, name: "bad.png") }
        }
        // JPEG has no checksums: a flipped byte may still decode; it must never crash.
        let jpeg = try ImageIO.encodeJPEG(smooth(width: 16, height: 16), quality: 75)
        var failures = 0
        for i in stride(from: 2, to: jpeg.count, by: 2) {
            var bad = jpeg
            bad[i] ^= 0xA5
            do { _ = try ImageIO.decode(bad, name: "bad.jpg") } catch PatchGuardError.io(_, _) { failures += 1 }
        }
        #expect(failures > 0)
    }

    @Test func crcErrorReportsLibpngMessage() throws {
        var png = try ImageIO.encodePNG(pattern(width: 12, height: 8, channels: 3))
        png[png.count - 20] ^= 0xFF // inside the IDAT data
        expectIOError(path: "crc.png", containing: "invalid PNG") { _ = try ImageIO.decode(png, name: "crc.png") }
    }

    @Test func garbageEmptyMissingAndDirectoryNamePath() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let garbage = try dir.write(Array("definitely not an image".utf8), "garbage.png")
        expectIOError(path: garbage, containing: "not a PNG or JPEG file") { _ = try ImageIO.read(path: garbage) }
        let empty = try dir.write([], "empty.png")
        expectIOError(path: empty, containing: "empty file") { _ = try ImageIO.readMask(path: empty) }
        let missing = dir.file("missing.png")
        expectIOError(path: missing, containing: "file not found") { _ = try ImageIO.read(path: missing) }
        expectIOError(path: dir.path, containing: "is a directory") { _ = try ImageIO.read(path: dir.path) }
    }

    @Test func writeErrorsNamePathAndLeaveNoTemporaryFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let image = pattern(width: 3, height: 3, channels: 1)
        let nowhere = dir.file("no/such/dir/out.png")
        expectIOError(path: nowhere, containing: "directory does not exist") {
            try ImageIO.writePNG(image, path: nowhere)
        }
        // Overwriting is atomic replacement: the old content is gone, nothing else remains.
        let path = dir.file("out.png")
        try ImageIO.writePNG(pattern(width: 5, height: 5, channels: 3), path: path)
        try ImageIO.writePNG(image, path: path)
        #expect(try ImageIO.readMask(path: path) == image)
        #expect(try dir.contents() == ["out.png"])
        // Bad arguments are the caller's error, not an I/O error.
        #expect(throws: PatchGuardError.self) {
            try ImageIO.writePNG(Image(width: 2, height: 2, channels: 2), path: path)
        }
        #expect(throws: PatchGuardError.self) { try ImageIO.writePNG(image, path: path, bitDepth: 4) }
        #expect(throws: PatchGuardError.self) { _ = try ImageIO.encodeJPEG(image, quality: 0) }
        #expect(try ImageIO.readMask(path: path) == image)
    }

    @Test func parallelDecodingIsSafe() throws {
        let png = try ImageIO.encodePNG(pattern(width: 33, height: 17, channels: 3))
        let jpeg = try ImageIO.encodeJPEG(smooth(width: 33, height: 17), quality: 90)
        let reference = try ImageIO.decode(jpeg, name: "j")
        var ok = [Bool](repeating: false, count: 32)
        ok.withUnsafeMutableBufferPointer { flags in
            let flags = flags
            parallelFor(32) { i in
                let p = try? ImageIO.decode(png, name: "p")
                let j = try? ImageIO.decode(jpeg, name: "j")
                let cut = try? ImageIO.decode(Array(png.prefix(png.count - i - 1)), name: "cut")
                flags[i] = p == pattern(width: 33, height: 17, channels: 3) && j == reference && cut == nil
            }
        }
        #expect(ok.allSatisfy { $0 })
    }
}
