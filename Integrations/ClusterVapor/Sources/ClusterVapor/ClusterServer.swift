public import Cluster
import ClusterNIO
public import NIOCore
import NIOHTTP1
import Synchronization
public import Vapor

/// A Vapor `Server` that serves the application in a cluster worker, on the primary's
/// listener, until the worker drains.
///
/// Install it with `app.servers.use(.cluster(worker, on: address))`; then `app.execute()`
/// starts it as it starts Vapor's own server, and returns once the worker has drained.
/// ``ClusterWorker/run(_:on:group:maxConnections:maxBodySize:)`` does both.
///
/// On drain (the primary's, or Vapor's shutdown in this worker, which leaves the cluster as
/// `worker.disconnect()` does) the worker stops accepting, every request in flight is
/// answered with `Connection: close` and its connection closed, idle keep-alive
/// connections close at once, and then `app.execute()` returns.
///
/// HTTP/1.1 only, on the connections the worker takes (every distribution strategy). The
/// application's responder answers each request (routes, middleware, error handling), with
/// `app.http.server.configuration.serverName` as the `Server` header; the rest of that
/// configuration (address, TLS, HTTP/2, compression, idle timeout) is Vapor's own
/// server's and unused here. Request bodies are collected before the responder runs, up to a limit (413
/// beyond it), and a streamed response body is collected before it is written; WebSocket
/// upgrades are not supported. `req.remoteAddress` is the client, also behind a load
/// balancer that sends the PROXY protocol (`ListenAddress.tcp(port:proxyProtocol:)`).
public final class ClusterServer: Server, Sendable {
    private let application: Application
    private let worker: ClusterWorker
    private let address: ListenAddress
    private let group: (any EventLoopGroup)?
    private let maxConnections: Int?
    private let maxBodySize: ByteCount?
    private let state = Mutex(State())

    private struct State {
        /// The task serving connections, once started.
        var serving: Task<Void, Never>?
        /// Succeeds when serving ends.
        var finished: EventLoopPromise<Void>?
        /// `shutdown()` was called.
        var shuttingDown = false
    }

    /// A server for `application` on the primary's listener for `address`.
    ///
    /// - Parameters:
    ///   - application: The application whose responder answers requests.
    ///   - worker: This process's worker.
    ///   - address: The listener to accept on (the primary binds it; an address Vapor's
    ///     `serve` command is given is not used).
    ///   - group: The event loops that run connections. Default: one thread, since a
    ///     cluster runs one worker per core.
    ///   - maxConnections: At this many open connections the worker takes no more until
    ///     one closes (the primary routes them elsewhere). Default: no limit.
    ///   - maxBodySize: The largest request body answered. Default: the application's
    ///     `routes.defaultMaxBodySize`.
    public init(application: Application, worker: ClusterWorker, address: ListenAddress,
                group: (any EventLoopGroup)? = nil, maxConnections: Int? = nil, maxBodySize: ByteCount? = nil) {
        self.application = application
        self.worker = worker
        self.address = address
        self.group = group
        self.maxConnections = maxConnections
        self.maxBodySize = maxBodySize
    }

    /// Succeeds once the server has stopped: the worker drained and every connection
    /// closed. Fails when the server has not been started.
    public var onShutdown: EventLoopFuture<Void> {
        guard let finished = state.withLock({ $0.finished }) else {
            return application.eventLoopGroup.any().makeFailedFuture(
                ServerMisuse(description: "the cluster server of worker \(worker.id) has not been started"))
        }
        return finished.futureResult
    }

    /// Starts serving the primary's listener; throws when the listener cannot be had.
    /// `address` is ignored: the primary owns the sockets.
    public func start(address: BindAddress?) async throws {
        if let address {
            let given = switch address {
            case .hostname(let host, let port): "\(host ?? "*"):\(port.map(String.init) ?? "*")"
            case .unixDomainSocket(let path): path
            }
            application.logger.notice("Serving the primary's \(self.address), not \(given): the primary owns the sockets")
        }
        let listener = try await worker.listener(self.address)
        let settings = VaporHTTPHandler.Settings(
            application: application, worker: worker,
            serverName: application.http.server.configuration.serverName,
            maxBodySize: (maxBodySize ?? application.routes.defaultMaxBodySize).value,
            dates: ResponseDate())
        let finished = application.eventLoopGroup.any().makePromise(of: Void.self)
        let started = state.withLock { state in
            guard state.serving == nil else { return false }
            state.finished = finished
            state.serving = Task { [self] in
                do {
                    try await worker.serve(self.address, group: group, maxConnections: maxConnections) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let client = ClientAddressHandler.clientAddress(of: channel)
                            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                            try channel.pipeline.syncOperations.addHandler(VaporHTTPHandler(settings: settings, client: client))
                        }
                    }
                } catch {
                    application.logger.error("Cluster worker \(worker.id) stopped serving \(self.address): \(error)")
                }
                finished.succeed()
                stopApplication(tries: 1000)
            }
            return true
        }
        guard started else {
            finished.succeed()
            throw ServerMisuse(description: "the cluster server of worker \(worker.id) was started twice")
        }
        application.logger.notice("Server started on \(listener.boundAddress) (cluster worker \(worker.id))")
    }

    /// Drains: the worker leaves the cluster (stops accepting, answers what is in flight,
    /// closes idle connections), and this returns once every connection has closed.
    public func shutdown() async {
        guard let task = state.withLock({ state in
            state.shuttingDown = true
            return state.serving
        }) else { return }
        // Already draining (the primary's word): nothing to announce, only to wait for.
        if !worker.isDraining { worker.disconnect() }
        await task.value
    }

    /// Starts serving, for Vapor's blocking `app.run()`; prefer `app.execute()`.
    @available(*, noasync, message: "Use the async start(address:) instead.")
    public func start(address: BindAddress?) throws {
        let promise = application.eventLoopGroup.any().makePromise(of: Void.self)
        promise.completeWithTask { try await self.start(address: address) }
        try promise.futureResult.wait()
    }

    /// Drains and waits, for Vapor's blocking `app.shutdown()`; prefer `app.asyncShutdown()`.
    @available(*, noasync, message: "Use the async shutdown() instead.")
    public func shutdown() {
        let promise = application.eventLoopGroup.any().makePromise(of: Void.self)
        promise.completeWithTask { await self.shutdown() }
        try? promise.futureResult.wait()
    }

    /// Ends `app.execute()`, unless the application is already shutting the server down
    /// (then its storage, `app.running` included, may be going). Vapor's `serve` command
    /// sets `app.running` just after `start` returns: a drain that ended sooner stops it
    /// once set (a millisecond later, at most `tries` times: a server started without the
    /// command has nothing to stop).
    private func stopApplication(tries: Int) {
        guard !state.withLock({ $0.shuttingDown }) else { return }
        if let running = application.running {
            running.stop()
        } else if tries > 1 {
            application.eventLoopGroup.any().scheduleTask(in: .milliseconds(1)) { self.stopApplication(tries: tries - 1) }
        }
    }
}

/// A ``ClusterServer`` used out of order: asked when it stops before it started, or started twice.
struct ServerMisuse: Error, CustomStringConvertible {
    let description: String
}
