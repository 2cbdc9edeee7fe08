import Foundation
import PatchGuardCore
import PatchGuardImage
@testable import PatchGuardData
import Testing

/// Ground-truth masks: any non-zero pixel is defect (0/255 and 0/1 masks read the same); a mask of another size
/// than its image is resized with a warning naming the file.
@Suite struct MaskRulesTests {
    final class Warnings: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    /// A 16×16 gray image with a 4×4 defect at (4, 4) whose pixels are `level` (0…255 as stored).
    func mask(level: Int, size: Int = 16) -> Image {
        var m = Image(width: size, height: size, channels: 1, value: 0)
        for y in size / 4..<size / 2 { for x in size / 4..<size / 2 { m[0, y, x] = Float(level) / 255 } }
        return m
    }

    func load(maskLevel level: Int, maskSize: Int = 16, warnings: Warnings = Warnings()) throws -> LoadedSample {
        let folder = try DatasetTempFolder()
        let imagePath = folder.file("000.png"), maskPath = folder.file("000_mask.png")
        try ImageIO.writePNG(Image(width: 16, height: 16, channels: 3, value: 0.5), path: imagePath)
        try ImageIO.writePNG(mask(level: level, size: maskSize), path: maskPath)
        let loader = try SampleLoader(imageSize: 8, cacheBudgetBytes: 0, warn: { warnings.add($0) })
        return try loader.load(Sample(imagePath: imagePath, maskPath: maskPath, label: 1, defectType: "crack", stem: "000"))
    }

    @Test(arguments: [255, 1, 127])
    func anyNonZeroPixelIsDefect(level: Int) throws {
        let expected = try load(maskLevel: 255).mask
        let loaded = try load(maskLevel: level).mask
        #expect(loaded == expected, "a mask of 0/\(level) reads differently from a 0/255 mask")
        #expect(loaded.pixels.filter { $0 == 1 }.count == 4) // the 4×4 defect at 16 px is 2×2 at 8 px
        #expect(loaded.pixels.allSatisfy { $0 == 0 || $0 == 1 })
    }

    @Test func zeroOneMaskSavedAs16BitToo() throws {
        // 16-bit 0/1 (value 1/65535) is still a defect.
        let folder = try DatasetTempFolder()
        let maskPath = folder.file("m.png")
        var m = Image(width: 4, height: 4, channels: 1, value: 0)
        m[0, 1, 1] = 1 / 65535
        try ImageIO.writePNG(m, path: maskPath, bitDepth: 16)
        let read = try ImageIO.readMask(path: maskPath)
        #expect(SampleLoader.binarize(read, size: 4).pixels.filter { $0 == 1 }.count == 1)
    }

    @Test func maskOfAnotherSizeIsWarnedAboutOnceNamingTheFile() throws {
        let warnings = Warnings()
        _ = try load(maskLevel: 255, maskSize: 32, warnings: warnings)
        let lines = warnings.all
        #expect(lines.count == 1)
        #expect(lines.first?.contains("000_mask.png is 32×32") == true, "\(lines)")
        #expect(lines.first?.contains("000.png is 16×16") == true, "\(lines)")
        let same = Warnings()
        _ = try load(maskLevel: 255, maskSize: 16, warnings: same)
        #expect(same.all.isEmpty)
    }
}
