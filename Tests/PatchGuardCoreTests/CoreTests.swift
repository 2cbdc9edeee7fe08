import Foundation
import Testing
@testable import PatchGuardCore

@Suite struct RNGTests {
    @Test func sameSeedSameStream() {
        var a = SeededRNG(seed: 42), b = SeededRNG(seed: 42), c = SeededRNG(seed: 43)
        let xa = (0..<8).map { _ in a.next() }, xb = (0..<8).map { _ in b.next() }, xc = (0..<8).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
        var s1 = SeededRNG(seed: 42, stream: 1), s2 = SeededRNG(seed: 42, stream: 2)
        #expect(s1.next() != s2.next())
    }

    @Test func uniformAndNormalMoments() {
        var rng = SeededRNG(seed: 3)
        let n = 200_000
        var su = 0.0, sn = 0.0, sn2 = 0.0
        for _ in 0..<n {
            let u = rng.uniform(); #expect(u >= 0 && u < 1)
            su += u
            let z = rng.normal(); sn += z; sn2 += z * z
        }
        #expect(abs(su / Double(n) - 0.5) < 0.005)
        #expect(abs(sn / Double(n)) < 0.01)
        #expect(abs(sn2 / Double(n) - 1) < 0.02)
    }

    @Test func truncatedNormalStaysInBounds() {
        var rng = SeededRNG(seed: 9)
        let t = Tensor<Float>(shape: [5000])
        rng.fillNormal(t.buffer, std: 0.02, truncate: true)
        #expect(t.array.allSatisfy { abs($0) <= 0.04 })
    }
}

@Suite struct ArenaTests {
    @Test func namedViewsAreDisjointAndAligned() {
        let arena = Arena<Float>(layout: [("a", [3, 5]), ("b", [7]), ("c", [2, 2, 2])])
        #expect(arena.entry("b").offset % 16 == 0 && arena.entry("c").offset % 16 == 0)
        arena["a"].buffer.update(repeating: 1)
        arena["b"].buffer.update(repeating: 2)
        #expect(arena["c"].buffer.allSatisfy { $0 == 0 })
        #expect(arena["a"].buffer.allSatisfy { $0 == 1 })
        arena.zero()
        #expect(arena.storage.array.allSatisfy { $0 == 0 })
        let grads = Arena<Double>(sameLayoutAs: arena)
        #expect(grads.entries.map(\.offset) == arena.entries.map(\.offset))
    }
}

@Suite struct ParallelTests {
    @Test func coversEveryIndexOnce() {
        let n = 1003
        let hits = Tensor<Float>(shape: [n])
        let p = hits.data
        parallelFor(n) { i in p[i] += 1 }
        #expect(hits.array.allSatisfy { $0 == 1 })
    }

    @Test func sharesAreContiguousNearlyEqualAndNeverEmpty() {
        #expect(Parallel.shares(5, parts: 3) == [0..<2, 2..<4, 4..<5])
        #expect(Parallel.shares(16, parts: 2) == [0..<8, 8..<16])
        #expect(Parallel.shares(2, parts: 4) == [0..<1, 1..<2])
        #expect(Parallel.shares(7, parts: 1) == [0..<7])
        #expect(Parallel.shares(7, parts: 0) == [0..<7])
        #expect(Parallel.shares(0, parts: 2).isEmpty)
    }

    /// Inside `runSerially` a `parallelFor` runs on the calling thread, and the mark is gone afterwards.
    @Test func parallelForRunsInlineInASerialRegion() {
        let n = 64
        let threads = UnsafeMutablePointer<pthread_t>.allocate(capacity: n)
        defer { threads.deallocate() }
        let me = pthread_self()
        #expect(!Parallel.isSerialThread)
        Parallel.runSerially {
            #expect(Parallel.isSerialThread)
            parallelFor(n) { i in threads[i] = pthread_self() }
        }
        #expect(!Parallel.isSerialThread)
        #expect((0..<n).allSatisfy { pthread_equal(threads[$0], me) != 0 })
    }
}

@Suite struct OpenBLASCoreTypeTests {
    let avx512: Set<String> = ["sse3", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
    let avx2: Set<String> = ["sse3", "avx", "avx2", "fma"]

    @Test func misdetectedCoreIsFixedFromCPUID() {
        #expect(OpenBLAS.decide(environment: [:], detected: "Prescott", flags: avx512) == .reexec(from: "Prescott", to: "SkylakeX"))
        #expect(OpenBLAS.decide(environment: [:], detected: "Prescott", flags: avx2) == .reexec(from: "Prescott", to: "Haswell"))
    }

    @Test func neverChoosesACoreTheCPULacks() {
        // An old CPU without AVX2: nothing better to choose, leave OpenBLAS alone.
        #expect(OpenBLAS.decide(environment: [:], detected: "Prescott", flags: ["sse3", "ssse3"]) == .cannotFix("Prescott"))
        #expect(OpenBLAS.bestCoreType(flags: ["avx512f", "avx2", "fma"]) == "Haswell") // AVX-512 F alone is not SkylakeX
    }

    @Test func userChoiceAndGoodDetectionAreRespected() {
        #expect(OpenBLAS.decide(environment: ["OPENBLAS_CORETYPE": "Haswell"], detected: "Haswell", flags: avx512) == .userSet("Haswell"))
        #expect(OpenBLAS.decide(environment: [:], detected: "Cooperlake", flags: avx512) == .detectedFine("Cooperlake"))
    }

    @Test func threadTimeoutIsSetUnlessTheUserDidAndTravelsWithTheCoreFix() {
        let fine = OpenBLAS.Decision.detectedFine("Zen")
        #expect(OpenBLAS.environmentFixes(environment: [:], decision: fine) == ["OPENBLAS_THREAD_TIMEOUT": "4"])
        #expect(OpenBLAS.environmentFixes(environment: ["OPENBLAS_THREAD_TIMEOUT": ""], decision: fine)
                == ["OPENBLAS_THREAD_TIMEOUT": "4"])
        #expect(OpenBLAS.environmentFixes(environment: ["OPENBLAS_THREAD_TIMEOUT": "10"], decision: fine).isEmpty)
        #expect(OpenBLAS.environmentFixes(environment: ["OPENBLAS_THREAD_TIMEOUT": "6"],
                                          decision: .reexec(from: "Prescott", to: "Haswell"))
                == ["OPENBLAS_CORETYPE": "Haswell"])
    }

    @Test func parsesCPUInfoFlags() {
        let info = "processor\t: 0\nflags\t\t: fpu sse3 avx2 fma avx512f\nbugs\t: none\n"
        #expect(OpenBLAS.cpuFlags(cpuinfo: info) == ["fpu", "sse3", "avx2", "fma", "avx512f"])
    }

    @Test func sgemmAgreesWithNaiveOnThisMachine() {
        OpenBLAS.verifySgemm() // traps on disagreement
        #expect(!OpenBLAS.coreName.isEmpty)
    }
}

/// The host allocator: small (heap) and large (mapped) buffers are zero-filled, 64-byte aligned, writable and freed;
/// a large buffer's pages join the resident set only when written.
@Suite struct HostAllocatorTests {
    static func residentMB() -> Double { ProcessMemory.megabytes("VmRSS") ?? -1 }

    @Test(arguments: [1, 100, HostAllocator.lazyThreshold / 4 - 1, HostAllocator.lazyThreshold / 4,
                      HostAllocator.lazyThreshold + 12345])
    func zeroedAlignedWritable(count: Int) {
        let a = HostAllocator.shared
        for _ in 0..<3 {  // reuse of freed memory must come back zeroed too
            let p = a.allocate(Float.self, count: count)
            #expect(Int(bitPattern: p) % 64 == 0)
            let b = UnsafeMutableBufferPointer(start: p, count: count)
            #expect(b.allSatisfy { $0 == 0 })
            b.update(repeating: 3)
            #expect(b[count - 1] == 3 && b[0] == 3)
            a.deallocate(p)
        }
    }

    @Test func largeBuffersAreResidentOnlyWhereWritten() throws {
        let before = Self.residentMB()
        try #require(before >= 0, "needs /proc/self/status")
        let count = 64 << 20  // 256 MiB of Float
        let p = HostAllocator.shared.allocate(Float.self, count: count)
        let untouched = Self.residentMB() - before
        UnsafeMutableBufferPointer(start: p, count: count / 4).update(repeating: 1)  // the first 64 MiB
        let quarter = Self.residentMB() - before
        HostAllocator.shared.deallocate(p)
        let freed = Self.residentMB() - before
        #expect(untouched < 16, "an unwritten 256 MiB buffer added \(untouched) MiB")
        #expect(quarter > 48 && quarter < 96, "writing 64 MiB added \(quarter) MiB")
        #expect(freed < 16, "freeing left \(freed) MiB resident")
    }
}
