public import Cluster
public import NIOCore
public import NIOPosix

extension ClusterWorker {
    /// Binds a `ServerBootstrap` to the primary's listener for `address`: SwiftNIO accepts
    /// by itself, with every option the bootstrap carries but the backlog: the socket
    /// keeps the primary's, so the queue the workers share keeps its length.
    ///
    /// The listener must be one this worker waits on alone: a `reusePort` slot socket. The
    /// worker reports listening at once, and the channel is bound when the worker has its
    /// slot's turn (`acceptTurn(on:)`; during a reload, once the worker it replaces has
    /// stopped accepting). Close the returned channel to stop accepting: the slot's next
    /// worker may then accept (the primary's socket stays open for it).
    ///
    /// - Throws: `ClusterError.Code.invalidConfiguration` for a `shared` listener, on
    ///   which every worker would wait for the same connections (SwiftNIO asserts on the
    ///   wake-ups that find none), or one the primary accepts for: ``serve(_:group:maxConnections:accept:childChannelInitializer:)``
    ///   serves those. `ClusterError.Code.channelClosed` when the worker drains before
    ///   its turn comes.
    public func bind(_ bootstrap: ServerBootstrap, to address: ListenAddress) async throws -> any Channel {
        let listener = try await self.listener(address)
        guard listener.distribution == .reusePort else {
            throw ClusterError(.invalidConfiguration, "\(listener.boundAddress) is distributed by \(listener.distribution); bind(_:to:) needs a reusePort listener, which one worker accepts on at a time. Use serve(_:) for this one, or distribute by reusePort")
        }
        reportListening(listener)
        guard await acceptTurn(on: listener) else {
            stoppedAccepting(on: listener)
            throw ClusterError(.channelClosed, "the worker began to drain before its turn to accept on \(listener.boundAddress) came")
        }
        do {
            let channel = try await bootstrap
                    .withBoundSocket(try listener.duplicateDescriptor())
                .get()
            listener.restoreBacklog()
            channel.closeFuture.whenComplete { [self] _ in stoppedAccepting(on: listener) }
            return channel
        } catch {
            stoppedAccepting(on: listener)
            throw error
        }
    }
}
