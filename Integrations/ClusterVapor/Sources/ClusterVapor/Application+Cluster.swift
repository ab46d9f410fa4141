public import Cluster
public import NIOCore
public import Vapor

extension Application.Servers.Provider {
    /// The application served by this cluster worker on the primary's listener for
    /// `address`, until the worker drains (``ClusterServer``).
    ///
    /// ```swift
    /// case .worker(let worker):
    ///     let app = try await Application.make(.detect())
    ///     try await configure(app)
    ///     app.servers.use(.cluster(worker, on: .tcp(port: 8080)))
    ///     try await app.execute()   // returns once the worker has drained
    ///     try await app.asyncShutdown()
    /// ```
    ///
    /// - Parameters:
    ///   - worker: This process's worker.
    ///   - address: The listener to accept on.
    ///   - group: The event loops that run connections. Default: one thread.
    ///   - maxConnections: The most connections open at once. Default: no limit.
    ///   - maxBodySize: The largest request body answered. Default: the application's
    ///     `routes.defaultMaxBodySize`.
    public static func cluster(_ worker: ClusterWorker, on address: ListenAddress, group: (any EventLoopGroup)? = nil,
                               maxConnections: Int? = nil, maxBodySize: ByteCount? = nil) -> Self {
        .init { application in
            let server = ClusterServer(application: application, worker: worker, address: address, group: group,
                                       maxConnections: maxConnections, maxBodySize: maxBodySize)
            // One server for the application's lifetime: Vapor asks for `app.server` more than once.
            application.servers.use { _ in server }
        }
    }
}

extension ClusterWorker {
    /// Runs a Vapor application as this worker: serves it on the primary's listener for
    /// `address` until the primary says drain, then shuts the application down. The
    /// application is the one you would run alone: configure it, then call this instead
    /// of `app.execute()`.
    ///
    /// ```swift
    /// case .worker(let worker):
    ///     let app = try await Application.make(.detect())
    ///     try await configure(app)
    ///     try await worker.run(app, on: .tcp(port: 8080))
    /// ```
    ///
    /// Vapor's lifecycle runs as usual: `app.execute()` boots the application and runs its
    /// command (`serve` unless the arguments name another), whose server is a
    /// ``ClusterServer``. On drain the worker stops accepting, answers what is in flight
    /// (`Connection: close`), closes idle connections, and then `app.asyncShutdown()` runs
    /// the application's shutdown handlers. SIGTERM or SIGINT sent to the worker itself
    /// drain it too (Vapor's `serve` command catches them): the worker leaves the cluster,
    /// and the handlers shut down once the server has drained (with `app.execute()` and
    /// `app.asyncShutdown()` called by hand, Vapor's order holds there: the handlers first).
    ///
    /// - Parameters:
    ///   - app: The application, configured.
    ///   - address: The listener to accept on.
    ///   - group: The event loops that run connections. Default: one thread, since a
    ///     cluster runs one worker per core.
    ///   - maxConnections: The most connections open at once. Default: no limit.
    ///   - maxBodySize: The largest request body answered. Default: the application's
    ///     `routes.defaultMaxBodySize`.
    public func run(_ app: Application, on address: ListenAddress, group: (any EventLoopGroup)? = nil,
                    maxConnections: Int? = nil, maxBodySize: ByteCount? = nil) async throws {
        app.servers.use(.cluster(self, on: address, group: group, maxConnections: maxConnections, maxBodySize: maxBodySize))
        do {
            try await app.execute()
            // A SIGTERM or SIGINT sent to this worker ends `execute` before the server has
            // drained, and `asyncShutdown` runs the lifecycle handlers' shutdown before the
            // server's: drain first, so they stop after the last response.
            await (app.server as? ClusterServer)?.shutdown()
        } catch {
            try? await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }
}
