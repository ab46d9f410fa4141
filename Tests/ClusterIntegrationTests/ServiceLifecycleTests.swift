import Foundation
import Testing

extension IntegrationTests {
    /// The supervisor as a swift-service-lifecycle `Service`, and cancellation, with real
    /// processes and signals: the fixture's supervised primary (`AS_SERVICE=1` puts it in a
    /// `ServiceGroup` after a "recorder" service).
    @Suite(.timeLimit(.minutes(2)))
    struct ServiceLifecycleTests {
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
            // Each worker says so when it has drained, just before it exits 0.
            _ = try await primary.waitForEvents(["event": "served", "cancelled": "no"], count: 2)
            #expect(primary.events(["event": "exit"]).allSatisfy { $0["code"] as? Int == 0 })
            let recorder = try #require(primary.events(["event": "service", "state": "stopped"]).first)
            #expect(recorder["children"] as? Int == 0,
                    "the group stops the services in reverse order: the workers are gone before the recorder stops: \(recorder)")
            #expect(primary.events(["event": "outcome"]).first?["code"] as? Int == 0)
        }

        @Test func cancellingTheSupervisingTaskDrainsTheWorkersAndASecondRunIsRefused() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "2"])
            defer { primary.stop() }
            _ = try await primary.waitForEvents(["event": "listening"], count: 2)
            primary.send("cancel")
            let again = try await primary.waitForEvent(["event": "again"])
            #expect((again["outcome"] as? String)?.contains("has run already") == true, "\(again)")
            _ = try await primary.waitForEvents(["event": "served", "cancelled": "no"], count: 2) // both drained
            #expect(primary.events(["event": "exit"]).allSatisfy { $0["code"] as? Int == 0 })
            #expect(try await primary.waitForExit() == 0)
            #expect(primary.events(["event": "outcome"]).first?["outcome"] as? String == "stopped")
        }
    

        @Test func aWorkersOwnServicesRunBesideItsServerAndStopAfterItsDrain() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "2", "WORKER_SERVICES": "1"])
            defer { primary.stop() }
            let port = try await primary.waitForEvents(["event": "listening"], count: 2)[0]["port"] as! Int
            _ = try await primary.waitForEvents(["event": "service", "state": "running"], count: 2)
            let inFlight = Task.detached { try HTTP.get(port: port, path: "/slow?ms=1000") }
            let serving = try await primary.waitForEvent(["event": "request", "path": "/slow"])
            primary.send("stop")
            #expect(try await inFlight.value.status == 200, "the request in flight is answered during the drain")
            let stopped = try await primary.waitForEvents(["event": "service", "state": "stopped"], count: 2)
            #expect(Set(stopped.compactMap { $0["name"] as? String }) == ["worker 1", "worker 2"])
            #expect(try await primary.waitForExit() == 0)
            _ = try await primary.waitForEvents(["event": "served", "cancelled": "no"], count: 2)
            #expect(primary.events(["event": "exit"]).allSatisfy { $0["code"] as? Int == 0 })
            // In the worker that served the request: its service stopped after the server
            // returned from its drain, and before the worker's main returned.
            let id = try #require(serving["worker"] as? Int)
            let lines = primary.output
            let stop = try #require(lines.firstIndex { $0.contains("\"name\":\"worker \(id)\"") && $0.contains("\"stopped\"") })
            let served = try #require(lines.firstIndex { line in
                SpawnedProcess.json(line).map { $0["event"] as? String == "served" && $0["id"] as? Int == id } ?? false
            })
            #expect(stop < served)
        }

        @Test func cancellingAWorkersServingTaskQuiescesAndReturns() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "1"])
            defer { primary.stop() }
            let port = try await primary.waitForEvents(["event": "listening"], count: 1)[0]["port"] as! Int
            #expect(try HTTP.get(port: port, path: "/cancel").status == 200)
            let served = try await primary.waitForEvent(["event": "served", "cancelled": "yes"])
            let id = try #require(served["id"] as? Int)
            let exit = try await primary.waitForEvent(["event": "exit", "id": String(id)])
            #expect(exit["code"] as? Int == 0, "serve returned after quiescing, and so did main: \(exit)")
        }
    }
}
