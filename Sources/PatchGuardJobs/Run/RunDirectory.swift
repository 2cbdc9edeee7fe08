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
        // log.txt only grows: opened for appending (O_APPEND, so each line lands at the end even with another
        // writer), never replaced through AtomicFile.
        let logPath = (resolved as NSString).appendingPathComponent("log.txt")
        let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode_t(0o644))
        logHandle = fd >= 0 ? FileHandle(fileDescriptor: fd, closeOnDealloc: true) : nil
    }

    deinit { try? logHandle?.close() }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Prints a line to standard error and appends it (time-stamped) to `log.txt`. `FileHandle` writes are
    /// unbuffered `write(2)` calls, so each line is in the file (the kernel's page cache) when this returns.
    public func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
        let stamp = ISO8601DateFormatter().string(from: Date())
        try? logHandle?.write(contentsOf: Data("[\(stamp)] \(line)\n".utf8))
    }

    /// Writes the resolved config as `config.json`.
    public func writeConfig(_ config: JobConfig) throws {
        try AtomicFile.write(try config.resolvedJSON(), to: file("config.json"))
    }
}
