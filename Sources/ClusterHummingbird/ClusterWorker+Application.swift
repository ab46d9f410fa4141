public import Cluster
public import Hummingbird
public import HummingbirdCore
public import NIOCore

extension ClusterWorker {
    /// Runs a Hummingbird application as this worker: its services, its processes to run
    /// before the server starts, and its router, on the primary's listener for `address`,
    /// until the primary says drain. The application is the one you would run alone with
    /// `app.runService()`: nothing in it changes.
    ///
    /// ```swift
    /// case .worker(let worker):
    ///     let app = Application(router: router, services: [database])
    ///     try await worker.run(app, on: .tcp(port: 8080))
    /// ```
    ///
    /// The services start first, then `processesRunBeforeServerStart` run, then the server
    /// accepts (`run(services:gracefulShutdownSignals:logger:server:)`). On drain the server
    /// stops accepting, answers what is in flight (`Connection: close`), closes idle
    /// connections and returns; then the services shut down in reverse order. Requests are
    /// answered as the application answers them, with its `serverName` and logger.
    ///
    /// What the worker decides instead of the application: the address (the primary owns
    /// the sockets, so `configuration.address` is not bound), the event loops (one thread
    /// unless `group` is given, since a cluster runs one worker per core, where
    /// `app.eventLoopGroup` would start a thread per core in every worker), and the HTTP/1.1
    /// channel (`configuration`; an application built with another `server`, such as
    /// HTTP/2, serves its child channel with ``serve(_:on:logger:group:maxConnections:)``).
    /// `onServerRunning` is not called: there is no server channel of the worker's own.
    ///
    /// - Parameters:
    ///   - app: The application.
    ///   - address: The listener to accept on.
    ///   - configuration: The HTTP/1.1 channel's settings.
    ///   - group: The event loops that run connections. Default: one thread.
    ///   - maxConnections: The most connections open at once. Default: no limit.
    public func run<App: ApplicationProtocol>(
        _ app: App,
        on address: ListenAddress,
        configuration: HTTP1Channel.Configuration = .init(),
        group: (any EventLoopGroup)? = nil,
        maxConnections: Int? = nil
    ) async throws where App.Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
        let responder = try await app.responder
        let prelude = app.processesRunBeforeServerStart
        let (serverName, logger) = (app.configuration.serverName, app.logger)
        try await run(services: app.services, logger: logger) {
            for process in prelude { try await process() }
            try await self.serve(responder: responder, on: address, configuration: configuration, serverName: serverName,
                                 logger: logger, group: group, maxConnections: maxConnections)
        }
    }
}
