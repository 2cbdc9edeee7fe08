import Foundation

/// Reading a whole input file (config, weights) with the limits every input file has (README, "Limits"):
///
/// - only regular files: a FIFO, a device (e.g. a symlink to `/dev/zero`) or a socket is refused before a byte is
///   read, and opening never blocks (`O_NONBLOCK`, so a FIFO without a writer does not hang the run);
/// - at most `maxBytes` bytes: a larger file is refused from its size, before anything is allocated.
///
/// Every failure throws ``PatchGuardError/io(path:reason:)`` naming the file and the reason.
public enum RegularFile {
    /// The bytes of the regular file at `path`, at most `maxBytes` of them. `what` names the file's role in
    /// errors ("config file", "safetensors file").
    public static func read(path: String, maxBytes: Int, what: String = "file") throws -> [UInt8] {
        func fail(_ reason: String) -> PatchGuardError { .io(path: path, reason: reason) }
        func failErrno(_ action: String) -> PatchGuardError {
            let code = errno
            switch code {
            case ENOENT: return fail("\(what) not found")
            case EACCES: return fail("cannot \(action) \(what): permission denied")
            default: return fail("cannot \(action) \(what): \(String(cString: strerror(code)))")
            }
        }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw failErrno("open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failErrno("stat") }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let name: String
            switch kind {
            case S_IFDIR: name = "a directory"
            case S_IFIFO: name = "a FIFO"
            case S_IFCHR: name = "a character device"
            case S_IFBLK: name = "a block device"
            case S_IFSOCK: name = "a socket"
            default: name = "not a file"
            }
            throw fail("not a regular file (\(name)); \(what)s are read from regular files only")
        }
        let size = Int(st.st_size)
        guard size <= maxBytes else {
            throw fail("\(what) is \(size) bytes, over the limit of \(byteCount(maxBytes))")
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        // Read what fstat promised; a file that changed size meanwhile is an error, not a silent truncation.
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while done < size {
                let n = Foundation.read(fd, buffer.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw failErrno("read") }
                guard n > 0 else { throw fail("\(what) shrank while being read (\(done) of \(size) bytes)") }
                done += n
            }
        }
        var extra: UInt8 = 0
        guard Foundation.read(fd, &extra, 1) == 0 else { throw fail("\(what) grew while being read") }
        return bytes
    }

    /// `1 MiB`, `256 MiB`, `4 GiB`, or bytes below 1 KiB.
    static func byteCount(_ n: Int) -> String {
        if n >= 1 << 30 && n % (1 << 30) == 0 { return "\(n >> 30) GiB" }
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
        return "\(n) bytes"
    }
}
