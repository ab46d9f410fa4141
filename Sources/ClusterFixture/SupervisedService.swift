// AS_SERVICE=1: the supervisor as one service of a swift-service-lifecycle ServiceGroup,
// after a "recorder" service that stands for what a primary keeps beside its workers (a
// database client, say). SIGTERM shuts the group down gracefully, in reverse order: the
// supervisor drains its workers first, then the recorder stops; each prints an event.
import Cluster
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// A service that runs until the group shuts down gracefully and says when it stops.
private struct Recorder: Service {
    func run() async throws {
        emit(["event": "service", "name": "recorder", "state": "running"])
        try? await gracefulShutdown()
        emit(["event": "service", "name": "recorder", "state": "stopped"])
    }
}

func superviseAsService(_ supervisor: Supervisor) async throws -> Never {
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(
        services: [.init(service: Recorder()), .init(service: supervisor)],
        gracefulShutdownSignals: [.sigterm],
        logger: Logger(label: "fixture.group")))
    do {
        try await group.run()
        emit(["event": "outcome", "outcome": "stopped", "code": 0])
        exit(0)
    } catch {
        emit(["event": "outcome", "outcome": "\(error)", "code": 1])
        exit(1)
    }
}
