// swift-tools-version: 6.2
import PackageDescription

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "Sluice", targets: ["Sluice"]),
        .library(name: "SluiceCLI", targets: ["SluiceCLI"]),
        .library(name: "SluiceEngine", targets: ["SluiceEngine"]),
        .library(name: "SluiceCore", targets: ["SluiceCore"]),
        .library(name: "SluiceTesting", targets: ["SluiceTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .target(name: "SluiceCore", swiftSettings: upcoming),
        .target(name: "SluiceDefinition",
                dependencies: ["SluiceCore", .product(name: "Yams", package: "Yams")],
                swiftSettings: upcoming),
        .target(name: "SluiceStore", dependencies: ["SluiceCore"], swiftSettings: upcoming),
        .target(name: "SluiceStoreSQLite",
                dependencies: ["SluiceStore", "SluiceCore", .product(name: "GRDB", package: "GRDB.swift")],
                swiftSettings: upcoming),
        .target(name: "SluiceSupervisor",
                dependencies: ["SluiceCore", .product(name: "Subprocess", package: "swift-subprocess")],
                swiftSettings: upcoming),
        .target(name: "SluiceEngine",
                dependencies: ["SluiceCore", "SluiceStore", "SluiceSupervisor",
                               .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: upcoming),
        .target(name: "Sluice", dependencies: ["SluiceCore", "SluiceStore", "SluiceEngine",
                                             .product(name: "Logging", package: "swift-log")], swiftSettings: upcoming),
        .target(name: "SluiceCLI",
                dependencies: ["Sluice", "SluiceCore", "SluiceDefinition", "SluiceStore", "SluiceStoreSQLite",
                               "SluiceEngine", "SluiceSupervisor",
                               .product(name: "ArgumentParser", package: "swift-argument-parser"),
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: upcoming),
        .target(name: "SluiceTesting", dependencies: ["SluiceCore"], swiftSettings: upcoming),
        .executableTarget(name: "sluice", dependencies: ["SluiceCLI"], swiftSettings: upcoming),
        .executableTarget(name: "sluice-demo", dependencies: ["Sluice", "SluiceCLI"], swiftSettings: upcoming),
        .testTarget(name: "SluiceTests",
                    dependencies: ["Sluice", "SluiceCore", "SluiceDefinition", "SluiceStore", "SluiceStoreSQLite",
                                   "SluiceSupervisor", "SluiceEngine", "SluiceCLI", "SluiceTesting"],
                    resources: [.copy("Fixtures")],
                    swiftSettings: upcoming),
    ]
)
