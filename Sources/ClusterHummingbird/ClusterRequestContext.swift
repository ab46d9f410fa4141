import ClusterNIO
public import Hummingbird
public import NIOCore

/// A request context whose `remoteAddress` is the client's, also behind a PROXY protocol
/// balancer (a listener with `Cluster.ListenAddress.proxyProtocol`): there the
/// connection's own peer is the balancer, and this is the client its header named.
/// Hummingbird's tracing middleware reads it through `RemoteAddressRequestContext`.
///
/// ```swift
/// let router = Router(context: ClusterRequestContext.self)
/// router.get("/") { _, context in "Hello, \(context.remoteAddress?.ipAddress ?? "?")" }
/// try await worker.serve(router, on: .tcp(port: 8000, proxyProtocol: .v2))
/// ```
public struct ClusterRequestContext: RequestContext, RemoteAddressRequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The client: the one the connection's PROXY header named, else its peer.
    public let remoteAddress: SocketAddress?

    /// Made by the server for each request, on the connection's event loop (where
    /// `ClusterWorker.serve(_:on:configuration:serverName:logger:group:maxConnections:)`
    /// runs a connection's requests); elsewhere it falls back to the channel's peer.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.eventLoop.inEventLoop
            ? ClientAddressHandler.clientAddress(of: source.channel)
            : source.channel.remoteAddress
    }
}
