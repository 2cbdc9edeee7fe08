import Foundation

/// Replacing a file atomically: the one way every writer of whole files (checkpoints, safetensors, PNG/JPEG,
/// reports, configs, dataset markers) puts bytes on disk.
///
/// 1. a temporary file is created beside the target (`DIR/.NAME.tmp-PID-RANDOM`, `O_CREAT | O_EXCL`, mode 0644),
///    so it is on the same file system and never collides with another writer;
/// 2. every byte is written (`write(2)` retried on `EINTR` and on short writes);
/// 3. the file is `fsync`ed and closed;
/// 4. it is `rename`d over the target (atomic on POSIX: a reader sees the old file or the new one, never a part);
/// 5. the folder is `fsync`ed so the rename itself survives a power loss (best effort: a file system that cannot
///    sync a folder does not fail the write).
///
/// On any failure before the rename the temporary file is removed and ``PatchGuardError/io(path:reason:)`` names
/// the *target* path. The folder must exist: a missing folder is an error, not created here.
///
/// Files that grow line by line (`log.txt`, `train_log.jsonl` appends) are not replacements and do not go through
/// here.
public enum AtomicFile {
    /// Writes `bytes` to `path` atomically (see the type's documentation).
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        try write(to: path) { emit in try emit(bytes) }
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        try bytes.withUnsafeBytes { try write($0, to: path) }
    }

    public static func write(_ data: Data, to path: String) throws {
        try data.withUnsafeBytes { try write($0, to: path) }
    }

    /// UTF-8 text.
    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }

    /// Writes the bytes `body` emits, in order, to `path` atomically: `body` calls `emit` once per chunk (a
    /// header, then each tensor's data…), so a large file never needs to be concatenated in memory first.
    /// An error thrown by `body` is rethrown as is, after the temporary file is removed.
    public static func write(to path: String,
                             _ body: (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        func failure(_ what: String, _ code: Int32) -> PatchGuardError {
            .io(path: path, reason: "\(what): " + describe(code))
        }

        // 1. A fresh temporary file beside the target.
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<8 {
            temporary = directory + "/." + name + ".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(0o644))
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw failure("cannot create file", errno) }
        var isOpen = true
        var renamed = false
        defer {
            if isOpen { close(fd) }
            if !renamed { unlink(temporary) }
        }

        // 2. Every byte, EINTR-safe.
        var total = 0
        try body { chunk in
            guard let base = chunk.baseAddress else { return }
            var written = 0
            while written < chunk.count {
                let n = Foundation.write(fd, base + written, chunk.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw failure("cannot write file (after \(total + written) bytes)", errno)
                }
                if n == 0 { throw failure("cannot write file (after \(total + written) bytes)", EIO) }
                written += n
            }
            total += written
        }

        // 3. Durable contents, then 4. the atomic replacement.
        guard fsync(fd) == 0 else { throw failure("cannot sync file", errno) }
        isOpen = false
        guard close(fd) == 0 else { throw failure("cannot close file", errno) }
        guard rename(temporary, path) == 0 else { throw failure("cannot replace file", errno) }
        renamed = true

        // 5. Durable rename (best effort).
        let dirFD = Foundation.open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        if dirFD >= 0 { _ = fsync(dirFD); close(dirFD) }
    }

    /// `errno` in words, with the common cases phrased for a path that is being written.
    static func describe(_ code: Int32) -> String {
        switch code {
        case ENOENT: return "directory does not exist"
        case EACCES: return "permission denied"
        case EISDIR: return "is a directory"
        case EROFS: return "read-only file system"
        case ENOSPC: return "no space left on device"
        default: return String(cString: strerror(code))
        }
    }
}
