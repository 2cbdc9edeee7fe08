#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// This process's memory as Linux reports it in `/proc/self/status`, for benchmarks and memory tests.
public enum ProcessMemory {
    /// A `/proc/self/status` size field (`"VmRSS"` resident now, `"VmHWM"` the peak), in MiB; nil where there is
    /// no such file or field.
    public static func megabytes(_ field: String) -> Double? {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix(field + ":") {
            return (line.split(separator: " ").compactMap { Double($0) }.first ?? 0) / 1024
        }
        return nil
    }

    /// The peak resident set (VmHWM) in MiB, 0 where unknown.
    public static var peakMB: Double { megabytes("VmHWM") ?? 0 }

    /// Resets the peak (VmHWM) to the current resident set (Linux ≥ 4.0: `/proc/self/clear_refs` ← 5), so the
    /// next peak is the peak since now. Silent where unsupported.
    public static func resetPeak() {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return }
        _ = write(fd, "5", 1)
        close(fd)
    }
}
