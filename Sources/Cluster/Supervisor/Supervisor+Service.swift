public import ServiceLifecycle

/// A ``Supervisor`` is a swift-service-lifecycle `Service`: in a `ServiceGroup`, the group's
/// graceful shutdown drains the workers, and the services listed before the supervisor
/// (a database client the primary uses, say) stop after the workers have exited.
///
/// ```swift
/// let supervisor = Supervisor(primary: primary)
/// let group = ServiceGroup(configuration: .init(
///     services: [.init(service: database), .init(service: supervisor)],
///     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
/// try await group.run()
/// ```
///
/// The group owns the ending signals: give it `gracefulShutdownSignals` (SIGTERM drains).
/// The supervisor still handles its other signals (HUP reloads, TTIN and TTOU scale, USR2
/// upgrades) when ``Supervision/handlesSignals`` is on.
extension Supervisor: Service {
    /// The signals the supervisor handles as a service: those that do not end it.
    public static let handledSignalsAsService: [Signal] = handledSignals.filter {
        ![.terminate, .interrupt, .quit].contains($0)
    }

    /// Supervises the workers until the group shuts down gracefully or the task is
    /// cancelled (either drains them, and this returns once they have exited). Throws the
    /// ``Outcome`` when it is not ``Outcome/stopped``: the workers kept failing to boot (the
    /// group then ends, as for any service that fails), or the supervisor had run already.
    public func run() async throws {
        let outcome = await withGracefulShutdownHandler {
            await supervise(handling: supervision.handlesSignals ? Self.handledSignalsAsService : [])
        } onGracefulShutdown: { [feed] in
            feed.yield(.stop(immediately: false))
        }
        guard outcome == .stopped else { throw outcome }
    }
}

extension Supervisor.Outcome: Error {}
