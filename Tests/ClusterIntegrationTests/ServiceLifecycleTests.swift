import Foundation
import Testing

extension IntegrationTests {
    /// The supervisor as a swift-service-lifecycle `Service`, and cancellation, with real
    /// processes and signals: the fixture's supervised primary (`AS_SERVICE=1` puts it in a
    /// `ServiceGroup` after a "recorder" service).
    @Suite(.timeLimit(.minutes(2)))
    struct ServiceLifecycleTests {
        /// The index of the first output line that is an event with `fields`.
        private func line(_ process: SpawnedProcess, _ fields: [String: String], last: Bool = false) -> Int? {
            let lines = process.output
            let matches = lines.indices.filter { index in
                SpawnedProcess.json(lines[index]).map { SpawnedProcess.matches($0, fields) } ?? false
            }
            return last ? matches.last : matches.first
        }

        @Test func sigtermShutsTheGroupDownInOrderTheWorkersDrainThenTheServiceBeforeThem() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "2", "AS_SERVICE": "1"])
            defer { primary.stop() }
            let port = try await primary.waitForEvents(["event": "listening"], count: 2)[0]["port"] as! Int
            _ = try await primary.waitForEvent(["event": "service", "state": "running"])
            let inFlight = Task.detached { try HTTP.get(port: port, path: "/slow?ms=1500") }
            _ = try await primary.waitForEvent(["event": "request", "path": "/slow"]) // a worker is serving it
            primary.signal(SIGTERM)
            #expect(try await inFlight.value.status == 200, "the request in flight is answered during the drain")
            #expect(try await primary.waitForExit() == 0)
            let exits = primary.events(["event": "exit"])
            #expect(exits.count == 2 && exits.allSatisfy { $0["code"] as? Int == 0 }, "both workers drained and exited 0: \(exits)")
            let lastExit = try #require(line(primary, ["event": "exit"], last: true))
            let recorderStopped = try #require(line(primary, ["event": "service", "state": "stopped"]))
            #expect(lastExit < recorderStopped, "the group stops the services in reverse order: the workers are gone before the recorder stops")
            #expect(primary.events(["event": "outcome"]).first?["code"] as? Int == 0)
        }

        @Test func cancellingTheSupervisingTaskDrainsTheWorkersAndASecondRunIsRefused() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "2"])
            defer { primary.stop() }
            _ = try await primary.waitForEvents(["event": "listening"], count: 2)
            primary.send("cancel")
            let again = try await primary.waitForEvent(["event": "again"])
            #expect((again["outcome"] as? String)?.contains("has run already") == true, "\(again)")
            let exits = primary.events(["event": "exit"])
            #expect(exits.count == 2 && exits.allSatisfy { $0["code"] as? Int == 0 }, "cancellation drained both workers: \(exits)")
            #expect(try await primary.waitForExit() == 0)
            #expect(primary.events(["event": "outcome"]).first?["outcome"] as? String == "stopped")
        }
    }
}
