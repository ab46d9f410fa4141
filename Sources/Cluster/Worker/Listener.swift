/// A listener of the primary's that this worker serves: the socket it accepts on
/// (shared, reusePort), or the word that the primary accepts and hands connections over
/// (roundRobin, leastConnections, sticky). ``ClusterWorker/accept(on:maxConnections:_:)``
/// serves both alike.
public struct Listener: Sendable, CustomStringConvertible {
    /// The address the worker asked for.
    public let address: ListenAddress
    /// The address bound (the chosen port when the request said port 0).
    public let boundAddress: ListenAddress
    /// How its connections reach workers.
    public let distribution: Distribution
    /// The descriptor this worker accepts on, owned by the runtime; -1 when the primary
    /// accepts. An adopter that closes what it adopts (SwiftNIO does) should adopt
    /// ``duplicateDescriptor()`` instead.
    public let descriptor: Int32
    /// The primary's number for it.
    let id: Int

    /// Gives the socket the primary's backlog again, after a server that adopted a
    /// duplicate called `listen` with its own (SwiftNIO's `withBoundSocket` listens with
    /// 128): the queue the workers share keeps its length.
    package func restoreBacklog() {
        guard descriptor >= 0 else { return }
        try? Syscall.listen(descriptor, backlog: Socket.backlog)
    }

    /// A new close-on-exec descriptor for the same socket, owned by the caller.
    public func duplicateDescriptor() throws(ClusterError) -> Int32 {
        guard descriptor >= 0 else {
            throw ClusterError(.invalidConfiguration, "\(boundAddress) is distributed by \(distribution): the primary accepts and hands connections over, so there is no socket to accept on; use accept(on:) or an adapter's serve")
        }
        return try Syscall.duplicate(descriptor)
    }

    /// Parses the primary's grant, `id TAB distribution TAB bound address`.
    init(grant: String, address: ListenAddress, descriptor: Int32) throws(ClusterError) {
        let fields = grant.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 3, let id = Int(fields[0]) else {
            throw ClusterError(.malformedFrame, "the primary granted \(address) as '\(grant)', which is not 'id TAB distribution TAB address'")
        }
        self.id = id
        self.distribution = try Distribution(parsing: fields[1])
        self.boundAddress = try ListenAddress(parsing: fields[2])
        self.address = address
        self.descriptor = descriptor
    }

    public var description: String {
        descriptor >= 0 ? "\(boundAddress) (\(distribution), fd \(descriptor))" : "\(boundAddress) (\(distribution), handed over by the primary)"
    }
}
