public import Cluster
public import NIOCore
import NIOPosix

/// The HTTP server of `ClusterWorker.serveHTTP(_:group:maxConnections:limits:responder:)` in
/// one process, without a cluster: the same pipeline and responder, bound by SwiftNIO
/// itself. For development, and to measure what the cluster costs.
public enum StandaloneHTTPServer {
    /// Serves `address` with `responder` on `group` (default: one event loop per core) until
    /// the process ends, each connection within `limits`.
    public static func serve(_ address: ListenAddress, group: (any EventLoopGroup)? = nil, limits: HTTPServerLimits = .default,
                             responder: @escaping ClusterHTTPResponder) async throws {
        let channel = try await bind(address, group: group, limits: limits, responder: responder)
        try await channel.closeFuture.get()
    }

    /// Binds `address` and serves `responder` on it in the background, each connection
    /// within `limits`; close the returned channel to stop. Its `localAddress` has the port
    /// chosen for port 0.
    public static func bind(_ address: ListenAddress, group: (any EventLoopGroup)? = nil, limits: HTTPServerLimits = .default,
                            responder: @escaping ClusterHTTPResponder) async throws -> any Channel {
        let group = group ?? MultiThreadedEventLoopGroup.singleton
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(LeanHTTPHandler(limits: limits, responder: responder))
                }
            }
        if let path = address.path {
            return try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        }
        return try await bootstrap.bind(host: address.host ?? "0.0.0.0", port: address.port ?? 0).get()
    }
}
