import Foundation
import PatchGuardCore
import PatchGuardImage
@testable import PatchGuardData
import Testing

/// A fresh temporary folder, removed when the value goes away.
final class DatasetTempFolder {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "patchguard-dataset-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ relative: String) -> String { path + "/" + relative }
}

/// Writes `bytes` to `path`.
func writeTestBytes(_ path: String, _ bytes: Data) throws { try bytes.write(to: URL(fileURLWithPath: path)) }

/// Small generated trees: 32 px, 6 train good, 3 test good, 8 defective (widget: 2,2,1,1,1,1 over its 6 types).
let smallCounts = GeneratedCounts(trainGood: 6, testGood: 3, testDefective: 8)
let smallSize = 32

func writeSmallTree(_ folder: DatasetTempFolder, categories: [GeneratedCategoryKind] = [.widget]) throws
    -> [MVTecCategory] {
    try GeneratedDataset.write(to: folder.path, seed: 3, imageSize: smallSize, counts: smallCounts,
                               categories: categories)
}

/// The `.dataset` message of an error, or a failed expectation.
func datasetMessage(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        try body()
        Issue.record("expected a dataset error", sourceLocation: sourceLocation)
    } catch let PatchGuardError.dataset(message) {
        return message
    } catch {
        Issue.record("expected a dataset error, got \(error)", sourceLocation: sourceLocation)
    }
    return ""
}

@Suite struct DatasetScanTests {
    @Test func countsLabelsAndOrder() throws {
        let folder = try DatasetTempFolder()
        let written = try writeSmallTree(folder, categories: [.weave, .widget])
        #expect(try MVTecCategory.categories(in: folder.path) == ["weave", "widget"])
        for kind in GeneratedCategoryKind.allCases {
            let c = try MVTecCategory.scan(root: folder.path, category: kind.rawValue)
            #expect(written.contains(c))
            #expect(c.train.count == 6)
            #expect(c.test.filter { $0.label == 0 }.count == 3)
            #expect(c.test.filter { $0.label == 1 }.count == 8)
            #expect(c.defectTypes == kind.defectTypes)
            #expect(c.train.allSatisfy { $0.label == 0 && $0.defectType == "good" && $0.maskPath == nil })
            #expect(c.train.allSatisfy { $0.foregroundMaskPath == nil })     // _true_foreground is not the layout
            #expect(c.train.map(\.stem) == ["000", "001", "002", "003", "004", "005"])
            // test: good first, then defect types by name, files by name; every defect has its own mask.
            #expect(c.test.prefix(3).allSatisfy { $0.label == 0 && $0.maskPath == nil })
            let defective = c.test.dropFirst(3)
            #expect(defective.map(\.defectType) == defective.map(\.defectType).sorted())
            for s in defective {
                #expect(s.label == 1)
                #expect(s.maskPath == "\(folder.path)/\(kind.rawValue)/ground_truth/\(s.defectType)/\(s.stem)_mask.png")
                #expect(FileManager.default.fileExists(atPath: s.maskPath ?? ""))
            }
        }
        let widget = try MVTecCategory.scan(root: folder.path, category: "widget")
        #expect(widget.summary == "widget: train good 6, test good 3, test defective 8 "
                + "(bent 2, crack 2, hole 1, missing 1, scratch 1, stain 1)")
    }

    @Test func renamedMaskNamesBothFiles() throws {
        let folder = try DatasetTempFolder()
        _ = try writeSmallTree(folder)
        let gt = folder.file("widget/ground_truth/crack/")
        try FileManager.default.moveItem(atPath: gt + "000_mask.png", toPath: gt + "007_mask.png")
        let message = datasetMessage { _ = try MVTecCategory.scan(root: folder.path, category: "widget") }
        #expect(message.contains("test/crack/000.png has no mask: expected ground_truth/crack/000_mask.png"))
        #expect(message.contains("ground_truth/crack/007_mask.png has no image: expected test/crack/007.png"))
        #expect(message.contains(folder.file("widget")))

        // A mask whose name does not end in _mask.
        try FileManager.default.moveItem(atPath: gt + "007_mask.png", toPath: gt + "000-mask.png")
        let message2 = datasetMessage { _ = try MVTecCategory.scan(root: folder.path, category: "widget") }
        #expect(message2.contains("ground_truth/crack/000-mask.png is not named <stem>_mask.png"))
        #expect(message2.contains("test/crack/000.png has no mask"))
    }

    @Test func missingImageAndOrphanFolders() throws {
        let folder = try DatasetTempFolder()
        _ = try writeSmallTree(folder)
        try FileManager.default.removeItem(atPath: folder.file("widget/test/hole"))
        let message = datasetMessage { _ = try MVTecCategory.scan(root: folder.path, category: "widget") }
        #expect(message.contains("ground_truth/hole/000_mask.png has no image: expected test/hole/000.png"))
    }

    @Test func emptyOrMissingCategory() throws {
        let folder = try DatasetTempFolder()
        _ = try writeSmallTree(folder)
        try FileManager.default.createDirectory(atPath: folder.file("empty/train/good"),
                                                withIntermediateDirectories: true)
        try writeTestBytes(folder.file("empty/train/good/.hidden.png"), Data([1]))
        let message = datasetMessage { _ = try MVTecCategory.scan(root: folder.path, category: "empty") }
        #expect(message.contains("has no training images"))
        #expect(message.contains("empty/train/good"))

        let missing = datasetMessage { _ = try MVTecCategory.scan(root: folder.path, category: "widgte") }
        #expect(missing.contains("no category folder"))
        #expect(missing.contains("widget"))
    }

    @Test func hiddenFilesExtensionsAndForegroundMasks() throws {
        let folder = try DatasetTempFolder()
        _ = try writeSmallTree(folder)
        let good = folder.file("widget/train/good/")
        let fm = FileManager.default
        try writeTestBytes(good + ".DS_Store", Data([0]))
        try writeTestBytes(good + "._000.png", Data([0]))
        try writeTestBytes(good + "notes.txt", Data([0]))
        let jpeg = try ImageIO.encodeJPEG(Image(width: 8, height: 8, channels: 3, value: 0.5), quality: 90)
        try writeTestBytes(good + "100.JPG", Data(jpeg))
        try writeTestBytes(good + "101.jpeg", Data(jpeg))
        let c = try MVTecCategory.scan(root: folder.path, category: "widget")
        #expect(c.train.map(\.stem) == ["000", "001", "002", "003", "004", "005", "100", "101"])
        #expect(c.train[6].imagePath == good + "100.JPG")

        // Optional foreground masks, matched by stem; one without its image is an error.
        try fm.createDirectory(atPath: folder.file("widget/train/foreground_mask"), withIntermediateDirectories: true)
        try ImageIO.writePNG(Image(width: 8, height: 8, channels: 1, value: 1),
                             path: folder.file("widget/train/foreground_mask/001.png"))
        let withForeground = try MVTecCategory.scan(root: folder.path, category: "widget")
        #expect(withForeground.train[1].foregroundMaskPath == folder.file("widget/train/foreground_mask/001.png"))
        #expect(withForeground.train[0].foregroundMaskPath == nil)
        try ImageIO.writePNG(Image(width: 8, height: 8, channels: 1, value: 1),
                             path: folder.file("widget/train/foreground_mask/042.png"))
        let message = datasetMessage { _ = try MVTecCategory.scan(root: folder.path, category: "widget") }
        #expect(message.contains("train/foreground_mask/042.png matches no training image"))

        // Masks in another folder (a read-only dataset): used instead of train/foreground_mask; a missing folder
        // is an error naming it, not a silent "no masks".
        let elsewhere = folder.file("masks")
        try fm.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try ImageIO.writePNG(Image(width: 8, height: 8, channels: 1, value: 1), path: elsewhere + "/003.png")
        let custom = try MVTecCategory.scan(root: folder.path, category: "widget", foregroundDirectory: elsewhere)
        #expect(custom.train.map { $0.foregroundMaskPath != nil } == [false, false, false, true, false, false, false, false])
        #expect(custom.train[3].foregroundMaskPath == elsewhere + "/003.png")
        let missing = datasetMessage {
            _ = try MVTecCategory.scan(root: folder.path, category: "widget", foregroundDirectory: folder.file("nope"))
        }
        #expect(missing.contains(folder.file("nope")) && missing.contains("does not exist"))
    }
}

@Suite struct SampleLoaderTests {
    @Test func loadsGeneratedImagesAndMasksExactly() throws {
        let folder = try DatasetTempFolder()
        let c = try writeSmallTree(folder)[0]
        let generated = try GeneratedDataset.generate(.widget, seed: 3, imageSize: smallSize, counts: smallCounts,
                                                      withClean: false)
        let loader = try SampleLoader(imageSize: smallSize)
        let loaded = try loader.load(c.train + c.test)
        #expect(loaded.count == generated.count)
        for (l, g) in zip(loaded, generated) {
            #expect(l.imagePath.hasSuffix(g.relativePath))
            #expect(l.label == g.label && l.defectType == g.defectType)
            #expect(l.image.channels == 3 && l.image.width == smallSize && l.image.height == smallSize)
            // 8-bit PNG: within half a level of the drawn value.
            let worst = zip(l.image.pixels, g.image.pixels).map { abs($0 - $1) }.max() ?? 1
            #expect(worst <= 0.5 / 255 + 1e-6)
            #expect(l.mask == g.mask)
            #expect(l.foreground == nil)
        }
    }

    @Test func resizesImagesAndKeepsMasksBinary() throws {
        let folder = try DatasetTempFolder()
        let c = try writeSmallTree(folder)[0]
        let loader = try SampleLoader(imageSize: 20)
        let loaded = try loader.load(c.test)
        for l in loaded {
            #expect(l.image.width == 20 && l.image.height == 20 && l.image.channels == 3)
            #expect(l.mask.width == 20 && l.mask.channels == 1)
            #expect(l.mask.pixels.allSatisfy { $0 == 0 || $0 == 1 })
            #expect(l.label == 0 ? !l.mask.pixels.contains(1) : l.mask.pixels.contains(1))
            #expect(l.image.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
        }
    }

    @Test func grayscaleBecomesThreeChannels() throws {
        let folder = try DatasetTempFolder()
        _ = try writeSmallTree(folder)
        var gray = Image(width: 12, height: 10, channels: 1, value: 0)
        for i in gray.pixels.indices { gray.pixels[i] = Float(i % 7) / 6 }
        let path = folder.file("widget/train/good/000.png")
        try ImageIO.writePNG(gray, path: path)
        let sample = try MVTecCategory.scan(root: folder.path, category: "widget").train[0]
        let l = try SampleLoader(imageSize: 12).load(sample)
        #expect(l.image.channels == 3 && l.image.width == 12 && l.image.height == 12)
        let n = l.image.planeSize
        #expect(Array(l.image.pixels[0..<n]) == Array(l.image.pixels[n..<2 * n]))
        #expect(Array(l.image.pixels[0..<n]) == Array(l.image.pixels[2 * n..<3 * n]))
        #expect(Set(l.image.pixels).count > 2)
    }

    @Test func corruptImageErrorNamesTheFirstBadFile() throws {
        let folder = try DatasetTempFolder()
        let c = try writeSmallTree(folder)[0]
        let bad1 = c.train[1].imagePath, bad4 = c.train[4].imagePath
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: bad1)))
        try writeTestBytes(bad1, Data(bytes.prefix(bytes.count / 2)))   // truncated
        try writeTestBytes(bad4, Data("not an image".utf8))
        let loader = try SampleLoader(imageSize: 16)
        #expect(throws: PatchGuardError.self) { try loader.load(c.train) }
        do {
            _ = try loader.load(c.train)
        } catch let PatchGuardError.io(path, reason) {
            #expect(path == bad1, "the lowest-index failure is reported")
            #expect(!reason.isEmpty)
        }
        do {
            _ = try loader.load([c.train[4]])
        } catch let PatchGuardError.io(path, _) {
            #expect(path == bad4)
        }
        // A missing mask file is reported by its path too.
        let defective = c.test.first { $0.label == 1 }!
        try FileManager.default.removeItem(atPath: defective.maskPath!)
        do {
            _ = try SampleLoader(imageSize: 16).load(defective)
            Issue.record("expected an error")
        } catch let PatchGuardError.io(path, _) {
            #expect(path == defective.maskPath)
        }
    }

    @Test func cacheRespectsItsBudget() throws {
        let folder = try DatasetTempFolder()
        let c = try writeSmallTree(folder)[0]
        let perSample = (3 + 1) * 16 * 16 * MemoryLayout<Float>.stride
        let none = try SampleLoader(imageSize: 16, cacheBudgetBytes: 0)
        _ = try none.load(c.train)
        #expect(none.cachedCount == 0 && none.cachedBytes == 0)

        let two = try SampleLoader(imageSize: 16, cacheBudgetBytes: 2 * perSample + perSample / 2)
        _ = try two.load(c.train)
        #expect(two.cachedCount == 2 && two.cachedBytes == 2 * perSample)

        let all = try SampleLoader(imageSize: 16)
        let first = try all.load(c.train + c.test)
        #expect(all.cachedCount == c.train.count + c.test.count)
        // A cached sample is served even after its file is gone.
        try FileManager.default.removeItem(atPath: c.train[0].imagePath)
        let again = try all.load(c.train + c.test)
        #expect(again == first)
        all.clearCache()
        #expect(all.cachedCount == 0)
        #expect(throws: PatchGuardError.self) { try all.load(c.train[0]) }
        #expect(throws: PatchGuardError.self) { try SampleLoader(imageSize: 0) }
    }

    @Test func foregroundMasksLoadBinary() throws {
        let folder = try DatasetTempFolder()
        _ = try writeSmallTree(folder)
        try FileManager.default.createDirectory(atPath: folder.file("widget/train/foreground_mask"),
                                                withIntermediateDirectories: true)
        var fg = Image(width: 32, height: 32, channels: 1, value: 0)
        for y in 8..<24 { for x in 4..<20 { fg[0, y, x] = 0.8 } }
        try ImageIO.writePNG(fg, path: folder.file("widget/train/foreground_mask/002.png"))
        let c = try MVTecCategory.scan(root: folder.path, category: "widget")
        let loaded = try SampleLoader(imageSize: 16).load(c.train)
        #expect(loaded[0].foreground == nil)
        let f = try #require(loaded[2].foreground)
        #expect(f.width == 16 && f.channels == 1)
        #expect(f.pixels.filter { $0 == 1 }.count == 64 && f.pixels.filter { $0 == 0 }.count == 256 - 64)
        #expect(f[0, 4, 2] == 1 && f[0, 3, 2] == 0 && f[0, 4, 10] == 0)
    }
}

@Suite struct BatchingTests {
    @Test func samplerIsSeededAndDeterministic() throws {
        let a = try BatchSampler(count: 23, batchSize: 5, seed: 11)
        let b = try BatchSampler(count: 23, batchSize: 5, seed: 11)
        let other = try BatchSampler(count: 23, batchSize: 5, seed: 12)
        #expect(a.permutation(epoch: 0) == b.permutation(epoch: 0))
        #expect(a.permutation(epoch: 3) == b.permutation(epoch: 3))
        #expect(a.permutation(epoch: 0) != a.permutation(epoch: 1))
        #expect(a.permutation(epoch: 0) != other.permutation(epoch: 0))
        #expect(a.permutation(epoch: 0) != Array(0..<23))
        for e in 0..<5 { #expect(a.permutation(epoch: e).sorted() == Array(0..<23)) }
        // A fixed expected order pins the algorithm (Fisher–Yates over SplitMix64 streams) across versions.
        let pinned = try BatchSampler(count: 6, batchSize: 6, seed: 0).permutation(epoch: 0)
        #expect(pinned.sorted() == Array(0..<6))
        #expect(pinned == [4, 1, 5, 0, 3, 2])
    }

    @Test func batchesKeepOrDropTheLastPartialBatch() throws {
        let keep = try BatchSampler(count: 10, batchSize: 4, seed: 1)
        let drop = try BatchSampler(count: 10, batchSize: 4, seed: 1, dropLast: true)
        #expect(keep.batches(epoch: 2).map(\.count) == [4, 4, 2])
        #expect(keep.batchesPerEpoch == 3 && drop.batchesPerEpoch == 2)
        #expect(drop.batches(epoch: 2).map(\.count) == [4, 4])
        #expect(drop.batches(epoch: 2) == Array(keep.batches(epoch: 2).prefix(2)))
        #expect(keep.batches(epoch: 2).flatMap { $0 } == keep.permutation(epoch: 2))
        let ordered = try BatchSampler(count: 7, batchSize: 3, seed: 9, shuffle: false)
        #expect(ordered.batches(epoch: 5) == [[0, 1, 2], [3, 4, 5], [6]])
        #expect(try BatchSampler(count: 3, batchSize: 4, seed: 0, dropLast: true).batches(epoch: 0).isEmpty)
        #expect(try BatchSampler(count: 0, batchSize: 4, seed: 0).batches(epoch: 0).isEmpty)
        #expect(throws: PatchGuardError.self) { try BatchSampler(count: 3, batchSize: 0, seed: 0) }
    }

    @Test func packCopiesSamplesToTheirSlots() throws {
        func sample(_ k: Int, foreground: Bool) -> LoadedSample {
            let s = 3
            var image = Image(width: s, height: s, channels: 3, value: 0)
            for i in image.pixels.indices { image.pixels[i] = Float(100 * k + i) }
            var mask = Image(width: s, height: s, channels: 1, value: 0)
            mask.pixels[k % 9] = 1
            let fg = foreground ? Image(width: s, height: s, channels: 1, value: 0) : nil
            return LoadedSample(image: image, mask: mask, label: k % 2, foreground: fg, defectType: "x",
                                imagePath: "/\(k)")
        }
        let samples = (0..<4).map { sample($0, foreground: $0 == 3) }
        let batch = try Batch.pack(samples, indices: [3, 1])
        #expect(batch.count == 2 && batch.imageSize == 3)
        #expect(batch.images.count == 2 * 27 && batch.masks.count == 18)
        #expect(Array(batch.images[0..<27]) == samples[3].image.pixels)
        #expect(Array(batch.images[27..<54]) == samples[1].image.pixels)
        #expect(Array(batch.masks[9..<18]) == samples[1].mask.pixels)
        #expect(Array(batch.foregrounds[0..<9]) == [Float](repeating: 0, count: 9))   // sample 3's own mask
        #expect(Array(batch.foregrounds[9..<18]) == [Float](repeating: 1, count: 9))  // none: all foreground
        #expect(batch.labels == [1, 1])
        #expect(throws: PatchGuardError.self) { try Batch.pack(samples, indices: [0, 4]) }
        var mixed = samples
        mixed[2].image = Image(width: 4, height: 4, channels: 3, value: 0)
        #expect(throws: PatchGuardError.self) { try Batch.pack(mixed, indices: [0, 2]) }
    }
}

@Suite struct SampleGridTests {
    @Test func gridShowsImagesAndRedMasks() throws {
        let folder = try DatasetTempFolder()
        let c = try writeSmallTree(folder)[0]
        let path = folder.file("grid.png")
        try writeSampleGrid(category: c, imageSize: 24, count: 3, to: path)
        let grid = try ImageIO.read(path: path)
        // 3 columns, 3 rows (good; defective; defective with mask) of 24 px tiles and 2 px gaps.
        #expect(grid.width == 3 * 26 + 2 && grid.height == 3 * 26 + 2)

        let l = try SampleLoader(imageSize: 24).load(SampleGrid.pick(c, count: 3).defective)
        #expect(l.map(\.defectType) == ["bent", "crack", "hole"])
        // Bottom row, first tile: masked pixels are red-dominated, unmasked ones equal the image.
        var checkedMask = 0
        for y in 0..<24 {
            for x in 0..<24 {
                let gx = 2 + x, gy = 2 + 2 * 26 + y
                if l[0].mask[0, y, x] == 1 {
                    #expect(grid[0, gy, gx] > grid[1, gy, gx] + 0.2); checkedMask += 1
                } else {
                    #expect(abs(grid[1, gy, gx] - l[0].image[1, y, x]) <= 1 / 255 + 1e-6)
                }
            }
        }
        #expect(checkedMask > 0)
    }
}
