// swift-tools-version: 6.1
import PackageDescription

// The channel benchmark's Swift side: one executable, `ClusterBench`, that measures
// swift-cluster the same way channel-baselines/ measures Node and the C floor.
// A separate package so the root package stays benchmark-free; it depends on the
// root by path and uses only the `Cluster` product (no NIO).
//
//   swift build -c release --package-path Benchmarks --scratch-path Benchmarks/.build
//   ./channel.sh

// SwiftPM names a path dependency after its directory (the checkout's name, such as
// "swift-cluster" or "main"), so the product reference is computed rather than spelled.
let root = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "swift-cluster").lowercased()

let package = Package(
    name: "swift-cluster-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "ClusterBench",
            dependencies: [
                .product(name: "Cluster", package: root),
            ],
            swiftSettings: [.swiftLanguageMode(.v6), .enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
    ]
)
