import Foundation
import PatchGuardCore
import PatchGuardImage
@testable import PatchGuardData
import Testing

/// Square (Chebyshev) dilation of a 1-channel binary image.
private func dilate(_ m: Image, by r: Int) -> Image {
    var out = m
    for y in 0..<m.height {
        for x in 0..<m.width {
            var hit: Float = 0
            for yy in max(0, y - r)...min(m.height - 1, y + r) {
                for xx in max(0, x - r)...min(m.width - 1, x + r) where m[0, yy, xx] >= 0.5 { hit = 1 }
            }
            out[0, y, x] = hit
        }
    }
    return out
}

/// The largest per-channel change between two RGB images at pixel `i`.
private func change(_ a: Image, _ b: Image, _ i: Int) -> Float {
    let n = a.planeSize
    return max(abs(a.pixels[i] - b.pixels[i]), abs(a.pixels[n + i] - b.pixels[n + i]),
               abs(a.pixels[2 * n + i] - b.pixels[2 * n + i]))
}

/// All files under `path`, relative, sorted.
private func fileTree(_ path: String) -> [String] {
    (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? [])
        .filter { !MVTecCategory.isDirectory(path + "/" + $0) }.sorted()
}

@Suite struct GeneratedDataTests {
    @Test func deterministicForASeed() throws {
        let counts = GeneratedCounts(trainGood: 3, testGood: 2, testDefective: 6)
        for kind in GeneratedCategoryKind.allCases {
            let a = try GeneratedDataset.generate(kind, seed: 5, imageSize: 40, counts: counts)
            let b = try GeneratedDataset.generate(kind, seed: 5, imageSize: 40, counts: counts)
            let c = try GeneratedDataset.generate(kind, seed: 6, imageSize: 40, counts: counts)
            #expect(a.map(\.image) == b.map(\.image) && a.map(\.mask) == b.map(\.mask))
            #expect(zip(a, c).allSatisfy { $0.image != $1.image })
            // Images are keyed by (folder, index): more images leave the existing ones unchanged.
            let more = try GeneratedDataset.generate(kind, seed: 5, imageSize: 40,
                                                     counts: GeneratedCounts(trainGood: 5, testGood: 2,
                                                                             testDefective: 6))
            #expect(Array(more.prefix(3).map(\.image)) == Array(a.prefix(3).map(\.image)))
        }

        // Written files: identical bytes for the same seed, different for another.
        let x = try DatasetTempFolder(), y = try DatasetTempFolder(), z = try DatasetTempFolder()
        for f in [x, y] { try GeneratedDataset.write(to: f.path, seed: 9, imageSize: 24, counts: counts) }
        try GeneratedDataset.write(to: z.path, seed: 10, imageSize: 24, counts: counts)
        let files = fileTree(x.path)
        #expect(files == fileTree(y.path) && files == fileTree(z.path))
        #expect(files.contains("widget/_true_foreground/train/good/000.png"))
        #expect(!files.contains { $0.hasPrefix("weave/_true_foreground") })
        var differing = 0
        for f in files {
            let bx = try Data(contentsOf: URL(fileURLWithPath: x.file(f)))
            #expect(bx == (try Data(contentsOf: URL(fileURLWithPath: y.file(f)))), "\(f)")
            if bx != (try Data(contentsOf: URL(fileURLWithPath: z.file(f)))) { differing += 1 }
        }
        #expect(differing > files.count / 2)
    }

    @Test func countsSpreadOverDefectTypes() throws {
        let all = try GeneratedDataset.generate(.widget, seed: 0, imageSize: 24,
                                                counts: GeneratedCounts(trainGood: 2, testGood: 1,
                                                                        testDefective: 15), withClean: false)
        let perType = Dictionary(grouping: all.filter { $0.label == 1 }, by: \.defectType).mapValues(\.count)
        #expect(perType == ["bent": 3, "crack": 3, "hole": 3, "missing": 2, "scratch": 2, "stain": 2])
        #expect(all.filter { $0.split == "train" }.allSatisfy { $0.label == 0 && $0.defectType == "good" })
        #expect(throws: PatchGuardError.self) {
            try GeneratedDataset.generate(.weave, seed: 0, imageSize: 8)
        }
        #expect(throws: PatchGuardError.self) {
            try GeneratedDataset.generate(.weave, seed: 0, imageSize: 32, counts: GeneratedCounts(trainGood: 0))
        }
    }

    /// Every defect changes the pixels its mask covers, and nothing more than 2 px away from it.
    @Test(arguments: GeneratedCategoryKind.allCases)
    func masksCoverExactlyTheChangedPixels(kind: GeneratedCategoryKind) throws {
        let types = kind.defectTypes.count
        for (seed, size) in [(UInt64(1), 64), (2, 96)] {
            let images = try GeneratedDataset.generate(kind, seed: seed, imageSize: size,
                                                       counts: GeneratedCounts(trainGood: 1, testGood: 2,
                                                                               testDefective: 2 * types))
            for g in images {
                let n = g.image.planeSize
                if g.label == 0 {
                    #expect(g.clean == g.image)
                    #expect(!g.mask.pixels.contains(1))
                    continue
                }
                let area = g.mask.pixels.filter { $0 == 1 }.count
                #expect(area >= 6, "\(kind) \(g.relativePath) seed \(seed): mask area \(area)")
                let near = dilate(g.mask, by: 2)
                var strayChanges = 0, changedInMask = 0
                var sumInMask: Float = 0
                for i in 0..<n {
                    let d = change(g.image, g.clean, i)
                    if g.mask.pixels[i] == 1 {
                        sumInMask += d
                        if d > 0.02 { changedInMask += 1 }
                    } else if near.pixels[i] == 0 && d > 0.004 {
                        strayChanges += 1
                    }
                }
                let label = "\(kind) \(g.relativePath) seed \(seed) size \(size)"
                #expect(strayChanges == 0, "\(label): \(strayChanges) changed pixels far from the mask")
                #expect(Float(changedInMask) >= 0.5 * Float(area),
                        "\(label): only \(changedInMask) of \(area) mask pixels changed")
                #expect(sumInMask / Float(max(1, area)) > 0.08, "\(label): mean change \(sumInMask / Float(area))")
            }
        }
    }

    @Test func widgetDefectsLieOnTheObject() throws {
        let images = try GeneratedDataset.generate(.widget, seed: 4, imageSize: 64,
                                                   counts: GeneratedCounts(trainGood: 6, testGood: 2,
                                                                           testDefective: 18))
        for g in images {
            let fg = g.foreground.pixels.filter { $0 == 1 }.count
            let fraction = Float(fg) / Float(g.foreground.planeSize)
            #expect(fraction > 0.2 && fraction < 0.45, "\(g.relativePath): object covers \(fraction)")
            // The object is centred-ish: no foreground on the image border.
            for k in 0..<64 {
                #expect(g.foreground[0, 0, k] == 0 && g.foreground[0, 63, k] == 0)
                #expect(g.foreground[0, k, 0] == 0 && g.foreground[0, k, 63] == 0)
            }
            guard g.label == 1 else { #expect(g.cleanForeground == g.foreground); continue }
            var object = g.cleanForeground
            for i in object.pixels.indices { object.pixels[i] = max(object.pixels[i], g.foreground.pixels[i]) }
            object = dilate(object, by: 1)
            let outside = zip(g.mask.pixels, object.pixels).filter { $0 == 1 && $1 == 0 }.count
            #expect(outside == 0, "\(g.relativePath): \(outside) mask pixels off the object")
            switch g.defectType {
            case "hole", "missing":
                #expect(g.foreground.pixels.filter { $0 == 1 }.count
                        < g.cleanForeground.pixels.filter { $0 == 1 }.count, "\(g.relativePath) removes object")
            case "bent":
                #expect(g.foreground != g.cleanForeground)
            default:
                #expect(g.foreground == g.cleanForeground, "\(g.relativePath) keeps the silhouette")
            }
        }
        let weave = try GeneratedDataset.generate(.weave, seed: 4, imageSize: 32,
                                                  counts: GeneratedCounts(trainGood: 1, testGood: 0, testDefective: 0))
        #expect(weave[0].foreground.pixels.allSatisfy { $0 == 1 })
    }

    @Test func writeMatchesMemoryAndRefusesForeignFolders() throws {
        let folder = try DatasetTempFolder()
        let counts = GeneratedCounts(trainGood: 4, testGood: 1, testDefective: 4)
        let categories = try GeneratedDataset.write(to: folder.path, seed: 2, imageSize: 32, counts: counts)
        #expect(categories.map(\.category) == ["weave", "widget"])
        let memory = try GeneratedDataset.generate(.widget, seed: 2, imageSize: 32, counts: counts)
        for g in memory {
            let fg = try ImageIO.readMask(path: folder.file("widget/_true_foreground/\(g.relativePath)"))
            #expect(fg == g.foreground, "\(g.relativePath)")
        }
        let marker = try Data(contentsOf: URL(fileURLWithPath: folder.file("widget/_generated.json")))
        let json = try #require(try JSONSerialization.jsonObject(with: marker) as? [String: Any])
        #expect(json["seed"] as? Int == 2 && json["image_size"] as? Int == 32)
        #expect(GeneratedDataset.isUpToDate(root: folder.path, seed: 2, imageSize: 32, counts: counts))
        #expect(!GeneratedDataset.isUpToDate(root: folder.path, seed: 3, imageSize: 32, counts: counts))
        #expect(!GeneratedDataset.isUpToDate(root: folder.path, seed: 2, imageSize: 64, counts: counts))
        #expect(!GeneratedDataset.isUpToDate(root: folder.file("nowhere"), seed: 2, imageSize: 32, counts: counts))

        // Rewriting a generated folder replaces it (no stale files); a foreign folder is refused.
        try GeneratedDataset.write(to: folder.path, seed: 2, imageSize: 32,
                                   counts: GeneratedCounts(trainGood: 2, testGood: 1, testDefective: 4))
        #expect(try MVTecCategory.scan(root: folder.path, category: "widget").train.count == 2)
        try FileManager.default.createDirectory(atPath: folder.file("foreign/weave"), withIntermediateDirectories: true)
        try writeTestBytes(folder.file("foreign/weave/keep.txt"), Data([1]))
        #expect(throws: PatchGuardError.self) {
            try GeneratedDataset.write(to: folder.file("foreign"), seed: 0, imageSize: 32, categories: [.weave])
        }
        #expect(FileManager.default.fileExists(atPath: folder.file("foreign/weave/keep.txt")))
    }
}
