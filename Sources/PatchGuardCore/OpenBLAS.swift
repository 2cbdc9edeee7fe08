import CBLAS
import Foundation

/// OpenBLAS set-up: the core-type fix and the thread count.
///
/// Debian's OpenBLAS 0.3.21 detects recent Xeons and EPYCs as "Prescott" and then runs sgemm with SSE3 kernels
/// (~56 GFLOPS instead of ~200 on 2 cores). The core type is chosen when the library is loaded, before `main`, so
/// the only fix is to set `OPENBLAS_CORETYPE` and re-execute the program. The choice comes from the CPU's own
/// feature flags (never a core the CPU lacks): AVX-512 F/BW/VL/DQ → SkylakeX, AVX2 + FMA → Haswell. A user's own
/// `OPENBLAS_CORETYPE` is always respected.
///
/// Threads: OpenBLAS's idle worker threads spin (`sched_yield`) for a long time between GEMMs. Our steps call many
/// small GEMMs with element-wise work in between, so on 2 cores the spinning workers steal the main thread's CPU:
/// a PGD-10 evaluation of the CPU config on tire spent 11 s of 54 s in the kernel with 43 k involuntary context
/// switches; with `OPENBLAS_THREAD_TIMEOUT=4` (workers sleep after 2⁴ × 1 k cycles) the same run took 34 s with
/// 1.9 s in the kernel and identical numbers. The variable is read when the library loads, so it is set by the
/// same re-exec as the core type, unless the user set it.
public enum OpenBLAS {
    /// The thread timeout we set when the user did not (log₂ of thousands of cycles a worker spins; OpenBLAS's
    /// minimum is 4).
    public static let threadTimeout = "4"

    /// The core OpenBLAS is running with (e.g. "SkylakeX", "Haswell", "Prescott").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// Cores that use no vector extension beyond SSE3/SSE4; any of these on an AVX2 machine is a misdetection.
    static let weakCores: Set<String> = ["prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai",
                                         "coppermine", "northwood", "banias", "unknown", "sandybridge", "barcelona",
                                         "opteron", "opteron_sse3", "bobcat"]

    /// The CPU's feature flags from /proc/cpuinfo (Linux); empty elsewhere.
    public static func cpuFlags(cpuinfo: String? = nil) -> Set<String> {
        Set((cpuinfoField("flags", cpuinfo: cpuinfo) ?? "").split(separator: " ").map(String.init))
    }

    /// The value after the colon of the first /proc/cpuinfo line that starts with `key` (e.g. "flags",
    /// "model name"), trimmed; nil when there is none (or no /proc/cpuinfo).
    public static func cpuinfoField(_ key: String, cpuinfo: String? = nil) -> String? {
        let text = cpuinfo ?? (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    /// The best core type the CPU supports, from its flags; nil when none is better than OpenBLAS's own choice.
    public static func bestCoreType(flags: Set<String>) -> String? {
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) { return "SkylakeX" }
        if ["avx2", "fma"].allSatisfy(flags.contains) { return "Haswell" }
        return nil
    }

    /// What the fix decided, for the log line.
    public enum Decision: Equatable, Sendable {
        case userSet(String)          // OPENBLAS_CORETYPE was set by the user (or by our re-exec)
        case detectedFine(String)     // OpenBLAS's own choice is good
        case reexec(from: String, to: String)
        case cannotFix(String)        // weak core but the CPU has no better one
    }

    public static func decide(environment: [String: String], detected: String, flags: Set<String>) -> Decision {
        if let set = environment["OPENBLAS_CORETYPE"], !set.isEmpty { return .userSet(set) }
        guard weakCores.contains(detected.lowercased()) else { return .detectedFine(detected) }
        guard let best = bestCoreType(flags: flags) else { return .cannotFix(detected) }
        return .reexec(from: detected, to: best)
    }

    /// The variables a re-exec must set before OpenBLAS loads: the core type when it was misdetected, the thread
    /// timeout when the user left it unset (or empty). Empty = run as is.
    public static func environmentFixes(environment env: [String: String], decision: Decision) -> [String: String] {
        var fixes: [String: String] = [:]
        if case let .reexec(_, to) = decision { fixes["OPENBLAS_CORETYPE"] = to }
        if (env["OPENBLAS_THREAD_TIMEOUT"] ?? "").isEmpty { fixes["OPENBLAS_THREAD_TIMEOUT"] = threadTimeout }
        return fixes
    }

    /// Call first thing in `main`. Re-executes the process with `OPENBLAS_CORETYPE` set when OpenBLAS misdetected
    /// the core (does not return then); otherwise sets the thread count and returns the line to log.
    public static func configureAtStartup() -> String {
        let env = ProcessInfo.processInfo.environment
        let detected = coreName
        let decision = decide(environment: env, detected: detected, flags: cpuFlags())
        let fixes = environmentFixes(environment: env, decision: decision)
        let needsCore = fixes["OPENBLAS_CORETYPE"]
        if !fixes.isEmpty, env["PATCHGUARD_BLAS_REEXEC"] == nil {
            for (key, value) in fixes { setenv(key, value, 1) }
            setenv("PATCHGUARD_BLAS_REEXEC", detected, 1)
            let args = CommandLine.arguments
            var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
            cargs.append(nil)
            execv("/proc/self/exe", &cargs)
            // execv only returns on failure: carry on with the slow core and say so.
            return "OpenBLAS core: \(detected) (re-exec with OPENBLAS_CORETYPE=\(needsCore ?? "-") / " +
                "OPENBLAS_THREAD_TIMEOUT failed: errno \(errno))"
        }
        setThreads(Parallel.threads)
        #if DEBUG
        verifySgemm()
        #endif
        let timeout = env["OPENBLAS_THREAD_TIMEOUT"].map { ", thread timeout \($0)" } ?? ""
        let threads = "\(threadCount) thread\(threadCount == 1 ? "" : "s")\(timeout)"
        if let was = env["PATCHGUARD_BLAS_REEXEC"], was.lowercased() != detected.lowercased() {
            return "OpenBLAS core: \(detected) (detected \(was); set OPENBLAS_CORETYPE from CPUID), \(threads)"
        }
        switch decision {
        case .userSet:
            var line = "OpenBLAS core: \(detected) (OPENBLAS_CORETYPE set by user), \(threads)"
            if let best = bestCoreType(flags: cpuFlags()), best.lowercased() != detected.lowercased(),
               best == "SkylakeX", detected.lowercased() == "haswell" {
                line += "; this CPU supports AVX-512: unset OPENBLAS_CORETYPE or set it to \(best) for faster sgemm"
            }
            return line
        case .detectedFine: return "OpenBLAS core: \(detected), \(threads)"
        case .cannotFix: return "OpenBLAS core: \(detected) (no better core type supported by this CPU), \(threads)"
        case .reexec: return "OpenBLAS core: \(detected), \(threads)"
        }
    }

    /// Debug-build check that sgemm agrees with the naive product (a wrong core type computes garbage).
    public static func verifySgemm() {
        var rng = SeededRNG(seed: 7)
        let m = 37, n = 29, k = 53
        let a = Tensor<Float>(shape: [m, k]), b = Tensor<Float>(shape: [k, n])
        rng.fillNormal(a.buffer, std: 1); rng.fillNormal(b.buffer, std: 1)
        let c1 = Tensor<Float>(shape: [m, n]), c2 = Tensor<Float>(shape: [m, n])
        matmul(c1.data, a.data, b.data, m: m, n: n, k: k)
        naiveMatmul(c2.data, a.data, b.data, m: m, n: n, k: k)
        for i in 0..<(m * n) where abs(c1[i] - c2[i]) > 1e-3 * (1 + abs(c2[i])) {
            preconditionFailure("OpenBLAS sgemm (core \(coreName)) disagrees with the naive product: \(c1[i]) vs \(c2[i])")
        }
    }
}
