// libFuzzer harness for the job-config parser (PatchGuardJobs): the input as a config file (JSON text merged over
// the defaults, key-checked, decoded and validated) and, when it is one short line, as a `--set` assignment. Only
// PatchGuardError may come out; a crash, trap, hang or ASan report is a finding.
import Foundation
import PatchGuardCore
import PatchGuardJobs

@_cdecl("LLVMFuzzerTestOneInput")
public func configFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    do {
        let tree = try JobConfig.tree(json: bytes, source: "<fuzz>")
        let config = try JobConfig.decode(tree.merged, source: "<fuzz>")
        _ = try config.resolvedJSON()
    } catch is PatchGuardError {
    } catch {
        fatalError("untyped error \(error)")
    }
    if size < 4096, let line = String(data: bytes, encoding: .utf8), !line.contains("\n") {
        do { _ = try JobConfig.load(path: nil, overrides: [line]) } catch is PatchGuardError {} catch {
            fatalError("untyped error \(error) for --set \(line)")
        }
    }
    return 0
}
