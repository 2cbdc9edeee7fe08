/// Errors thrown by library code. Only the CLI turns them into messages and exit codes.
public enum PatchGuardError: Error, CustomStringConvertible, Equatable {
    /// A file could not be read, decoded or written.
    case io(path: String, reason: String)
    /// A job configuration is invalid (unknown key, wrong type, bad value).
    case config(String)
    /// A caller passed inconsistent arguments (shapes, sizes, names).
    case invalidArgument(String)
    /// A dataset does not follow the expected layout.
    case dataset(String)
    /// Training produced a non-finite value.
    case numeric(String)
    /// A feature that is not built yet.
    case notImplemented(String)

    public var description: String {
        switch self {
        case let .io(path, reason): return "\(path): \(reason)"
        case let .config(m), let .invalidArgument(m), let .dataset(m), let .numeric(m): return m
        case let .notImplemented(m): return "not built yet: \(m)"
        }
    }
}
