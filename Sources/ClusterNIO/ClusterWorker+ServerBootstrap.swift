public import Cluster
public import NIOCore
public import NIOPosix

extension ClusterWorker {
    /// Binds a `ServerBootstrap` to the primary's listener for `address`: SwiftNIO accepts
    /// by itself, with every option the bootstrap carries, and the primary is told this
    /// worker is listening (it then restores its own backlog, which SwiftNIO's `listen`
    /// call lowered).
    ///
    /// The returned server channel is yours: close it to stop accepting (the primary's
    /// socket stays open for the other workers).
    ///
    /// - Important: when several workers share one listener, the kernel wakes all of them
    ///   for each connection and SwiftNIO's debug builds assert when a wake-up finds the
    ///   connection already taken by another worker. Use this in release builds or with
    ///   one worker per listener; ``serve(_:group:childChannelInitializer:)`` has no such
    ///   limit, since the worker runtime accepts and SwiftNIO adopts each connection.
    public func bind(_ bootstrap: ServerBootstrap, to address: ListenAddress) async throws -> any Channel {
        let listener = try await self.listener(address)
        let channel = try await bootstrap.withBoundSocket(try listener.duplicateDescriptor()).get()
        reportListening(listener)
        return channel
    }
}
