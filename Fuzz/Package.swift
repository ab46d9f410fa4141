// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for the parsers that read untrusted bytes. Built apart from the
// library (its own package) with `-sanitize=fuzzer`; see README.md and run.sh.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "swift-cluster-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-cluster", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        // libFuzzer's driver, declared for Swift.
        .target(name: "CFuzzerDriver"),
        // The two verdicts, shared with the unit tests: a link to
        // Tests/ClusterNIOTests/Support.
        .target(
            name: "HTTPDifferential",
            dependencies: [
                .product(name: "ClusterNIO", package: "swift-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The lean HTTP path's verdict equals SwiftNIO's (llhttp) on arbitrary bytes.
        .executableTarget(
            name: "FuzzHTTP",
            dependencies: ["CFuzzerDriver", "HTTPDifferential", .product(name: "ClusterNIO", package: "swift-cluster")],
            swiftSettings: swiftSettings
        ),
        // The channel's frame decoder on arbitrary bytes.
        .executableTarget(
            name: "FuzzFrames",
            dependencies: ["CFuzzerDriver", .product(name: "Cluster", package: "swift-cluster")],
            swiftSettings: swiftSettings
        ),
        // The channel's JSON decoder on arbitrary bytes, into a few Codable shapes.
        .executableTarget(
            name: "FuzzJSON",
            dependencies: ["CFuzzerDriver", .product(name: "Cluster", package: "swift-cluster")],
            swiftSettings: swiftSettings
        ),
    ]
)
