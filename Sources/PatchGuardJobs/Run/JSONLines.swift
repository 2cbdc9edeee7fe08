import Foundation
import PatchGuardCore

/// A JSON-lines file (`train_log.jsonl`): one record per line, sorted keys, written atomically as a whole.
enum JSONLines {
    static func write<Record: Encodable>(_ records: [Record], to path: String) throws {
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
        let lines = try records.map { String(decoding: try e.encode($0), as: UTF8.self) }
        try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: path)
    }

    /// The records of `path`; none when the file does not exist or cannot be read.
    static func read<Record: Decodable>(_ type: Record.Type, from path: String) throws -> [Record] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Record.self, from: Data($0.utf8)) }
    }
}
