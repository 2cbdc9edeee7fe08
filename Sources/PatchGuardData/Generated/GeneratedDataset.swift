import Foundation
import PatchGuardCore
import PatchGuardImage

/// The categories of the generated dataset.
public enum GeneratedCategoryKind: String, CaseIterable, Sendable, Codable {
    /// A textured fabric filling the image (texture category: the whole image is foreground).
    case weave
    /// A painted disc with a hub, rivets and a tab on a plain background (object category).
    case widget

    /// Sorted defect folder names.
    public var defectTypes: [String] {
        switch self {
        case .weave: return WeaveScene.defectTypes
        case .widget: return WidgetScene.defectTypes
        }
    }

    /// `true` for an object on a background (foreground masks matter), `false` for a texture.
    public var isObject: Bool { self == .widget }

    var index: UInt64 { self == .weave ? 1 : 2 }
}

/// How many images of each kind a generated category has.
public struct GeneratedCounts: Sendable, Equatable, Codable {
    public var trainGood: Int
    public var testGood: Int
    /// Defective test images, spread round-robin over the category's defect types.
    public var testDefective: Int

    public init(trainGood: Int = 360, testGood: Int = 30, testDefective: Int = 60) {
        self.trainGood = trainGood; self.testGood = testGood; self.testDefective = testDefective
    }

    enum CodingKeys: String, CodingKey {
        case trainGood = "train_good", testGood = "test_good", testDefective = "test_defective"
    }
}

/// One generated image with its ground truth.
public struct GeneratedImage: Sendable {
    /// `"train"` or `"test"`.
    public var split: String
    /// `"good"` or the defect type.
    public var defectType: String
    /// File stem (`"000"`), numbered per folder.
    public var stem: String
    /// 0 good, 1 defective.
    public var label: Int
    /// 3 × S × S RGB.
    public var image: Image
    /// The same scene without its defect (equal to `image` for good images): `image − clean` is the defect.
    public var clean: Image
    /// 1 × S × S ground truth in {0, 1}: pixels the defect covers at least 30 % of.
    public var mask: Image
    /// 1 × S × S true foreground in {0, 1} (object pixels at ≥ 50 % coverage; all ones for a texture).
    public var foreground: Image
    /// The true foreground of ``clean`` (equal to `foreground` for good images; differs where a hole, a missing
    /// part or a bent tab changed the silhouette).
    public var cleanForeground: Image

    /// Path of the image relative to the category folder (`test/crack/003.png`).
    public var relativePath: String { "\(split)/\(defectType)/\(stem).png" }
}

/// A small, deterministic dataset in the MVTec AD layout, drawn procedurally — the project's default data.
///
/// Two categories: ``GeneratedCategoryKind/widget`` (an object; see `WidgetScene`) and
/// ``GeneratedCategoryKind/weave`` (a texture; see `WeaveScene`). Test defects are real defect types drawn
/// procedurally with exact masks (scratches, branching cracks, through-holes, stains, a broken-off rim segment,
/// a bent tab), never by cutting and pasting image content, so evaluating a detector trained on cut-paste
/// pseudo-anomalies on them is not circular. Every widget defect lies on the object.
///
/// Determinism: image `k` of a folder is drawn from its own stream `SeededRNG(seed:stream:)` keyed by
/// (category, folder, k), so the same seed gives the same pixels and bytes whatever the thread count, and changing
/// a count adds or removes images without changing the others.
///
/// Files written by ``write(to:seed:imageSize:counts:categories:)``, for each category `C`:
/// ```
/// ROOT/C/train/good/000.png …                 training images (no train/foreground_mask: Grad-CAM computes it)
/// ROOT/C/test/good/000.png …
/// ROOT/C/test/<defect>/000.png …
/// ROOT/C/ground_truth/<defect>/000_mask.png …
/// ROOT/C/_true_foreground/<split>/<type>/000.png   widget only: the true object mask of every image (white =
///                                                 object), for checking Grad-CAM foreground masks; outside the
///                                                 MVTec layout, so the scanner never sees it
/// ROOT/C/_generated.json                      the parameters (seed, image size, counts, version)
/// ```
public enum GeneratedDataset {
    /// Bumped whenever the drawing changes, so a stale generated folder can be recognised.
    public static let version = 3
    public static let defaultImageSize = 128
    /// Name of the parameter file written into each generated category folder.
    public static let markerFile = "_generated.json"
    /// Name of the folder holding the true foreground masks of an object category.
    public static let trueForegroundFolder = "_true_foreground"

    /// Everything needed to draw one image.
    struct Item {
        var kind: GeneratedCategoryKind
        var split: String
        var defectType: String
        var folderIndex: UInt64
        var index: Int
        var stem: String
    }

    /// The items of a category in scan order: train/good, test/good, then test/<defect> by name.
    static func items(_ kind: GeneratedCategoryKind, counts: GeneratedCounts) -> [Item] {
        func stem(_ i: Int) -> String { i < 1000 ? String(format: "%03d", i) : String(i) }
        var out: [Item] = []
        for i in 0..<max(0, counts.trainGood) {
            out.append(Item(kind: kind, split: "train", defectType: "good", folderIndex: 0, index: i, stem: stem(i)))
        }
        for i in 0..<max(0, counts.testGood) {
            out.append(Item(kind: kind, split: "test", defectType: "good", folderIndex: 1, index: i, stem: stem(i)))
        }
        let types = kind.defectTypes
        for (t, type) in types.enumerated() {
            let n = max(0, counts.testDefective) / types.count + (t < max(0, counts.testDefective) % types.count ? 1 : 0)
            for i in 0..<n {
                out.append(Item(kind: kind, split: "test", defectType: type, folderIndex: UInt64(2 + t), index: i,
                                stem: stem(i)))
            }
        }
        return out
    }

    /// Draws one image (and, when `withClean`, the same scene without its defect).
    static func render(_ item: Item, seed: UInt64, imageSize s: Int, withClean: Bool) -> GeneratedImage {
        var rng = SeededRNG(seed: seed, stream: item.kind.index << 48 | item.folderIndex << 32 | UInt64(item.index))
        let defective = item.defectType != "good"
        let scene: RenderedScene
        var clean: RenderedScene? = nil
        switch item.kind {
        case .widget:
            let w = WidgetScene.random(size: s, using: &rng)
            let d = defective ? w.randomDefect(item.defectType, using: &rng) : nil
            scene = w.render(defect: d)
            if defective && withClean { clean = w.render(defect: nil) }
        case .weave:
            let w = WeaveScene.random(size: s, using: &rng)
            let d = defective ? w.randomDefect(item.defectType, using: &rng) : nil
            scene = w.render(defect: d)
            if defective && withClean { clean = w.render(defect: nil) }
        }
        let image = Image(width: s, height: s, channels: 3, pixels: scene.image)
        func binary(_ v: [Float], _ threshold: Float) -> Image {
            Image(width: s, height: s, channels: 1, pixels: v.map { $0 >= threshold ? 1 : 0 })
        }
        let foreground = binary(scene.foreground, 0.5)
        return GeneratedImage(
            split: item.split, defectType: item.defectType, stem: item.stem, label: defective ? 1 : 0,
            image: image, clean: clean.map { Image(width: s, height: s, channels: 3, pixels: $0.image) } ?? image,
            mask: binary(scene.defect, 0.3), foreground: foreground,
            cleanForeground: clean.map { binary($0.foreground, 0.5) } ?? foreground)
    }

    static func validate(imageSize: Int, counts: GeneratedCounts) throws {
        guard imageSize >= 16 else {
            throw PatchGuardError.invalidArgument("generated image size must be at least 16, got \(imageSize)")
        }
        guard counts.trainGood > 0, counts.testGood >= 0, counts.testDefective >= 0 else {
            throw PatchGuardError.invalidArgument("generated counts need train_good > 0 and test counts ≥ 0, got "
                                                  + "\(counts.trainGood)/\(counts.testGood)/\(counts.testDefective)")
        }
    }

    /// The whole category in memory, in scan order (train/good, test/good, test/<defect> by name), nothing
    /// written. `withClean` also draws each defective scene without its defect (``GeneratedImage/clean``).
    public static func generate(_ kind: GeneratedCategoryKind, seed: UInt64, imageSize: Int = defaultImageSize,
                                counts: GeneratedCounts = GeneratedCounts(), withClean: Bool = true) throws
        -> [GeneratedImage] {
        try validate(imageSize: imageSize, counts: counts)
        let list = items(kind, counts: counts)
        var out = [GeneratedImage?](repeating: nil, count: list.count)
        out.withUnsafeMutableBufferPointer { buf in
            parallelFor(list.count) { i in
                buf[i] = render(list[i], seed: seed, imageSize: imageSize, withClean: withClean)
            }
        }
        return out.compactMap { $0 }
    }

    /// Writes the categories under `root` (created if needed) and returns them scanned.
    ///
    /// A category folder that already exists is replaced only if it holds ``markerFile`` (it was generated);
    /// any other non-empty folder is refused with ``PatchGuardError/dataset(_:)``, so real data is never
    /// overwritten.
    @discardableResult
    public static func write(to root: String, seed: UInt64, imageSize: Int = defaultImageSize,
                             counts: GeneratedCounts = GeneratedCounts(),
                             categories: [GeneratedCategoryKind] = GeneratedCategoryKind.allCases) throws
        -> [MVTecCategory] {
        try validate(imageSize: imageSize, counts: counts)
        let fm = FileManager.default
        var scanned: [MVTecCategory] = []
        for kind in categories {
            let dir = MVTecCategory.join(root, kind.rawValue)
            try prepare(dir, fm: fm)
            let list = items(kind, counts: counts)
            var folders = Set(list.map { "\($0.split)/\($0.defectType)" })
            for item in list where item.defectType != "good" { folders.insert("ground_truth/\(item.defectType)") }
            if kind.isObject { for f in Array(folders) where !f.hasPrefix("ground_truth") {
                folders.insert("\(trueForegroundFolder)/\(f)") } }
            for f in folders.sorted() { try makeDirectory(MVTecCategory.join(dir, f), fm: fm) }

            var errors = [Error?](repeating: nil, count: list.count)
            errors.withUnsafeMutableBufferPointer { errs in
                parallelFor(list.count) { i in
                    let g = render(list[i], seed: seed, imageSize: imageSize, withClean: false)
                    do {
                        try ImageIO.writePNG(g.image, path: MVTecCategory.join(dir, g.relativePath))
                        if g.label == 1 {
                            try ImageIO.writePNG(g.mask, path: MVTecCategory.join(
                                dir, "ground_truth/\(g.defectType)/\(g.stem)_mask.png"))
                        }
                        if kind.isObject {
                            try ImageIO.writePNG(g.foreground, path: MVTecCategory.join(
                                dir, "\(trueForegroundFolder)/\(g.relativePath)"))
                        }
                    } catch {
                        errs[i] = error
                    }
                }
            }
            if let first = errors.lazy.compactMap({ $0 }).first { throw first }

            let marker: [String: Any] = [
                "generator": "PatchGuardData.GeneratedDataset", "version": version, "category": kind.rawValue,
                "seed": seed, "image_size": imageSize, "train_good": counts.trainGood,
                "test_good": counts.testGood, "test_defective": counts.testDefective,
                "object": kind.isObject, "defect_types": kind.defectTypes,
            ]
            let markerPath = MVTecCategory.join(dir, markerFile)
            let data: Data
            do {
                data = try JSONSerialization.data(withJSONObject: marker, options: [.prettyPrinted, .sortedKeys])
            } catch {
                throw PatchGuardError.io(path: markerPath, reason: "\(error)")
            }
            try AtomicFile.write(data, to: markerPath)
            scanned.append(try MVTecCategory.scan(root: root, category: kind.rawValue))
        }
        return scanned
    }

    /// Whether `ROOT/CATEGORY` already holds the categories generated with exactly these parameters (by their
    /// ``markerFile``; the images themselves are not checked), so a job can skip regenerating them.
    public static func isUpToDate(root: String, seed: UInt64, imageSize: Int = defaultImageSize,
                                  counts: GeneratedCounts = GeneratedCounts(),
                                  categories: [GeneratedCategoryKind] = GeneratedCategoryKind.allCases) -> Bool {
        categories.allSatisfy { kind in
            let path = MVTecCategory.join(root, kind.rawValue, markerFile)
            guard let data = FileManager.default.contents(atPath: path),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
            return (json["version"] as? Int) == version && (json["seed"] as? NSNumber)?.uint64Value == seed
                && (json["image_size"] as? Int) == imageSize && (json["train_good"] as? Int) == counts.trainGood
                && (json["test_good"] as? Int) == counts.testGood
                && (json["test_defective"] as? Int) == counts.testDefective
        }
    }

    /// Empties a previously generated category folder; refuses a non-empty folder that was not generated.
    static func prepare(_ dir: String, fm: FileManager) throws {
        guard fm.fileExists(atPath: dir) else { return }
        guard MVTecCategory.isDirectory(dir) else {
            throw PatchGuardError.dataset("\(dir) exists and is not a folder; cannot generate a category there")
        }
        let entries = try MVTecCategory.listing(dir)
        if entries.isEmpty { return }
        guard entries.contains(markerFile) else {
            throw PatchGuardError.dataset("\(dir) already exists and was not generated (no \(markerFile)); "
                                          + "refusing to overwrite it — choose another root or remove it")
        }
        for name in ["train", "test", "ground_truth", trueForegroundFolder, markerFile] {
            let path = MVTecCategory.join(dir, name)
            if fm.fileExists(atPath: path) {
                do { try fm.removeItem(atPath: path) } catch {
                    throw PatchGuardError.io(path: path, reason: "cannot remove old generated data (\(error))")
                }
            }
        }
    }

    static func makeDirectory(_ path: String, fm: FileManager) throws {
        do { try fm.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw PatchGuardError.io(path: path, reason: "cannot create folder (\(error.localizedDescription))")
        }
    }
}
