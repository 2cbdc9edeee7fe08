// swift-tools-version:6.0
import PackageDescription

// Layers (DESIGN.md §3): CBLAS/CImageCodecs → PatchGuardCore → PatchGuardKernels → PatchGuardNN / PatchGuardData → PatchGuard → patchguard.
// A layer never imports one above it.
let optimized: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "PatchGuard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "patchguard", targets: ["patchguard"]),
        .library(name: "PatchGuard", targets: ["PatchGuard"]),
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
        .target(name: "PatchGuardCore",
                dependencies: ["CBLAS", .product(name: "Numerics", package: "swift-numerics")],
                swiftSettings: optimized),
        // The forward/backward pairs behind one protocol (`Kernels`): CPU (OpenBLAS) and plain reference backends.
        .target(name: "PatchGuardKernels", dependencies: ["PatchGuardCore"], swiftSettings: optimized),
        .target(name: "PatchGuardNN", dependencies: ["PatchGuardCore", "PatchGuardKernels"], swiftSettings: optimized),
        .target(name: "PatchGuardData", dependencies: ["PatchGuardCore", "CImageCodecs"], swiftSettings: optimized),
        .target(name: "PatchGuard", dependencies: ["PatchGuardCore", "PatchGuardNN", "PatchGuardData"],
                swiftSettings: optimized),
        .executableTarget(name: "patchguard",
                          dependencies: ["PatchGuard", "PatchGuardData", "PatchGuardNN", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: optimized),
        .testTarget(name: "PatchGuardCoreTests", dependencies: ["PatchGuardCore"]),
        // Central-difference gradient checks shared by the NN and method test targets.
        .target(name: "GradCheckSupport", dependencies: ["PatchGuardCore"], path: "Tests/GradCheckSupport"),
        .testTarget(name: "PatchGuardKernelsTests", dependencies: ["PatchGuardKernels", "GradCheckSupport"]),
        .testTarget(name: "PatchGuardNNTests", dependencies: ["PatchGuardNN", "GradCheckSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "PatchGuardDataTests", dependencies: ["PatchGuardData"]),
        .testTarget(name: "PatchGuardTests", dependencies: ["PatchGuard", "GradCheckSupport"]),
    ],
    // Swift 5 language mode: the numeric kernels share raw buffers across `parallelFor` workers by design
    // (disjoint writes), which Swift 6's strict sendability checking cannot express without noise.
    swiftLanguageModes: [.v5]
)
