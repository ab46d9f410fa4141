public import Cluster
import ClusterNIO
import Glibc
public import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix

extension ClusterWorker {
    /// Serves a Hummingbird router over HTTP/1.1 on the primary's listener for `address`,
    /// until the primary says drain; then stops accepting, lets every request in flight
    /// finish, closes idle keep-alive connections, and returns.
    ///
    /// ```swift
    /// let router = Router()
    /// router.get("/") { _, _ in "Hello" }
    /// try await worker.serve(router, on: .tcp(port: 3000))
    /// ```
    ///
    /// Requests are answered as a Hummingbird `Application` answers them: each gets a
    /// context made from the connection and a logger carrying `hb.request.id`, an error
    /// that is not an `HTTPResponseError` becomes a bare 500, and every response carries
    /// `Date` (and `Server`, with `serverName`). Once the drain has begun, responses also
    /// carry `Connection: close`.
    ///
    /// - Parameters:
    ///   - router: The router (or any responder builder); its responder is built once.
    ///   - address: The listener to accept on.
    ///   - configuration: The HTTP/1.1 channel's settings (idle timeout, decoder limits,
    ///     extra channel handlers), as in Hummingbird's `.http1(configuration:)`.
    ///   - serverName: The `Server` header's value; none when `nil`.
    ///   - logger: The logger for connections and requests. Default: a logger labelled
    ///     `serverName` or "Hummingbird", at `LOG_LEVEL` if set, with `cluster.worker.id`
    ///     metadata.
    ///   - group: The event loops that run connections. Default: one thread, since a
    ///     cluster runs one worker per core.
    ///   - maxConnections: At this many open connections the worker takes no more until
    ///     one closes (the primary routes them elsewhere). Default: no limit.
    public func serve<Builder: HTTPResponderBuilder>(
        _ router: Builder,
        on address: ListenAddress,
        configuration: HTTP1Channel.Configuration = .init(),
        serverName: String? = nil,
        logger: Logger? = nil,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil
    ) async throws where Builder.Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        try await serve(
            responder: router.buildResponder(),
            on: address,
            configuration: configuration,
            serverName: serverName,
            logger: logger,
            group: group,
            maxConnections: maxConnections
        )
    }

    /// Serves a Hummingbird responder over HTTP/1.1 on the primary's listener for
    /// `address` until the primary says drain, as
    /// `ClusterWorker.serve(_:on:configuration:serverName:logger:group:maxConnections:)` does with a
    /// router's responder.
    ///
    /// - Parameters:
    ///   - responder: Answers each request, given a context made from the connection.
    ///   - address: The listener to accept on.
    ///   - configuration: The HTTP/1.1 channel's settings.
    ///   - serverName: The `Server` header's value; none when `nil`.
    ///   - logger: The logger for connections and requests (default as for a router).
    ///   - group: The event loops that run connections. Default: one thread.
    ///   - maxConnections: The most connections open at once. Default: no limit.
    public func serve<Responder: HTTPResponder>(
        responder: Responder,
        on address: ListenAddress,
        configuration: HTTP1Channel.Configuration = .init(),
        serverName: String? = nil,
        logger: Logger? = nil,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil
    ) async throws where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        let logger = logger ?? defaultLogger(label: serverName ?? "Hummingbird")
        let channel = HTTP1Channel(
            responder: channelResponder(responder, serverName: serverName, logger: logger, dates: HTTPDate()),
            configuration: configuration
        )
        try await serve(channel, on: address, logger: logger, group: group, maxConnections: maxConnections)
    }

    /// Serves connections with any Hummingbird child channel (an `HTTP1Channel` with a
    /// responder of your own, or another protocol's) on the primary's listener for
    /// `address`, until the primary says drain.
    ///
    /// This is Hummingbird's own `Server` loop on connections the worker accepts: each
    /// connection is set up with `setup(channel:logger:)` on its event loop and handled by
    /// `handle(value:logger:)` in a task of its own. On drain the worker stops accepting
    /// (queued connections go to the other workers) and sends every connection
    /// `ChannelShouldQuiesceEvent`, as Hummingbird's graceful shutdown does; this returns
    /// when every connection has closed and every handler has returned.
    ///
    /// - Parameters:
    ///   - childChannel: Sets each connection up and handles it.
    ///   - address: The listener to accept on.
    ///   - logger: Given to `setup` and `handle`. Default: a logger labelled "Hummingbird",
    ///     at `LOG_LEVEL` if set, with `cluster.worker.id` metadata.
    ///   - group: The event loops that run connections. Default: one thread.
    ///   - maxConnections: The most connections open at once. Default: no limit.
    public func serve<ChildChannel: ServerChildChannel>(
        _ childChannel: ChildChannel,
        on address: ListenAddress,
        logger: Logger? = nil,
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil
    ) async throws {
        let logger = logger ?? defaultLogger(label: "Hummingbird")
        // Ours, not ClusterNIO's: a handler still closes its channel on the loop after the
        // channel reported closed, so the loop stops only once every handler has returned.
        let ownGroup = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        let group = group ?? ownGroup!
        let (connections, accepted) = AsyncStream.makeStream(of: ChildChannel.Value.self)
        // The loop below waits on an event loop, not on Swift's global pool: a connection
        // set up on that loop reaches its handler without waking another thread (with the
        // default one-thread group, every connection, from accept to its last response).
        let home = EventLoopTaskExecutor(group.next())
        do {
            try await withTaskExecutorPreference(home) {
                try await withThrowingDiscardingTaskGroup { tasks in
                    tasks.addTask(executorPreference: globalConcurrentExecutor) {
                        // Ends the loop below once the last connection has closed (or serving failed).
                        defer { accepted.finish() }
                        try await self.serve(address, group: group, maxConnections: maxConnections) { channel in
                            channel.eventLoop.makeCompletedFuture {
                                // As Hummingbird's server: a client's half-close still gets its response.
                                try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                            }
                            .flatMap { childChannel.setup(channel: channel, logger: logger) }
                            .map { value in
                                // Adopted after serving ended: no handler would read it.
                                if case .terminated = accepted.yield(value) { value.channel.close(promise: nil) }
                            }
                        }
                    }
                    for await connection in connections {
                        // On the connection's own event loop: a worker uses the threads of its
                        // group, not the global pool's one per core.
                        let loop = connection.channel.eventLoop
                        let executor = loop === home.eventLoop ? home : EventLoopTaskExecutor(loop)
                        tasks.addTask(executorPreference: executor) { await childChannel.handle(value: connection, logger: logger) }
                    }
                }
            }
        } catch {
            try? await ownGroup?.shutdownGracefully()
            throw error
        }
        try await ownGroup?.shutdownGracefully()
    }

    /// Hummingbird's default logger, marked with this worker's id.
    private func defaultLogger(label: String) -> Logger {
        var logger = Logger(label: label)
        if let level = getenv("LOG_LEVEL").flatMap({ Logger.Level(rawValue: String(cString: $0)) }) {
            logger.logLevel = level
        }
        logger[metadataKey: "cluster.worker.id"] = .stringConvertible(id)
        return logger
    }

    /// What `Application.run` makes of a responder: the closure an `HTTP1Channel` calls
    /// for each request.
    private func channelResponder<Responder: HTTPResponder>(
        _ responder: Responder,
        serverName: String?,
        logger: Logger,
        dates: HTTPDate
    ) -> HTTPChannelHandler.Responder where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        { request, writer, channel in
            self.countRequest() // the primary's stats, the autoscaler and recycling by requests
            var requestLogger = logger
            requestLogger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
            let response = try await withLogger(requestLogger) { logger in
                let context = Responder.Context(source: ApplicationRequestContextSource(channel: channel, logger: logger))
                var response: Response
                do {
                    response = try await responder.respond(to: request, context: context)
                } catch let error as HTTPParserError {
                    // The connection answers a parse error with 400 and closes.
                    throw error
                } catch {
                    logger.debug("Unrecognised Error", metadata: ["error.type": "\(error)"])
                    response = Response(status: .internalServerError, body: .init())
                }
                response.headers[.date] = dates.now
                if let serverName { response.headers[.server] = serverName }
                // The connection closes after this response (the client asked, or the worker
                // is draining): the client learns it here, and sends nothing more on it.
                if self.isDraining || request.asksToClose { response.headers[.connection] = "close" }
                return response
            }
            do {
                try await writer.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // Rethrown as is, it would make the connection write a second response.
                throw ResponseWriteFailed()
            }
        }
    }
}

extension Request {
    /// Whether the request's `Connection` header has the `close` option: the channel then
    /// closes after the response, which must say so (RFC 9112 §9.6). Hummingbird's
    /// HTTP/1.1 channel closes but does not say it, and a client that takes the response
    /// as keep-alive sends its next request into the closing connection.
    var asksToClose: Bool {
        guard let value = headers[.connection] else { return false }
        return value.split(separator: ",").contains { option in option.filter { $0 != " " && $0 != "\t" }.lowercased() == "close" }
    }
}

/// A response could not be written because the connection failed to parse the request.
struct ResponseWriteFailed: Error {}
