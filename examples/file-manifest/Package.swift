// swift-tools-version: 6.2
import PackageDescription

// An example package that depends on Sluice: a pipeline written in Swift, built into its own
// executable together with the complete `sluice` command line.
let package = Package(
    name: "file-manifest",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Sluice itself, from this repository (an app would use `.package(url: ..., from: ...)`).
        .package(name: "sluice", path: "../.."),
        // SHA-256 on Linux and macOS.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .executableTarget(
            name: "file-manifest",
            dependencies: [
                .product(name: "Sluice", package: "sluice"),
                .product(name: "SluiceCLI", package: "sluice"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("MemberImportVisibility"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
