// libFuzzer harness for the safetensors parser (PatchGuardCore): any bytes through SafeTensorsFile.parse, then every
// tensor read as floats. Only PatchGuardError may come out; a crash, trap or ASan report is a finding.
import Foundation
import PatchGuardCore

@_cdecl("LLVMFuzzerTestOneInput")
public func safeTensorsFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        let file = try SafeTensorsFile.parse(bytes: bytes, name: "<fuzz>")
        for name in file.names {
            guard let info = file.info(name) else { fatalError("listed tensor \(name) has no info") }
            if let values = try? file.floats(name), values.count != info.shape.reduce(1, *) {
                fatalError("tensor \(name): \(values.count) values for shape \(info.shape)")
            }
            _ = try? file.rawBytes(name)
        }
    } catch is PatchGuardError {
    } catch {
        fatalError("untyped error \(error)")
    }
    return 0
}
