public import Logging
public import ServiceLifecycle
public import UnixSignals

extension ClusterWorker {
    /// Runs the app's own `services` (database clients, background jobs...) beside the server
    /// that `server` runs, in one swift-service-lifecycle `ServiceGroup`: the services start
    /// first and the server last; when the primary asks this worker to drain (or the group
    /// shuts down gracefully, or the task is cancelled) the server stops accepting and
    /// returns once its connections have quiesced, and then the services shut down, in
    /// reverse order. Returns when all have.
    ///
    /// ```swift
    /// case .worker(let worker):
    ///     try await worker.run(services: [database, jobs], logger: logger) {
    ///         try await worker.serveHTTP(.tcp(port: 8000)) { request, loop in ... }
    ///     }
    /// ```
    ///
    /// - Parameters:
    ///   - services: The app's services, in the order they start.
    ///   - gracefulShutdownSignals: Signals sent to this worker that drain it. Default:
    ///     SIGTERM (the primary itself drains a worker through its channel).
    ///   - logger: The group's logger.
    ///   - server: Serves until the worker drains: `serve`, `serveHTTP` or a framework adapter.
    public func run(services: [any Service], gracefulShutdownSignals: [UnixSignal] = [.sigterm], logger: Logger,
                    server: @escaping @Sendable () async throws -> Void) async throws {
        let serving = ServerService(worker: self, body: server)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
                + [.init(service: serving, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: gracefulShutdownSignals,
            logger: logger))
        try await group.run()
    }
}

/// The worker's server as the group's last service: a graceful shutdown of the group drains
/// the worker (as the primary's drain does), and its return shuts the group down.
private struct ServerService: Service {
    let worker: ClusterWorker
    let body: @Sendable () async throws -> Void

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await body()
        } onGracefulShutdown: { [worker] in
            worker.disconnect()
        }
    }
}
