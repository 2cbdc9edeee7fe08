import CImageCodecs
import PatchGuardCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading and writing PNG and JPEG files (libpng and libjpeg through the `CImageCodecs` C target).
///
/// Pixel convention (the project's one pixel space): Float in [0, 1], planar. An 8-bit sample `v` reads as
/// `v / 255`, a 16-bit sample as `v / 65535`; writing rounds `x·255` (or `x·65535`) to the nearest integer after
/// clamping to [0, 1] (NaN writes as 0).
///
/// Supported inputs: PNG of every colour type and bit depth (gray 1/2/4/8/16-bit, gray+alpha, RGB, RGBA,
/// palette, interlaced or not) and baseline or progressive JPEG in gray or YCbCr/RGB. Alpha — an alpha channel or
/// a `tRNS` chunk — is dropped: colours are kept as stored, not composited (as PIL's `convert("RGB")`). CMYK/YCCK
/// JPEGs are refused. The format is sniffed from the magic bytes, never from the file extension.
///
/// Every failure throws ``PatchGuardError/io(path:reason:)`` naming the file and the reason: `"file not found"`,
/// `"truncated PNG"`, `"truncated JPEG"`, `"not a PNG or JPEG file"`, `"CMYK JPEG not supported"`, or libpng's /
/// libjpeg's own message (`"invalid PNG: IDAT: CRC error"`). Truncated or corrupt files never crash the process:
/// the codecs' longjmp-based error handling stays inside the C target.
///
/// Limits (README, "Limits"): at most `PG_MAX_DECODE_PIXELS` (2²⁶ = 67.1 M, e.g. 8192×8192) pixels, checked from
/// the header before any pixel buffer is allocated (`"image is 16384x16384 pixels (268.4 M), over the decoder's
/// limit …"`); files of at most `PG_MAX_FILE_BYTES` (256 MiB); regular files only — a FIFO, device or socket is
/// refused (`"not a regular file (a FIFO) …"`) without blocking or reading.
///
/// All functions are thread-safe; decode images in parallel with `parallelFor`.
public enum ImageIO {
    /// The colour image at `path`: always 3 channels (RGB), a gray file replicated into R, G and B.
    public static func read(path: String) throws -> Image {
        try decodeFile(path: path).toRGB()
    }

    /// The mask at `path`: 1 channel in [0, 1] from any format (an RGB file becomes the mean of its channels;
    /// a 0/255 mask reads as exactly 0/1). Not thresholded: see ``Image/binarized(threshold:)``.
    public static func readMask(path: String) throws -> Image {
        let image = try decodeFile(path: path)
        return image.channels == 1 ? image : image.combinedChannels(1 / 3, 1 / 3, 1 / 3)
    }

    /// Decodes a PNG or JPEG file held in memory (format sniffed from the magic bytes). `name` (usually the file's
    /// path) is what errors report.
    ///
    /// - Returns: 1 channel for a gray source, 3 for a colour one (alpha dropped). Use ``Image/toRGB()`` for a
    ///   colour image whatever the source.
    public static func decode(_ bytes: [UInt8], name: String) throws -> Image {
        var decoded = pg_image()
        var message = [CChar](repeating: 0, count: Int(PG_ERROR_CAPACITY))
        let status = bytes.withUnsafeBufferPointer { data in
            pg_decode_memory(data.baseAddress, data.count, &decoded, &message, message.count)
        }
        return try takeImage(&decoded, status: status, message: message, name: name)
    }

    /// The image at `path` as stored: 1 channel (gray sources) or 3 (colour sources).
    public static func decodeFile(path: String) throws -> Image {
        var decoded = pg_image()
        var message = [CChar](repeating: 0, count: Int(PG_ERROR_CAPACITY))
        let status = pg_decode_file(path, &decoded, &message, message.count)
        return try takeImage(&decoded, status: status, message: message, name: path)
    }

    /// Writes `image` (1 channel: gray, 3: RGB) as a PNG of `bitDepth` 8 or 16 bits per sample.
    ///
    /// Atomic and durable through ``AtomicFile``: a reader never sees a half-written file, a crash leaves the old
    /// file or the new one. The parent directory must exist.
    public static func writePNG(_ image: Image, path: String, bitDepth: Int = 8) throws {
        let bytes = try encodePNG(image, bitDepth: bitDepth, name: path)
        try AtomicFile.write(bytes, to: path)
    }

    /// `image` (1 or 3 channels) encoded as PNG of `bitDepth` 8 or 16 bits per sample.
    public static func encodePNG(_ image: Image, bitDepth: Int = 8) throws -> [UInt8] {
        try encodePNG(image, bitDepth: bitDepth, name: "<PNG in memory>")
    }

    /// `image` (1 or 3 channels) encoded as a baseline JPEG at `quality` 1…100, with libjpeg's defaults
    /// otherwise (4:2:0 chroma subsampling for colour, the same bytes as PIL's `save(…, "JPEG", quality=q)`).
    /// Pseudo-anomaly synthesis runs a real encode/decode round trip through this to make JPEG artifacts.
    public static func encodeJPEG(_ image: Image, quality: Int) throws -> [UInt8] {
        guard image.channels == 1 || image.channels == 3 else {
            throw PatchGuardError.invalidArgument("JPEG encoder takes 1 or 3 channels, got \(image.channels)")
        }
        guard (1...100).contains(quality) else {
            throw PatchGuardError.invalidArgument("JPEG quality must be 1…100, got \(quality)")
        }
        var buffer = pg_buffer()
        var message = [CChar](repeating: 0, count: Int(PG_ERROR_CAPACITY))
        let status = image.pixels.withUnsafeBufferPointer { p in
            pg_encode_jpeg(p.baseAddress, Int32(image.width), Int32(image.height), Int32(image.channels),
                           Int32(quality), &buffer, &message, message.count)
        }
        return try takeBuffer(&buffer, status: status, message: message, name: "<JPEG in memory>")
    }

    // MARK: - Internals

    static func encodePNG(_ image: Image, bitDepth: Int, name: String) throws -> [UInt8] {
        guard image.channels == 1 || image.channels == 3 else {
            throw PatchGuardError.invalidArgument("\(name): PNG encoder takes 1 or 3 channels, got \(image.channels)")
        }
        guard bitDepth == 8 || bitDepth == 16 else {
            throw PatchGuardError.invalidArgument("\(name): PNG bit depth must be 8 or 16, got \(bitDepth)")
        }
        var buffer = pg_buffer()
        var message = [CChar](repeating: 0, count: Int(PG_ERROR_CAPACITY))
        let status = image.pixels.withUnsafeBufferPointer { p in
            pg_encode_png(p.baseAddress, Int32(image.width), Int32(image.height), Int32(image.channels),
                          Int32(bitDepth), -1, &buffer, &message, message.count)
        }
        return try takeBuffer(&buffer, status: status, message: message, name: name)
    }

    static func string(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Copies a decoded C image into an ``Image`` and frees it, or throws the C side's error.
    static func takeImage(_ decoded: inout pg_image, status: Int32, message: [CChar], name: String) throws -> Image {
        defer { pg_image_free(&decoded) }
        guard status == PG_OK, let pixels = decoded.pixels else {
            throw PatchGuardError.io(path: name, reason: status == PG_OK ? "decoder returned no pixels"
                                                                         : string(message))
        }
        let width = Int(decoded.width), height = Int(decoded.height), channels = Int(decoded.channels)
        let values = Array(UnsafeBufferPointer(start: pixels, count: width * height * channels))
        return Image(width: width, height: height, channels: channels, pixels: values)
    }

    /// Copies an encoded C buffer into a byte array and frees it, or throws the C side's error.
    static func takeBuffer(_ buffer: inout pg_buffer, status: Int32, message: [CChar], name: String) throws
        -> [UInt8]
    {
        defer { pg_buffer_free(&buffer) }
        guard status == PG_OK, let data = buffer.data else {
            let reason = status == PG_OK ? "encoder returned no bytes" : string(message)
            if status == PG_ERR_ARGUMENT { throw PatchGuardError.invalidArgument("\(name): \(reason)") }
            throw PatchGuardError.io(path: name, reason: reason)
        }
        return Array(UnsafeBufferPointer(start: data, count: buffer.size))
    }
}
