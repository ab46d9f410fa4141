// AS_SERVICE=1: the supervisor as one service of a swift-service-lifecycle ServiceGroup,
// after a "recorder" service that stands for what a primary keeps beside its workers (a
// database client, say). SIGTERM shuts the group down gracefully, in reverse order: the
// supervisor drains its workers first, then the recorder stops; each prints an event (the
// recorder's says how many child processes the primary still has).
import Cluster
import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// A service that runs until its group shuts down gracefully and says when it stops.
struct Recorder: Service {
    var name = "recorder"

    func run() async throws {
        emit(["event": "service", "name": name, "state": "running", "pid": Int(getpid())])
        try? await gracefulShutdown()
        emit(["event": "service", "name": name, "state": "stopped", "pid": Int(getpid()), "children": childCount()])
    }

    /// How many child processes this process has now (every thread's), from /proc.
    private func childCount() -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.reduce(0) { count, task in
            let list = (try? String(contentsOfFile: "/proc/self/task/\(task)/children", encoding: .utf8)) ?? ""
            return count + list.split(separator: " ").count
        }
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
