import Foundation
import Testing
@testable import PatchGuardCore

#if canImport(Glibc)
import Glibc
#endif

/// Input files (configs, weights) are regular files of bounded size; FIFOs and devices are refused without blocking.
@Suite struct RegularFileTests {
    static func folder() throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("pg-regular-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func reason(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch let PatchGuardError.io(_, reason) { return reason } catch { return "\(error)" }
    }

    @Test func readsARegularFile() throws {
        let path = try Self.folder() + "/a.json"
        try Data("{}".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try RegularFile.read(path: path, maxBytes: 10) == Array("{}".utf8))
    }

    @Test func refusesFIFODeviceAndOversizedFiles() throws {
        let dir = try Self.folder()
        #expect(mkfifo(dir + "/fifo", 0o644) == 0)
        #expect(symlink("/dev/zero", dir + "/zero") == 0)
        try Data(repeating: 32, count: 11).write(to: URL(fileURLWithPath: dir + "/big"))
        let start = Date()
        #expect(reason { _ = try RegularFile.read(path: dir + "/fifo", maxBytes: 10, what: "config file") }
            .contains("not a regular file (a FIFO)"))
        #expect(Date().timeIntervalSince(start) < 1)
        #expect(reason { _ = try RegularFile.read(path: dir + "/zero", maxBytes: 10) }.contains("character device"))
        #expect(reason { _ = try RegularFile.read(path: dir + "/big", maxBytes: 10, what: "config file") }
            == "config file is 11 bytes, over the limit of 10 bytes")
        #expect(reason { _ = try RegularFile.read(path: dir + "/missing", maxBytes: 10, what: "config file") }
            == "config file not found")
    }

    @Test func safetensorsFromAFIFOIsRefusedWithoutBlocking() throws {
        let path = try Self.folder() + "/weights.safetensors"
        #expect(mkfifo(path, 0o644) == 0)
        #expect(reason { _ = try SafeTensorsFile.load(path: path) }.contains("not a regular file"))
    }

    @Test func atomicWriteFailureSaysWhy() throws {
        // A regular file where the folder should be (root ignores permissions, so not a read-only folder).
        let dir = try Self.folder()
        try Data().write(to: URL(fileURLWithPath: dir + "/notadir"))
        let message = reason { try AtomicFile.write("x", to: dir + "/notadir/config.json") }
        #expect(message.hasPrefix("cannot create file: "), "\(message)")
        #expect(message.contains("Not a directory"), "\(message)")
    }
}
