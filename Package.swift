// swift-tools-version:6.0
import PackageDescription

// Modules and their arrows (DESIGN.md §3; a module never imports one above it, no cycles):
//
//   CBLAS, CImageCodecs          system-library shims
//   CVectorMath                  C: softmax / GELU / exp, AVX2 + FMA dispatched at run time
//   CGemmBF16                    C: bf16 GEMM (AVX512_BF16), for model.precision "bf16"
//   PatchGuardCore               ← CBLAS, CGemmBF16: Tensor, Arena, RNG, parallelFor, errors, atomic files, safetensors, GEMM
//   PatchGuardImage              ← Core, CImageCodecs: image type, I/O, resize, filters, masks, components, colour maps
//   PatchGuardKernels            ← Core, CVectorMath: the Kernels protocol (every forward/backward pair, losses, AdamW update,
//                                  buffer utilities); CPU (OpenBLAS) and plain reference backends
//   PatchGuardMetrics            ← Core: AUROC, ROC, AUPRO, F1
//   PatchGuardNN                 ← Core, Kernels: ViT, attention discriminator, AdamW state (math via Kernels)
//   PatchGuardData               ← Core, Image: MVTec-layout scanning, loading, batching, generated data
//   PatchGuardMethod             ← Core, Image, NN, Data: PatchGuard model + checkpoint, pseudo-anomaly synthesis,
//                                  foreground masks (border, Grad-CAM), scoring, the detector protocol, PGD
//   PatchGuardJobs (product PatchGuard) ← all of the above: typed job config, run directories, training and
//                                  evaluation jobs, reports, heat maps, benchmarks
//   patchguard                   ← Jobs (+ ArgumentParser): the CLI, one thin file per command
// -Ounchecked (no overflow or bounds traps) only for the numeric kernels, where `make bench` shows it matters
// (README, "Performance notes"). Everything that reads input — codecs, parsers, configs, data loading, the CLI —
// builds with checks on (-O), so a missed check on bad input traps instead of corrupting memory.
let numeric: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]
let checked: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]

let package = Package(
    name: "PatchGuard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "patchguard", targets: ["patchguard"]),
        .library(name: "PatchGuard", targets: ["PatchGuardJobs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CImageCodecs", path: "Sources/CImageCodecs",
                cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]),
        // Softmax rows, GELU and exp with an AVX2 + FMA path chosen at run time (the Swift code is built for the
        // x86-64 baseline); a scalar path with the same formulas elsewhere.
        .target(name: "CVectorMath", path: "Sources/CVectorMath", cSettings: [.unsafeFlags(["-O2"])]),
        // bf16 GEMM (AVX512_BF16 `vdpbf16ps`, fp32 accumulation) for `model.precision` "bf16"; functions carry their
        // own target attributes, so the library loads on any x86-64 CPU and runs only where the CPU has the instruction.
        .target(name: "CGemmBF16", path: "Sources/CGemmBF16", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "PatchGuardCore",
                dependencies: ["CBLAS", "CGemmBF16", .product(name: "Numerics", package: "swift-numerics")],
                swiftSettings: checked),
        .target(name: "PatchGuardImage", dependencies: ["PatchGuardCore", "CImageCodecs"], swiftSettings: checked),
        .target(name: "PatchGuardMetrics", dependencies: ["PatchGuardCore"], swiftSettings: checked),
        // The forward/backward pairs behind one protocol (`Kernels`): CPU (OpenBLAS) and plain reference backends.
        .target(name: "PatchGuardKernels", dependencies: ["PatchGuardCore", "CVectorMath"], swiftSettings: numeric),
        .target(name: "PatchGuardNN", dependencies: ["PatchGuardCore", "PatchGuardKernels"], swiftSettings: numeric),
        .target(name: "PatchGuardData", dependencies: ["PatchGuardCore", "PatchGuardImage"], swiftSettings: checked),
        .target(name: "PatchGuardMethod",
                dependencies: ["PatchGuardCore", "PatchGuardImage", "PatchGuardNN", "PatchGuardData"],
                swiftSettings: checked),
        .target(name: "PatchGuardJobs",
                dependencies: ["PatchGuardCore", "PatchGuardImage", "PatchGuardMetrics", "PatchGuardNN",
                               "PatchGuardData", "PatchGuardMethod"],
                swiftSettings: checked),
        .executableTarget(name: "patchguard",
                          dependencies: ["PatchGuardJobs", "PatchGuardMethod", "PatchGuardData", "PatchGuardImage",
                                         "PatchGuardNN", "PatchGuardCore",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: checked),
        .testTarget(name: "PatchGuardCoreTests", dependencies: ["PatchGuardCore", "CGemmBF16"]),
        // Central-difference gradient checks shared by the NN and method test targets.
        .target(name: "GradCheckSupport", dependencies: ["PatchGuardCore"], path: "Tests/GradCheckSupport"),
        .testTarget(name: "PatchGuardKernelsTests", dependencies: ["PatchGuardKernels", "GradCheckSupport", "CVectorMath"]),
        .testTarget(name: "PatchGuardNNTests", dependencies: ["PatchGuardNN", "GradCheckSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "PatchGuardImageTests", dependencies: ["PatchGuardImage"]),
        .testTarget(name: "PatchGuardDataTests", dependencies: ["PatchGuardData", "PatchGuardImage"]),
        .testTarget(name: "PatchGuardTests",
                    dependencies: ["PatchGuardJobs", "PatchGuardMethod", "PatchGuardMetrics", "PatchGuardImage",
                                   "PatchGuardData", "PatchGuardNN", "PatchGuardKernels", "GradCheckSupport"]),
    ],
    // Swift 5 language mode: the numeric kernels share raw buffers across `parallelFor` workers by design
    // (disjoint writes), which Swift 6's strict sendability checking cannot express without noise.
    swiftLanguageModes: [.v5]
)
