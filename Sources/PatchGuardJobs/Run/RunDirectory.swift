import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// One run's folder: resolved config, log, checkpoints, metrics and pictures all land here.
public final class RunDirectory: @unchecked Sendable {
    public let path: String
    private let logHandle: FileHandle?

    /// Creates `path`, or a new timestamped folder `runs/<yyyyMMdd-HHmmss>-<command>` when `path` is nil.
    public init(path: String?, command: String) throws {
        let resolved: String
        if let path { resolved = path } else {
            let f = DateFormatter()
            f.dateFormat = "yyyyMMdd-HHmmss"
            f.locale = Locale(identifier: "en_US_POSIX")
            var candidate = "runs/\(f.string(from: Date()))-\(command)"
            var n = 2
            while FileManager.default.fileExists(atPath: candidate) {
                candidate = "runs/\(f.string(from: Date()))-\(command)-\(n)"; n += 1
            }
            resolved = candidate
        }
        do {
            try FileManager.default.createDirectory(atPath: resolved, withIntermediateDirectories: true)
        } catch {
            throw PatchGuardError.io(path: resolved, reason: "cannot create run directory (\(error.localizedDescription))")
        }
        self.path = resolved
        let logPath = (resolved as NSString).appendingPathComponent("log.txt")
        if !FileManager.default.fileExists(atPath: logPath) {
            FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        logHandle = FileHandle(forWritingAtPath: logPath)
        logHandle?.seekToEndOfFile()
    }

    deinit { try? logHandle?.close() }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Prints a line to standard error and appends it (time-stamped) to `log.txt`.
    public func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
        let stamp = ISO8601DateFormatter().string(from: Date())
        logHandle?.write(Data("[\(stamp)] \(line)\n".utf8))
    }

    /// Writes the resolved config as `config.json`.
    public func writeConfig(_ config: JobConfig) throws {
        try AtomicFile.write(try config.resolvedJSON(), to: file("config.json"))
    }
}

/// Atomic writes: a temporary file in the same folder, flushed, then renamed over the target, so a crash never
/// leaves a half-written checkpoint or report.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: nil),
              let h = FileHandle(forWritingAtPath: tmp) else {
            throw PatchGuardError.io(path: path, reason: "cannot create temporary file \(tmp)")
        }
        do {
            try h.write(contentsOf: data)
            try h.synchronize()
            try h.close()
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw PatchGuardError.io(path: path, reason: "write failed (\(error.localizedDescription))")
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: tmp)
            throw PatchGuardError.io(path: path, reason: "rename failed (\(reason))")
        }
    }

    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }
}
