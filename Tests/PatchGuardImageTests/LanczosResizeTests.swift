import Foundation
import PatchGuardCore
@testable import PatchGuardImage
import Testing

/// ``LanczosResize`` against Pillow (13.0.0, `Image.resize(size, Image.LANCZOS)` on 8-bit data; the expected bytes
/// below were produced by it) and the kernel against hand-computed values; ``MaskResizeRule`` on a hand-built mask
/// where the official rule ("lanczos_any") and ours ("nearest") give different defect sizes.
@Suite struct LanczosResizeTests {
    @Test func kernelHandValues() {
        #expect(LanczosResize.kernel(0) == 1)
        #expect(abs(LanczosResize.kernel(1)) < 1e-16 && abs(LanczosResize.kernel(-2)) < 1e-16)
        // L(½) = sinc(½)·sinc(⅙) = (2/π)·(sin(π/6)/(π/6)) = (2/π)·(3/π) = 6/π².
        #expect(abs(LanczosResize.kernel(0.5) - 6 / (Double.pi * Double.pi)) < 1e-15)
        // L(1.5) = sinc(1.5)·sinc(½) = (−2/(3π))·(2/π) = −4/(3π²): the negative lobe that rings.
        #expect(abs(LanczosResize.kernel(1.5) + 4 / (3 * Double.pi * Double.pi)) < 1e-15)
        #expect(LanczosResize.kernel(3) == 0 && LanczosResize.kernel(-3.0001) == 0)
    }

    @Test func rowMatchesPillow() {
        let row: [UInt8] = [0, 255, 0, 100]
        #expect(LanczosResize.resize(row, width: 4, height: 1, outWidth: 7, outHeight: 1) == [0, 96, 250, 150, 0, 48, 120])
        #expect(LanczosResize.resize(row, width: 4, height: 1, outWidth: 3, outHeight: 1) == [89, 137, 46])
        #expect(LanczosResize.resize(row, width: 4, height: 1, outWidth: 4, outHeight: 1) == row)
    }

    /// A tall mask (30 high, 12 wide → 10×10): the height shrinks by more than twice the width, so Pillow 13 runs the
    /// vertical pass first (the other order differs in low values).
    @Test func tallMaskMatchesPillowVerticalFirst() {
        var bytes = [UInt8](repeating: 0, count: 30 * 12)
        for y in 8..<15 { for x in 3..<7 { bytes[y * 12 + x] = 255 } }
        bytes[22 * 12 + 9] = 255
        let pillow: [[UInt8]] = [
            [0, 0, 2, 4, 4, 3, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [2, 0, 42, 92, 85, 71, 0, 1, 0, 0],
            [6, 0, 128, 255, 255, 216, 0, 3, 0, 0], [6, 0, 118, 255, 239, 199, 0, 3, 0, 0],
            [0, 0, 8, 17, 16, 14, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 3, 0, 51, 35, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
        #expect(LanczosResize.resize(bytes, width: 12, height: 30, outWidth: 10, outHeight: 10) == pillow.flatMap { $0 })
    }

    /// 21×21, a 5×4 defect at x 6..<11, y 5..<9 and one defective pixel at (15, 14), 0/255.
    static func handMask() -> Image {
        var m = Image(width: 21, height: 21, channels: 1, value: 0)
        for y in 5..<9 { for x in 6..<11 { m[0, y, x] = 1 } }
        m[0, 14, 15] = 1
        return m
    }

    @Test func maskMatchesPillowAndTheRulesDiffer() throws {
        let m = Self.handMask()
        let bytes = m.pixels.map { UInt8($0 * 255) }
        let pillow: [[UInt8]] = [
            [0, 0, 0, 1, 2, 2, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 0, 22, 39, 39, 11, 0, 1, 0, 0, 0], [0, 5, 0, 150, 255, 255, 72, 0, 4, 0, 0, 0],
            [0, 5, 0, 150, 255, 255, 72, 0, 4, 0, 0, 0], [0, 1, 0, 22, 39, 39, 11, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 2, 2, 1, 0, 15, 8, 0, 0],
            [0, 0, 0, 0, 0, 0, 2, 0, 60, 32, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
        #expect(LanczosResize.resize(bytes, width: 21, height: 21, outWidth: 12, outHeight: 12) == pillow.flatMap { $0 })

        let official = MaskResizeRule.lanczosAny.binarize(m, size: 12)
        let ours = MaskResizeRule.nearest.binarize(m, size: 12)
        let officialCount = official.pixels.filter { $0 == 1 }.count
        let oursCount = ours.pixels.filter { $0 == 1 }.count
        #expect(officialCount == 40)                 // Pillow's non-zero pixels above: the ringing rim counts
        #expect(oursCount == 6)                      // nearest keeps the 5×4 defect's ~2.9×2.3 footprint + 0 for the dot
        #expect(Set(official.pixels) == [0, 1] && Set(ours.pixels).isSubset(of: [0, 1]))
        // Every pixel ours calls defective the official rule does too; patch labels (3×3 patches, 4×4 grid) differ.
        for i in ours.pixels.indices where ours.pixels[i] == 1 { #expect(official.pixels[i] == 1) }
        let officialPatches = try patchLabels(mask: official, patchSize: 3).filter { $0 == 1 }.count
        let oursPatches = try patchLabels(mask: ours, patchSize: 3).filter { $0 == 1 }.count
        #expect(officialPatches > oursPatches, "\(officialPatches) vs \(oursPatches)")
    }
}
