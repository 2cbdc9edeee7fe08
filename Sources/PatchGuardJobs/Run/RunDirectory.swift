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
        Self.current = self
        for (name, pid) in staleTemporaryFiles() {
            if unlink(file(name)) == 0 { log("removed stale temporary file \(file(name)) (left by process \(pid))") }
        }
    }

    /// ``AtomicFile``'s temporary files (`.NAME.tmp-PID-RANDOM`) in this folder whose writing process no longer
    /// exists: what a killed run leaves behind. A live writer's file (its PID answers `kill(pid, 0)`) is kept.
    func staleTemporaryFiles() -> [(name: String, pid: Int32)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.sorted().compactMap { name in
            guard name.hasPrefix("."), let range = name.range(of: ".tmp-", options: .backwards) else { return nil }
            let parts = name[range.upperBound...].split(separator: "-")
            guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, UInt64(parts[1]) != nil else { return nil }
            if kill(pid, 0) == 0 || errno == EPERM { return nil }
            return (name, pid)
        }
    }

    deinit { try? logHandle?.close() }

    /// The run directory the process opened last (the CLI runs one job per process): where a fatal error is logged.
    nonisolated(unsafe) public static var current: RunDirectory?

    /// A fatal error: `error: MESSAGE` on standard error and, once the process has a run directory, in its
    /// `log.txt` too (so the log of a failed run says why it failed).
    public static func reportFatal(_ message: String) {
        if let run = current { run.log("error: \(message)") } else {
            FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        }
    }

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
