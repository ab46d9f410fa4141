// swift-tools-version: 6.1
import PackageDescription

// ClusterVapor: a Vapor application served by cluster workers. A package of its own, so
// the root package's users never resolve Vapor; it depends on the root by path.
//
//   swift build --package-path Integrations/ClusterVapor
//   swift test --package-path Integrations/ClusterVapor

// SwiftPM names a path dependency after its directory (the checkout's name, such as
// "swift-cluster" or "main"), so the product reference is computed rather than spelled.
let root = String(Context.packageDirectory.split(separator: "/").dropLast(2).last ?? "swift-cluster").lowercased()

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "swift-cluster-vapor",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ClusterVapor", targets: ["ClusterVapor"]),
        .executable(name: "vapor-express", targets: ["VaporExpress"]),
    ],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        // Vapor's responder on the connections a worker takes from the primary's listeners.
        .target(
            name: "ClusterVapor",
            dependencies: [
                .product(name: "Cluster", package: root),
                .product(name: "ClusterNIO", package: root),
                .product(name: "Vapor", package: "vapor"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Node's Express cluster example (the root's `express`) as a clustered Vapor app.
        .executableTarget(
            name: "VaporExpress",
            dependencies: [
                "ClusterVapor",
                .product(name: "Cluster", package: root),
                .product(name: "ClusterAdmin", package: root),
                .product(name: "Vapor", package: "vapor"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Real processes: the example as a primary and its workers.
        .testTarget(
            name: "ClusterVaporTests",
            dependencies: ["VaporExpress"],
            swiftSettings: swiftSettings
        ),
    ]
)
