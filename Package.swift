// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "wwwserve",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "wwwserve", targets: ["wwwserve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.60.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.3.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.0"),
    ],
    targets: [
        // Pure protocol core: no I/O, no clock, no unseeded randomness, no dependencies.
        .target(name: "WWWCore"),
        // OpenAI wire types, validation, error shapes and SSE coding (Foundation only).
        .target(name: "WWWAPI", dependencies: ["WWWCore"]),
        // swift-crypto implementations of the core's crypto protocols, key files, signed envelopes.
        .target(name: "WWWCrypto", dependencies: [
            "WWWCore",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // SQLite persistence of ledger events (GRDB).
        .target(name: "WWWStore", dependencies: [
            "WWWCore",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        // Inference engine adapters: OpenAI-compatible upstreams and the managed llama.cpp.
        .target(name: "WWWBackends", dependencies: [
            "WWWCore", "WWWAPI",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The node shell: HTTP server, peer client, services, config, metrics.
        .target(name: "WWWNode", dependencies: [
            "WWWCore", "WWWAPI", "WWWBackends", "WWWStore", "WWWCrypto",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // Deterministic in-memory harness: N cores, virtual time, simulated network.
        .target(name: "WWWSim", dependencies: ["WWWCore"]),
        // Simulator experiments: engine profiles, YAML scenarios, workloads from the real
        // traces, baselines, reports (CSV, SVG, markdown).
        .target(name: "WWWSimLab", dependencies: [
            "WWWCore", "WWWSim", "WWWNode",
            .product(name: "Yams", package: "Yams"),
        ]),
        // `wwwserve bench`: the node's overhead and throughput against direct upstream calls.
        .target(name: "WWWBench", dependencies: [
            "WWWCore", "WWWAPI", "WWWBackends", "WWWNode", "WWWCrypto", "WWWSim", "WWWStore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "wwwserve", dependencies: [
            "WWWCore", "WWWAPI", "WWWBackends", "WWWNode", "WWWBench", "WWWCrypto", "WWWSim", "WWWSimLab",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "WWWCoreTests", dependencies: ["WWWCore", "WWWSim"]),
        .testTarget(name: "WWWSimLabTests", dependencies: ["WWWSimLab", "WWWSim", "WWWCore"]),
        .testTarget(name: "WWWCryptoTests", dependencies: ["WWWCrypto", "WWWCore"]),
        .testTarget(name: "WWWStoreTests", dependencies: [
            "WWWStore", "WWWCore", .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .testTarget(name: "WWWAPITests", dependencies: ["WWWAPI"]),
        .testTarget(name: "WWWNodeTests", dependencies: [
            "WWWNode", "WWWBackends", "WWWAPI", "WWWCore", "WWWCrypto", "WWWStore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
