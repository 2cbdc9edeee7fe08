import Foundation
import PatchGuardCore
import PatchGuardData

/// The image files `patchguard predict` scores, from the paths on its command line.
///
/// A file is taken as given (whatever its extension; it fails at decoding if it is not a PNG or JPEG). A folder is
/// searched recursively for `.png`, `.jpg` and `.jpeg` files (case-insensitive), skipping hidden files and folders
/// (names starting with "."), and its files are sorted by their path inside it, so the order is the same on every
/// machine. Paths keep the command line's order; a file named twice (directly or through folders) is kept once, at
/// its first place. A path that does not exist, or a folder without images, is an error naming it.
public enum PredictInputs {
    public static func collect(_ paths: [String]) throws -> [String] {
        guard !paths.isEmpty else {
            throw PatchGuardError.invalidArgument("predict: give at least one image file or folder")
        }
        var out = [String](), seen = Set<String>()
        func add(_ path: String) {
            if seen.insert((path as NSString).standardizingPath).inserted { out.append(path) }
        }
        for path in paths {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw PatchGuardError.io(path: path, reason: "no such file or folder")
            }
            guard isFolder.boolValue else { add(path); continue }
            let found = images(under: path)
            if found.isEmpty {
                throw PatchGuardError.io(path: path, reason: "folder holds no PNG or JPEG files (.png, .jpg, .jpeg; "
                                         + "searched recursively)")
            }
            found.forEach(add)
        }
        return out
    }

    /// The image files under `folder` (see the type), sorted.
    public static func images(under folder: String) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var relative = [String]()
        while let item = walker.nextObject() as? String {
            let name = (item as NSString).lastPathComponent
            if name.hasPrefix(".") { walker.skipDescendants(); continue }
            let ext = (name as NSString).pathExtension.lowercased()
            guard MVTecCategory.imageExtensions.contains(ext) else { continue }
            var isFolder: ObjCBool = false
            let full = (folder as NSString).appendingPathComponent(item)
            if FileManager.default.fileExists(atPath: full, isDirectory: &isFolder), !isFolder.boolValue {
                relative.append(item)
            }
        }
        return relative.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            .map { (folder as NSString).appendingPathComponent($0) }
    }
}
