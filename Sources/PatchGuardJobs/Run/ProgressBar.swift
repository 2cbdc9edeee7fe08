import Foundation
import PatchGuardCore
import PatchGuardImage
import PatchGuardMetrics
import PatchGuardNN
import PatchGuardData
import PatchGuardMethod

/// A one-line progress bar on standard error: `label [#####.....] 12/40  3.1 img/s  ETA 0:42  loss 0.512`.
/// Redraws at most 10 times a second; on a non-terminal (CI logs) it prints a line every 10%.
public final class ProgressBar {
    let label: String
    let total: Int
    let unit: String
    let start = Date()
    var lastDraw = Date.distantPast
    var lastPercentLogged = -1
    let interactive = isatty(STDERR_FILENO) != 0
    public private(set) var done = 0

    public init(_ label: String, total: Int, unit: String = "it") {
        self.label = label; self.total = max(total, 1); self.unit = unit
    }

    /// Advances by `n` items; `info` is appended to the line (e.g. the current loss).
    public func advance(_ n: Int = 1, info: String = "") {
        done += n
        let now = Date()
        let finished = done >= total
        if interactive {
            guard finished || now.timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = now
            write("\r" + line(info: info) + (finished ? "\n" : ""))
        } else {
            let percent = done * 100 / total
            guard finished || percent / 10 > lastPercentLogged / 10 else { return }
            lastPercentLogged = percent
            write(line(info: info) + "\n")
        }
    }

    public var elapsed: TimeInterval { Date().timeIntervalSince(start) }

    func line(info: String) -> String {
        let width = 24
        let filled = min(width, done * width / total)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let rate = Double(done) / max(elapsed, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        var s = "\(label) [\(bar)] \(done)/\(total)  \(String(format: "%.2f", rate)) \(unit)/s  "
        s += done >= total ? "took \(Self.clock(elapsed))" : "ETA \(Self.clock(eta))"
        if !info.isEmpty { s += "  " + info }
        return s + "\u{1B}[K"
    }

    public static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                         : String(format: "%d:%02d", s / 60, s % 60)
    }

    func write(_ s: String) {
        FileHandle.standardError.write(Data((interactive ? s : s.replacingOccurrences(of: "\u{1B}[K", with: "")).utf8))
    }
}
