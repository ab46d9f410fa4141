public import Cluster
public import NIOCore

/// Holds the client's address on a connection from a PROXY protocol listener
/// (`Cluster.ListenAddress.proxyProtocol`): there a channel's `remoteAddress` is the
/// load balancer's, and SwiftNIO has no way to replace it. `serve` adds it first to each
/// such connection's pipeline, before the pipeline the caller sets up; it passes every
/// event on untouched.
///
/// Read it with ``clientAddress(of:)``, on the channel's event loop:
///
/// ```swift
/// try await worker.serve(.tcp(port: 8000, proxyProtocol: .v2)) { channel in
///     let client = ClientAddressHandler.clientAddress(of: channel) // the balancer's client
///     ...
/// }
/// ```
public final class ClientAddressHandler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    public typealias InboundIn = NIOAny

    /// The client the connection's PROXY header named; nil when it named none (a v2
    /// `LOCAL` health check, a v1 `UNKNOWN`), where the channel's `remoteAddress` stands.
    public let address: SocketAddress?

    /// A handler holding `address`, the client a PROXY header named.
    public init(address: PeerAddress?) {
        self.address = address.flatMap(ClientAddressHandler.socketAddress)
    }

    /// The client of `channel`: the one its PROXY header named, else its `remoteAddress`.
    /// Call on the channel's event loop.
    public static func clientAddress(of channel: any Channel) -> SocketAddress? {
        let handler = try? channel.pipeline.syncOperations.handler(type: ClientAddressHandler.self)
        return handler?.address ?? channel.remoteAddress
    }

    static func socketAddress(_ address: PeerAddress) -> SocketAddress? {
        if let ip = address.ipAddress, let port = address.port { return try? SocketAddress(ipAddress: ip, port: port) }
        if let path = address.path, !path.isEmpty { return try? SocketAddress(unixDomainSocketPath: path) }
        return nil
    }
}
