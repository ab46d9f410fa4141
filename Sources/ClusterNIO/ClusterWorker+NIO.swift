public import Cluster
public import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension ClusterWorker {
    /// Serves `address` with SwiftNIO until the primary says drain, then stops accepting,
    /// lets every connection finish what it is doing, and returns.
    ///
    /// The listener is the primary's; `accept` says how its connections reach the event
    /// loops of `group` (``AcceptMode``: by default each connection wakes one thread).
    /// On drain the worker stops accepting, which leaves queued connections to the other
    /// workers (or to the slot's next worker), and sends every open connection
    /// `ChannelShouldQuiesceEvent`: an HTTP/1 pipeline closes when idle and after the
    /// response in flight.
    ///
    /// - Parameters:
    ///   - address: The listener to accept on.
    ///   - group: The event loops to serve on. Default: one thread, since a cluster runs
    ///     one worker per core.
    ///   - maxConnections: At this many open connections the worker takes no more until
    ///     one closes (the primary routes them elsewhere). Default: no limit.
    ///   - accept: How connections reach the event loops. Default: ``AcceptMode/automatic``.
    ///   - childChannelInitializer: Sets each accepted connection's pipeline up.
    /// - Throws: `ClusterError` when the listener cannot be had, or `accept` does not
    ///   suit its distribution (``AcceptMode/eventLoop`` on a `shared` listener).
    public func serve(
        _ address: ListenAddress,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil,
        accept: AcceptMode = .automatic,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws {
        let listener = try await self.listener(address)
        var path = try accept.path(for: listener.distribution)
        // SwiftNIO's server channel would hand the header to the pipeline as the client's
        // bytes: the runtime accepts instead, and reads it first.
        if path == .serverChannel && listener.proxyProtocol != nil { path = .runtime }
        let ownGroup = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        let group = group ?? ownGroup!
        let connections = ConnectionTracker { [self] opened in countConnection(opened: opened) }
        for loop in group.makeIterator() {
            watchEventLoop { loop.execute($0) }
        }
        onRebalance { fraction in connections.shed(fraction) }
        do {
            if path == .serverChannel {
                try await serveWithServerChannel(listener, group: group, maxConnections: maxConnections,
                                                 connections: connections, childChannelInitializer: childChannelInitializer)
            } else {
                try await serveAdopting(listener, onLink: path == .handoffLink, group: group, maxConnections: maxConnections,
                                        connections: connections, childChannelInitializer: childChannelInitializer)
            }
        } catch {
            try? await ownGroup?.shutdownGracefully()
            throw error
        }
        try await ownGroup?.shutdownGracefully()
    }

    /// `serve` where the runtime accepts or receives each connection (or the event loop
    /// reads the primary's handoffs from a link) and SwiftNIO adopts it with
    /// `ClientBootstrap.withConnectedSocket`.
    private func serveAdopting(
        _ listener: Listener,
        onLink: Bool,
        group: any EventLoopGroup,
        maxConnections: Int?,
        connections: ConnectionTracker,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws {
        // One bootstrap for every connection: each adoption picks the group's next loop
        // (on that loop, at once). Not Sendable, but only read after this, by one thread
        // at a time: the runtime's I/O thread, or the loop receiving handoffs.
        nonisolated(unsafe) let adopter = ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                connections.add(channel, expected: true)
                return childChannelInitializer(channel)
            }
        let proxied = listener.proxyProtocol != nil
        let adopt: @Sendable (AcceptedConnection) -> Void = { connection in
            // Counted from here, so a drain waits for connections still on their way to a loop.
            connections.expect()
            // NIO closes the descriptor itself when it cannot adopt it. Behind a PROXY
            // protocol balancer each connection's bootstrap carries its client's address.
            let bootstrap = proxied ? ClientBootstrap(group: group)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { [client = connection.clientAddress] channel in
                    connections.add(channel, expected: true)
                    do {
                        try channel.pipeline.syncOperations.addHandler(ClientAddressHandler(address: client))
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                    return childChannelInitializer(channel)
                } : adopter
            bootstrap.withConnectedSocket(connection.descriptor)
                .whenComplete { result in
                    switch result {
                    case .success(let channel):
                        // On the channel's loop, before its first read.
                        ReadDeclarationHandler.install(on: channel, for: connection)
                        channel.closeFuture.whenComplete { _ in connection.closed() }
                    case .failure:
                        connections.abandon()
                        connection.closed()
                    }
                }
        }
        // Each connection declares its first read: a crash loses only what it had begun.
        let acceptor = onLink
            ? try acceptOnEventLoop(on: listener, maxConnections: maxConnections, declaresReads: true, adopt)
            : try self.accept(on: listener, maxConnections: maxConnections, declaresReads: true, adopt)
        // Handed-off connections: an event loop watches the link's doorbell and takes
        // them itself, so they wake no other thread on their way.
        var doorbell: (any Channel)?
        if let descriptor = acceptor.doorbell {
            doorbell = try await NIOPipeBootstrap(group: group.next())
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DoorbellHandler(acceptor: acceptor))
                    }
                }
                .takingOwnershipOfDescriptor(input: descriptor)
                .get()
        }
        if listener.distribution == .shared {
            // Shedding connections is no use if this worker, awake and busy, accepts the
            // reconnections itself: it stops accepting for a moment so the others do.
            onRebalance { _ in acceptor.holdAccepting(for: .milliseconds(250)) }
        }
        await drainRequested()
        await acceptor.stopAndWait()
        await connections.quiesceAll()
        try? await doorbell?.close()
    }

    /// `serve` on a reusePort slot socket: a SwiftNIO server channel accepts, at most
    /// `maxConnections` open at once, once this worker has the slot's turn (so no other
    /// process waits on the socket with it). On drain it closes (the primary keeps the
    /// socket and its queue for the slot's next worker, who gets the turn) and the open
    /// connections quiesce.
    private func serveWithServerChannel(
        _ listener: Listener,
        group: any EventLoopGroup,
        maxConnections: Int?,
        connections: ConnectionTracker,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws {
        // Listening now: the worker counts as ready and connections queue on its socket,
        // for this worker once the one it replaces has stopped accepting.
        reportListening(listener)
        guard await acceptTurn(on: listener) else {
            stoppedAccepting(on: listener)
            return
        }
        let server: any Channel
        do {
            // Only what this loop is about to serve: a few accepts per wake-up, and none
            // while that many are unread. The rest wait in the slot socket's queue, which
            // outlives this worker if it crashes.
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.maxMessagesPerRead, value: UInt(Acceptor.unreadLimit))
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptGate(maxOpen: maxConnections ?? .max,
                                                                                  maxUnread: Acceptor.unreadLimit))
                    }
                }
                .childChannelInitializer { channel in
                    connections.add(channel)
                    return childChannelInitializer(channel)
                }
                .withBoundSocket(try listener.duplicateDescriptor().settingNoDelay(if: listener.boundAddress.port != nil))
                .get()
            listener.restoreBacklog()
        } catch {
            stoppedAccepting(on: listener)
            throw error
        }
        await drainRequested()
        try? await server.close()
        // The slot's next worker may accept now, while these connections finish.
        stoppedAccepting(on: listener)
        await connections.quiesceAll()
    }

    /// Serves HTTP/1.1 on `address` with `responder` until the primary says drain. On drain
    /// the listener closes, idle keep-alive connections close, and a request in flight
    /// finishes and is answered with `Connection: close`.
    ///
    /// Requests are parsed strictly (RFC 9112): a malformed or ambiguous one (two
    /// `Content-Length`s, whitespace before a colon, a bare LF, control characters...) is
    /// answered `400` and its connection closed at once. `limits` bounds how long a client
    /// may take and how large a request may be.
    ///
    /// - Parameters:
    ///   - address: The listener to accept on.
    ///   - group: The event loops to serve on. Default: one thread.
    ///   - maxConnections: At this many open connections the worker takes no more until
    ///     one closes. Default: no limit.
    ///   - limits: Timeouts and size limits per connection. Default: ``HTTPServerLimits/default``.
    ///   - accept: How connections reach the event loops. Default: ``AcceptMode/automatic``.
    ///   - responder: Answers each request.
    public func serveHTTP(
        _ address: ListenAddress,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil,
        limits: HTTPServerLimits = .default,
        accept: AcceptMode = .automatic,
        responder: @escaping ClusterHTTPResponder
    ) async throws {
        let responder: ClusterHTTPResponder = { [self] request, loop in
            countRequest()
            return responder(request, loop)
        }
        try await serve(address, group: group, maxConnections: maxConnections, accept: accept) { channel in
            channel.eventLoop.makeCompletedFuture {
                let client = ClientAddressHandler.clientAddress(of: channel)
                try channel.pipeline.syncOperations.addHandler(LeanHTTPHandler(limits: limits, client: client, responder: responder))
            }
        }
    }
}

extension Int32 {
    /// Sets `TCP_NODELAY` on this listening TCP socket, when `isTCP`: every connection
    /// accepted from it inherits the option (Linux copies it to the accepted socket), which
    /// saves two system calls per connection against setting it on each (SwiftNIO asks
    /// `getsockname` for the family before each `setsockopt`). Returns the descriptor.
    func settingNoDelay(if isTCP: Bool) -> Int32 {
        guard isTCP else { return self }
        var on: Int32 = 1
        _ = setsockopt(self, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        return self
    }
}
