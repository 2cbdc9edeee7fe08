import Foundation
import Testing
@testable import PatchGuardCore

@Suite("AtomicFile") struct AtomicFileTests {
    /// A fresh empty folder, removed by the caller.
    static func folder() throws -> String {
        let dir = NSTemporaryDirectory() + "atomic-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func contents(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    }

    /// `body` throws `.io` whose path is `path` and whose description names it.
    static func expectIOError(naming path: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected an error writing \(path)")
        } catch let PatchGuardError.io(errorPath, reason) {
            #expect(errorPath == path)
            #expect(PatchGuardError.io(path: errorPath, reason: reason).description.contains(path))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func roundTripsBytesDataTextAndChunks() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let p = dir + "/bytes.bin"
        try AtomicFile.write(bytes, to: p)
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: p))) == bytes)
        try AtomicFile.write(Data(bytes.prefix(10)), to: p)
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: p))) == Array(bytes.prefix(10)))
        try AtomicFile.write("héllo\n", to: dir + "/t.txt")
        #expect(try String(contentsOfFile: dir + "/t.txt", encoding: .utf8) == "héllo\n")
        try AtomicFile.write(to: dir + "/chunks.bin") { emit in
            for part in [bytes[0..<5], bytes[5..<5], bytes[5..<77_777], bytes[77_777...]] {
                try Array(part).withUnsafeBytes { try emit($0) }
            }
        }
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/chunks.bin"))) == bytes)
        try AtomicFile.write([UInt8](), to: dir + "/empty")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/empty")).isEmpty)
        #expect(try Self.contents(dir) == ["bytes.bin", "chunks.bin", "empty", "t.txt"])
    }

    @Test func overwriteLeavesNoTemporaryBehind() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/f.json"
        for i in 0..<5 { try AtomicFile.write("version \(i)", to: p) }
        #expect(try String(contentsOfFile: p, encoding: .utf8) == "version 4")
        #expect(try Self.contents(dir) == ["f.json"])
        let mode = try FileManager.default.attributesOfItem(atPath: p)[.posixPermissions] as? Int
        #expect(mode.map { $0 & 0o600 == 0o600 } == true)
    }

    @Test func missingFolderThrowsNamingThePathAndLeavesNothing() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let missing = dir + "/no/such/folder/x.bin"
        Self.expectIOError(naming: missing) { try AtomicFile.write([1, 2, 3], to: missing) }
        // A regular file where a folder should be (fails even for root, unlike permissions).
        try AtomicFile.write("plain", to: dir + "/file")
        let underFile = dir + "/file/x.bin"
        Self.expectIOError(naming: underFile) { try AtomicFile.write([1], to: underFile) }
        // The target is a folder: the rename fails and the temporary goes away.
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: false)
        Self.expectIOError(naming: dir + "/sub") { try AtomicFile.write([1], to: dir + "/sub") }
        #expect(try Self.contents(dir) == ["file", "sub"])
        #expect(try Self.contents(dir + "/sub").isEmpty)
    }

    @Test func readOnlyFolderThrowsNamingThePathAndLeavesNothing() throws {
        let dir = try Self.folder()
        defer {
            chmod(dir, 0o755)
            try? FileManager.default.removeItem(atPath: dir)
        }
        try AtomicFile.write("old", to: dir + "/keep.txt")
        #expect(chmod(dir, 0o555) == 0)
        // Root ignores folder permissions: the write then succeeds, and there is nothing to check.
        guard geteuid() != 0 else { return }
        Self.expectIOError(naming: dir + "/keep.txt") { try AtomicFile.write("new", to: dir + "/keep.txt") }
        #expect(try String(contentsOfFile: dir + "/keep.txt", encoding: .utf8) == "old")
        #expect(try Self.contents(dir) == ["keep.txt"])
    }

    @Test func anErrorFromTheProducerRemovesTheTemporary() throws {
        struct Stop: Error {}
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write("old", to: dir + "/f")
        #expect(throws: Stop.self) {
            try AtomicFile.write(to: dir + "/f") { emit in
                try [UInt8](repeating: 9, count: 1000).withUnsafeBytes { try emit($0) }
                throw Stop()
            }
        }
        #expect(try String(contentsOfFile: dir + "/f", encoding: .utf8) == "old")
        #expect(try Self.contents(dir) == ["f"])
    }
}
