// swift-tools-version: 6.1
import PackageDescription

// One set of settings for every target: Swift 6 language mode (strict concurrency)
// and no warnings tolerated in CI.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "swift-cluster",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Cluster", targets: ["Cluster"]),
        .library(name: "ClusterNIO", targets: ["ClusterNIO"]),
        .library(name: "ClusterHummingbird", targets: ["ClusterHummingbird"]),
        .library(name: "ClusterAdmin", targets: ["ClusterAdmin"]),
        .executable(name: "hello", targets: ["hello"]),
        .executable(name: "messages", targets: ["messages"]),
        .executable(name: "express", targets: ["express"]),
        .executable(name: "hello-hummingbird", targets: ["hello-hummingbird"]),
        .executable(name: "autoscale", targets: ["autoscale"]),
        .executable(name: "cluster", targets: ["ClusterCommand"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // `swift package generate-documentation`: the DocC catalogs, built in CI.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.0"),
    ],
    targets: [
        // C only here: the few things Swift cannot import from Glibc.
        .target(name: "CClusterShims"),
        // The message codec (JSON), behind Cluster's MessageCodec: no dependency of its own.
        .target(name: "ClusterJSON", swiftSettings: swiftSettings),
        .target(
            name: "Cluster",
            dependencies: [
                "CClusterShims",
                "ClusterJSON",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            // Async functions run on their caller's executor: a channel call made on the
            // I/O thread stays there, with no executor switch per message.
            swiftSettings: swiftSettings + [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .target(
            name: "ClusterNIO",
            dependencies: [
                "Cluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Hummingbird's router and HTTP/1.1 channel on the worker's connections, with drain.
        .target(
            name: "ClusterHummingbird",
            dependencies: [
                "Cluster",
                "ClusterNIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The primary's admin listener: /metrics (Prometheus), /healthz, /readyz.
        .target(
            name: "ClusterAdmin",
            dependencies: [
                "Cluster",
                "ClusterNIO",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // `cluster`: any server program as a supervised cluster, with a control socket.
        .executableTarget(
            name: "ClusterCommand",
            dependencies: [
                "Cluster",
                "CClusterShims",
                "ClusterAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "hello",
            dependencies: ["Cluster", "ClusterNIO", "ClusterAdmin"],
            path: "Sources/Examples/hello",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "autoscale",
            dependencies: ["Cluster", "ClusterNIO", "ClusterAdmin"],
            path: "Sources/Examples/autoscale",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "messages",
            dependencies: ["Cluster", "ClusterNIO", "ClusterAdmin"],
            path: "Sources/Examples/messages",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "express",
            dependencies: [
                "Cluster",
                "ClusterAdmin",
                "ClusterHummingbird",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Examples/express",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "hello-hummingbird",
            dependencies: [
                "Cluster",
                "ClusterHummingbird",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/Examples/hello-hummingbird",
            swiftSettings: swiftSettings
        ),
        // A program the integration tests spawn as a primary and its workers.
        .executableTarget(
            name: "ClusterFixture",
            dependencies: [
                "Cluster", "ClusterNIO", "ClusterAdmin",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: ["Cluster", "ClusterJSON"],
            exclude: ["Traces"], // load samples recorded by Benchmarks/autoscale.sh, read by path
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterNIOTests",
            dependencies: [
                "ClusterNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterIntegrationTests",
            dependencies: ["Cluster", "ClusterFixture", "hello", "messages", "express", "autoscale", "ClusterCommand",
                           .product(name: "Yams", package: "Yams")], // reads the Kubernetes manifests
            exclude: ["Programs"], // servers in Python and Node that the tests run as workers
            swiftSettings: swiftSettings
        ),
    ]
)
