// `turns`: two workers in one reusePort slot, as a slot's worker and its replacement are
// during a reload. The second asks for its turn once the first serves, and may accept
// only once the first has stopped (commands on stdin: `kill 1 SIGKILL`, ...).

import Cluster
import Foundation

func runTurnsPrimary(_ primary: Primary, _ events: ClusterEvents) async throws {
    try await primary.listen(.tcp(host: "0.0.0.0", port: Int(environment["PORT"] ?? "0") ?? 0), distribution: .reusePort)
    Thread.detachNewThread { readCommands(primary) }
    _ = try await primary.fork(slot: 0)
    for await event in events {
        emit(describe(event))
        if case .listening(let worker, _) = event, worker.id == 1 {
            _ = try await primary.fork(slot: 0)
        }
    }
}
