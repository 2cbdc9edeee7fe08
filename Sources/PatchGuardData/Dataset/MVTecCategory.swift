import Foundation
import PatchGuardCore
import PatchGuardImage

/// One image of a dataset category, by path (nothing decoded yet).
public struct Sample: Sendable, Equatable, Hashable {
    /// Full path of the image (`ROOT/CATEGORY/{train,test}/<type>/<stem>.<ext>`).
    public var imagePath: String
    /// Full path of the ground-truth mask (`ROOT/CATEGORY/ground_truth/<defect>/<stem>_mask.png`); `nil` for good
    /// images, whose mask is all zeros.
    public var maskPath: String?
    /// Full path of an optional precomputed foreground mask (`ROOT/CATEGORY/train/foreground_mask/<stem>.png`).
    public var foregroundMaskPath: String?
    /// 0 for a good (normal) image, 1 for a defective one.
    public var label: Int
    /// `"good"` or the defect folder's name (`"crack"`, `"hole"`, …).
    public var defectType: String
    /// File name without extension (`"003"`).
    public var stem: String

    public init(imagePath: String, maskPath: String? = nil, foregroundMaskPath: String? = nil, label: Int,
                defectType: String, stem: String) {
        self.imagePath = imagePath; self.maskPath = maskPath; self.foregroundMaskPath = foregroundMaskPath
        self.label = label; self.defectType = defectType; self.stem = stem
    }
}

/// A category of a dataset in the MVTec AD layout, scanned from disk.
///
/// Layout (`ROOT/CATEGORY/…`):
/// ```
/// train/good/<stem>.png                 normal training images (at least one)
/// train/foreground_mask/<stem>.png      optional: a foreground mask per training image (same stem)
/// test/good/<stem>.png                  normal test images
/// test/<defect>/<stem>.png              defective test images, one folder per defect type
/// ground_truth/<defect>/<stem>_mask.png one mask per defective test image (white = defect)
/// ```
/// Images may be PNG or JPEG (`.png`, `.jpg`, `.jpeg`, any case); masks too, though MVTec ships PNG. Hidden files
/// (names starting with `.`), subfolders and files with other extensions are ignored, as are folders the layout
/// does not name (so `_true_foreground/` next to `train/` is invisible to the scan). A missing `test/` folder gives
/// an empty test split; `ground_truth/good/` is ignored (good images have all-zero masks).
///
/// Order is deterministic: defect types sorted by name, files sorted by name within each folder; `test` lists
/// `good` first, then the defect types in order.
///
/// Fails early with ``PatchGuardError/dataset(_:)`` and a message listing every problem with the expected name:
/// a defective image without its mask, a mask without its image, a mask not named `<stem>_mask.<ext>`, two files
/// with the same stem in one folder, a foreground mask without its training image, or no training images at all.
public struct MVTecCategory: Sendable, Equatable {
    /// The dataset root (the folder holding category folders).
    public var root: String
    public var category: String
    /// Normal training images (`train/good`), label 0.
    public var train: [Sample]
    /// `test/good` (label 0) then each defect type's images (label 1).
    public var test: [Sample]
    /// Sorted defect folder names under `test/` (without `good`).
    public var defectTypes: [String]

    public init(root: String, category: String, train: [Sample], test: [Sample], defectTypes: [String]) {
        self.root = root; self.category = category; self.train = train; self.test = test
        self.defectTypes = defectTypes
    }

    /// `ROOT/CATEGORY`.
    public var directory: String { MVTecCategory.join(root, category) }

    /// Extensions (lower case) the scan accepts for images and masks.
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Counts per split, for logs and reports: `train good / test good / test <defect>…`.
    public var summary: String {
        let good = test.filter { $0.label == 0 }.count
        let perDefect = defectTypes.map { d in "\(d) \(test.filter { $0.defectType == d }.count)" }
        return "\(category): train good \(train.count), test good \(good), test defective "
            + "\(test.count - good)" + (perDefect.isEmpty ? "" : " (\(perDefect.joined(separator: ", ")))")
    }

    /// The categories under `root`: sorted names of the non-hidden folders that contain `train/good`.
    public static func categories(in root: String) throws -> [String] {
        guard isDirectory(root) else {
            throw PatchGuardError.dataset("dataset root \(root) is not a folder")
        }
        return try listing(root).filter { !$0.hasPrefix(".") && isDirectory(join(root, $0, "train", "good")) }
    }

    /// Scans `ROOT/CATEGORY` (see the type's documentation for the layout and the errors).
    /// - Parameter foregroundDirectory: where the foreground masks are, when not in `train/foreground_mask`
    ///   (e.g. masks computed for a read-only dataset); `nil` or empty = the layout's folder.
    public static func scan(root: String, category: String, foregroundDirectory: String? = nil) throws -> MVTecCategory {
        let dir = join(root, category)
        guard isDirectory(dir) else {
            var hint = ""
            if let found = try? categories(in: root), !found.isEmpty {
                hint = " (categories found there: \(found.joined(separator: ", ")))"
            }
            throw PatchGuardError.dataset("no category folder \(dir)\(hint); expected the MVTec AD layout "
                                          + "ROOT/CATEGORY/train/good/*.png")
        }
        var problems: [String] = []

        // Training images and optional foreground masks.
        let trainDir = join(dir, "train", "good")
        let trainFiles = isDirectory(trainDir) ? try imageFiles(in: trainDir) : []
        problems += duplicateStems(trainFiles, folder: "train/good")
        if trainFiles.isEmpty {
            throw PatchGuardError.dataset("category \(dir) has no training images: expected images in "
                                          + "\(trainDir)/ (e.g. train/good/000.png)")
        }
        var foreground: [String: String] = [:]
        let customFg = foregroundDirectory.map { !$0.isEmpty } ?? false
        let fgDir = customFg ? foregroundDirectory! : join(dir, "train", "foreground_mask")
        let fgName = customFg ? fgDir : "train/foreground_mask"
        if customFg && !isDirectory(fgDir) {
            problems.append("foreground mask folder \(fgDir) does not exist (expected <stem>.png per training image)")
        }
        if isDirectory(fgDir) {
            let fgFiles = try imageFiles(in: fgDir)
            problems += duplicateStems(fgFiles, folder: fgName)
            let trainStems = Set(trainFiles.map(\.stem))
            for f in fgFiles {
                if trainStems.contains(f.stem) {
                    foreground[f.stem] = join(fgDir, f.name)
                } else {
                    problems.append("\(fgName)/\(f.name) matches no training image: expected "
                                    + "train/good/\(f.stem).png")
                }
            }
        }
        let train = trainFiles.map {
            Sample(imagePath: join(trainDir, $0.name), foregroundMaskPath: foreground[$0.stem], label: 0,
                   defectType: "good", stem: $0.stem)
        }

        // Test images: good first, then defects in name order, each with its mask.
        var test: [Sample] = []
        var defectTypes: [String] = []
        let testDir = join(dir, "test")
        let gtDir = join(dir, "ground_truth")
        let testTypes = isDirectory(testDir) ? try subfolders(testDir) : []
        if testTypes.contains("good") {
            let files = try imageFiles(in: join(testDir, "good"))
            problems += duplicateStems(files, folder: "test/good")
            test += files.map {
                Sample(imagePath: join(testDir, "good", $0.name), label: 0, defectType: "good", stem: $0.stem)
            }
        }
        for defect in testTypes where defect != "good" {
            let files = try imageFiles(in: join(testDir, defect))
            if files.isEmpty { continue }
            problems += duplicateStems(files, folder: "test/\(defect)")
            defectTypes.append(defect)
            let maskDir = join(gtDir, defect)
            let masks = isDirectory(maskDir) ? try imageFiles(in: maskDir) : []
            var maskByStem: [String: String] = [:]
            for m in masks {
                guard m.stem.hasSuffix("_mask") else {
                    problems.append("ground_truth/\(defect)/\(m.name) is not named <stem>_mask.png: expected "
                                    + "e.g. ground_truth/\(defect)/\(files[0].stem)_mask.png")
                    continue
                }
                let imageStem = String(m.stem.dropLast("_mask".count))
                if maskByStem[imageStem] != nil {
                    problems.append("ground_truth/\(defect) has two masks for stem \(imageStem)")
                }
                maskByStem[imageStem] = m.name
            }
            let stems = Set(files.map(\.stem))
            for f in files where maskByStem[f.stem] == nil {
                problems.append("test/\(defect)/\(f.name) has no mask: expected ground_truth/\(defect)/"
                                + "\(f.stem)_mask.png")
            }
            for (stem, name) in maskByStem.sorted(by: { $0.key < $1.key }) where !stems.contains(stem) {
                problems.append("ground_truth/\(defect)/\(name) has no image: expected test/\(defect)/"
                                + "\(stem).png")
            }
            test += files.map {
                Sample(imagePath: join(testDir, defect, $0.name),
                       maskPath: maskByStem[$0.stem].map { join(maskDir, $0) }, label: 1, defectType: defect,
                       stem: $0.stem)
            }
        }
        // Masks for defect types that have no (non-empty) test folder.
        if isDirectory(gtDir) {
            for defect in try subfolders(gtDir) where defect != "good" && !defectTypes.contains(defect) {
                for m in try imageFiles(in: join(gtDir, defect)) {
                    let stem = m.stem.hasSuffix("_mask") ? String(m.stem.dropLast("_mask".count)) : m.stem
                    problems.append("ground_truth/\(defect)/\(m.name) has no image: expected test/\(defect)/"
                                    + "\(stem).png")
                }
            }
        }

        if !problems.isEmpty {
            let shown = problems.prefix(12).map { "  - " + $0 }
            let more = problems.count > 12 ? ["  … and \(problems.count - 12) more"] : []
            throw PatchGuardError.dataset((["category \(dir) does not follow the MVTec AD layout "
                                            + "(\(problems.count) problem\(problems.count == 1 ? "" : "s")):"]
                                           + shown + more).joined(separator: "\n"))
        }
        return MVTecCategory(root: root, category: category, train: train, test: test, defectTypes: defectTypes)
    }

    // MARK: - File system helpers

    struct ImageFile { var name: String; var stem: String }

    static func join(_ parts: String...) -> String {
        var out = ""
        for p in parts where !p.isEmpty {
            if out.isEmpty { out = p } else if out.hasSuffix("/") { out += p } else { out += "/" + p }
        }
        return out
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    static func listing(_ path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw PatchGuardError.io(path: path, reason: "cannot list folder (\(error.localizedDescription))")
        }
    }

    /// Sorted, non-hidden subfolder names.
    static func subfolders(_ path: String) throws -> [String] {
        try listing(path).filter { !$0.hasPrefix(".") && isDirectory(join(path, $0)) }
    }

    /// Sorted, non-hidden image files (by extension, case-insensitive).
    static func imageFiles(in path: String) throws -> [ImageFile] {
        try listing(path).compactMap { name -> ImageFile? in
            guard !name.hasPrefix("."), let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
            let ext = name[name.index(after: dot)...].lowercased()
            guard imageExtensions.contains(ext), !isDirectory(join(path, name)) else { return nil }
            return ImageFile(name: name, stem: String(name[..<dot]))
        }
    }

    static func duplicateStems(_ files: [ImageFile], folder: String) -> [String] {
        var seen: [String: String] = [:]
        var out: [String] = []
        for f in files {
            if let first = seen[f.stem] {
                out.append("\(folder) has two images with stem \(f.stem): \(first) and \(f.name)")
            } else {
                seen[f.stem] = f.name
            }
        }
        return out
    }
}
