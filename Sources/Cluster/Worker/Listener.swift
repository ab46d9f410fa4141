/// A listener of the primary's that this worker serves: the socket it accepts on
/// (shared, reusePort), or the word that the primary accepts and hands connections over
/// (roundRobin, leastConnections, sticky). ``ClusterWorker/accept(on:maxConnections:declaresReads:_:)``
/// serves both alike.
public struct Listener: Sendable, CustomStringConvertible {
    /// The address the worker asked for.
    public let address: ListenAddress
    /// The address bound (the chosen port when the request said port 0).
    public let boundAddress: ListenAddress
    /// How its connections reach workers.
    public let distribution: Distribution
    /// The descriptor this worker accepts on, owned by the runtime; nil when the primary
    /// accepts and hands connections over. An adopter that closes what it adopts (SwiftNIO
    /// does) should adopt ``duplicateDescriptor()`` instead.
    public let descriptor: Int32?
    /// The primary's number for it.
    let id: Int

    /// The PROXY protocol header each connection starts with (the bound address's
    /// ``ListenAddress/proxyProtocol``), read before a connection reaches a handler.
    public var proxyProtocol: ProxyProtocol? { boundAddress.proxyProtocol }

    /// Gives the socket the primary's backlog again, after a server that adopted a
    /// duplicate called `listen` with its own (SwiftNIO's `withBoundSocket` listens with
    /// 128): the queue the workers share keeps its length.
    package func restoreBacklog() {
        guard let descriptor else { return }
        try? Syscall.listen(descriptor, backlog: Socket.backlog)
    }

    /// A new close-on-exec descriptor for the same socket, owned by the caller.
    public func duplicateDescriptor() throws(ClusterError) -> Int32 {
        guard let descriptor else {
            throw ClusterError(.invalidConfiguration, "\(boundAddress) is distributed by \(distribution): the primary accepts and hands connections over, so there is no socket to accept on; use accept(on:) or an adapter's serve")
        }
        return try Syscall.duplicate(descriptor)
    }

    /// The listener the primary granted for `address` (a `listen` reply), with the
    /// descriptor that came with it, if any.
    init(grant: ListenerGrant, address: ListenAddress, descriptor: Int32?) throws(ClusterError) {
        try self.init(grant: grant, parsed: grant.parsed(), address: address, descriptor: descriptor)
    }

    /// A listener inherited at start: its grant names the address asked for and the
    /// descriptor, if any.
    init(inherited grant: ListenerGrant) throws(ClusterError) {
        let parsed = try grant.parsed()
        guard let address = parsed.address else {
            throw ClusterError(.invalidConfiguration, "CLUSTER_LISTENERS grants listener \(grant.id) without the address asked for")
        }
        self.init(grant: grant, parsed: parsed, address: address, descriptor: grant.descriptor)
    }

    private init(grant: ListenerGrant, parsed: (distribution: Distribution, bound: ListenAddress, address: ListenAddress?),
                 address: ListenAddress, descriptor: Int32?) {
        self.id = grant.id
        self.distribution = parsed.distribution
        self.boundAddress = parsed.bound
        self.address = address
        self.descriptor = descriptor
    }

    public var description: String {
        descriptor.map { "\(boundAddress) (\(distribution), fd \($0))" } ?? "\(boundAddress) (\(distribution), handed over by the primary)"
    }
}
