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
    /// The listener is the primary's. With `shared` and `reusePort` in release builds an
    /// event loop of `group` accepts on the worker's socket itself; otherwise the worker's
    /// I/O thread accepts or takes the primary's handoffs, and each connection is adopted by
    /// an event loop of `group` with `ClientBootstrap.withConnectedSocket`. On drain the
    /// worker stops accepting, which leaves queued connections to the other workers (or to
    /// the slot's next worker), and sends every open connection `ChannelShouldQuiesceEvent`:
    /// an HTTP/1 pipeline closes when idle and after the response in flight.
    ///
    /// - Parameters:
    ///   - address: The listener to accept on.
    ///   - group: The event loops to serve on. Default: one thread, since a cluster runs
    ///     one worker per core.
    ///   - maxConnections: At this many open connections the worker takes no more until
    ///     one closes (the primary routes them elsewhere). Default: no limit.
    ///   - childChannelInitializer: Sets each accepted connection's pipeline up.
    public func serve(
        _ address: ListenAddress,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws {
        let listener = try await self.listener(address)
        let ownGroup = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        let group = group ?? ownGroup!
        let connections = ConnectionTracker { [self] opened in countConnection(opened: opened) }
        for loop in group.makeIterator() {
            watchEventLoop { loop.execute($0) }
        }
        onRebalance { fraction in connections.shed(fraction) }
        if Self.swiftNIOAccepts(listener.distribution) {
            try await serveAcceptingInNIO(listener, group: group, maxConnections: maxConnections,
                                          connections: connections, childChannelInitializer: childChannelInitializer)
            try await ownGroup?.shutdownGracefully()
            return
        }
        // One bootstrap for every connection: each adoption picks the group's next loop
        // (on that loop, at once). Not Sendable, but only read after this, by one thread
        // at a time: the runtime's I/O thread, or the loop receiving handoffs.
        nonisolated(unsafe) let adopter = ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                connections.add(channel, expected: true)
                return childChannelInitializer(channel)
            }
        let adopt: @Sendable (AcceptedConnection) -> Void = { connection in
            // Counted from here, so a drain waits for connections still on their way to a loop.
            connections.expect()
            // NIO closes the descriptor itself when it cannot adopt it.
            adopter.withConnectedSocket(connection.descriptor)
                .whenComplete { result in
                    switch result {
                    case .success(let channel): channel.closeFuture.whenComplete { _ in connection.closed() }
                    case .failure:
                        connections.abandon()
                        connection.closed()
                    }
                }
        }
        let acceptor = Self.handoffLinks
            ? try acceptOnEventLoop(on: listener, maxConnections: maxConnections, adopt)
            : try accept(on: listener, maxConnections: maxConnections, adopt)
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
        await drainRequested()
        await acceptor.stopAndWait()
        await connections.quiesceAll()
        try? await doorbell?.close()
        try await ownGroup?.shutdownGracefully()
    }

    /// Whether a serving event loop receives handed-off connections itself, over a
    /// handoff link (``ClusterWorker/acceptOnEventLoop(on:maxConnections:_:)``), rather
    /// than from the runtime's I/O thread. `CLUSTER_HANDOFF_LINKS=0` turns links off, to
    /// compare or to rule them out.
    static let handoffLinks = getenv("CLUSTER_HANDOFF_LINKS").map { String(cString: $0) } != "0"

    /// Whether SwiftNIO accepts on the serving event loop (one thread wakes per connection)
    /// instead of the runtime's I/O thread handing each connection over (two): for the
    /// socket strategies, in builds without assertions. Where several processes wait on
    /// one socket (every worker on a shared one; a slot's worker and its replacement
    /// during a reload on a reusePort one) the kernel wakes all of them for a connection,
    /// and SwiftNIO's debug builds assert that a wake-up finds one.
    static func swiftNIOAccepts(_ distribution: Distribution) -> Bool {
        #if DEBUG
        false
        #else
        distribution == .reusePort || distribution == .shared
        #endif
    }

    /// `serve` for a socket this worker accepts on itself: a SwiftNIO server channel accepts,
    /// at most `maxConnections` open at once; on drain it closes (the primary keeps the
    /// socket and its queue for the next worker) and the open connections quiesce.
    private func serveAcceptingInNIO(
        _ listener: Listener,
        group: any EventLoopGroup,
        maxConnections: Int?,
        connections: ConnectionTracker,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.maxMessagesPerRead, value: 16)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let maxConnections {
                        try channel.pipeline.syncOperations.addHandler(AcceptLimiter(limit: maxConnections))
                    }
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                connections.add(channel)
                return childChannelInitializer(channel)
            }
            .withBoundSocket(try listener.duplicateDescriptor())
            .get()
        if listener.distribution == .shared {
            // Shedding connections is no use if this worker, awake and busy, accepts the
            // reconnections itself: it stops accepting for a moment so the others do.
            onRebalance { _ in
                server.setOption(.autoRead, value: false).whenSuccess {
                    server.eventLoop.scheduleTask(in: .milliseconds(250)) { server.setOption(.autoRead, value: true) }
                }
            }
        }
        reportListening(listener)
        await drainRequested()
        try? await server.close()
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
    ///   - responder: Answers each request.
    public func serveHTTP(
        _ address: ListenAddress,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil,
        limits: HTTPServerLimits = .default,
        responder: @escaping HTTPResponder
    ) async throws {
        let responder: HTTPResponder = { [self] request, loop in
            countRequest()
            return responder(request, loop)
        }
        try await serve(address, group: group, maxConnections: maxConnections) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(LeanHTTPHandler(limits: limits, responder: responder))
            }
        }
    }
}

/// Watches a handoff link's doorbell: each time the primary has rung, takes every
/// handoff waiting (the acceptor's handler adopts them on this loop).
final class DoorbellHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let acceptor: Acceptor
    private var rang = false

    init(acceptor: Acceptor) { self.acceptor = acceptor }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { rang = true }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard rang else { return }
        rang = false
        acceptor.receiveHandoffs()
    }
}

/// Holds a server channel's accepting while `limit` accepted connections are open: the
/// connections wait in the socket's queue until one closes.
final class AcceptLimiter: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    private let limit: Int
    private var open = 0
    private var readHeld = false

    init(limit: Int) { self.limit = max(1, limit) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        open += 1
        let limiter = NIOLoopBound(self, eventLoop: context.eventLoop)
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        child.closeFuture.whenComplete { _ in
            context.value.eventLoop.execute { limiter.value.childClosed(context: context.value) }
        }
        context.value.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if open < limit { context.read() } else { readHeld = true }
    }

    private func childClosed(context: ChannelHandlerContext) {
        open -= 1
        if readHeld, open < limit {
            readHeld = false
            context.read()
        }
    }
}

/// The open connections of one worker, so a drain can quiesce them and wait for them.
final class ConnectionTracker: Sendable {
    private struct State {
        var open: [ObjectIdentifier: any Channel] = [:]
        /// Accepted, handed to an event loop, not yet added.
        var expected = 0
        var quiescing = false
    }
    private let state = Mutex(State())
    private let count: @Sendable (_ opened: Bool) -> Void

    /// `count` hears of every connection opened and closed.
    init(count: @escaping @Sendable (_ opened: Bool) -> Void = { _ in }) {
        self.count = count
    }

    /// A connection is on its way: ``add(_:expected:)`` or ``abandon()`` follows.
    func expect() { state.withLock { $0.expected += 1 } }

    /// An expected connection could not be adopted.
    func abandon() { state.withLock { $0.expected -= 1 } }

    func add(_ channel: any Channel, expected: Bool = false) {
        let key = ObjectIdentifier(channel)
        let quiescing = state.withLock { state in
            state.open[key] = channel
            if expected { state.expected -= 1 }
            return state.quiescing
        }
        count(true)
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.open.removeValue(forKey: key) }
            count(false)
        }
        // Adopted after the drain began: quiesce as soon as the pipeline exists.
        if quiescing {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    /// Asks `fraction` of the open connections to finish and close (a keep-alive client
    /// then reconnects, perhaps to another worker).
    func shed(_ fraction: Double) {
        let chosen = state.withLock { state -> [any Channel] in
            guard !state.quiescing else { return [] }
            let count = Int((Double(state.open.count) * fraction).rounded())
            return Array(state.open.values.shuffled().prefix(count))
        }
        for channel in chosen {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    /// Asks every connection to finish and close, and waits until all have.
    func quiesceAll() async {
        let channels = state.withLock { state in
            state.quiescing = true
            return Array(state.open.values)
        }
        for channel in channels {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
        for channel in channels { _ = try? await channel.closeFuture.get() }
        // Connections adopted while the first ones closed, and those still on their way.
        while true {
            let (next, expected) = state.withLock { ($0.open.values.first, $0.expected) }
            if let next {
                _ = try? await next.closeFuture.get()
            } else if expected > 0 {
                try? await Task.sleep(for: .milliseconds(5))
            } else {
                return
            }
        }
    }
}
