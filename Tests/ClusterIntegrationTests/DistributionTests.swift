import Foundation
import Testing

extension IntegrationTests {
    /// Every strategy, with real connections on loopback.
    @Suite(.timeLimit(.minutes(3)))
    struct DistributionTests {
        /// Starts the fixture's HTTP server with `workers` workers distributed by `strategy`.
        private func start(_ strategy: String, workers: Int, restart: Bool = false,
                           environment: [String: String] = [:]) async throws -> (SpawnedProcess, port: Int, pids: [Int: Int32]) {
            var variables = ["WORKERS": String(workers), "DISTRIBUTION": strategy]
            if restart { variables["RESTART"] = "1" }
            variables.merge(environment) { $1 }
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: variables)
            let listening = try await primary.waitForEvents(["event": "listening"], count: workers)
            var pids: [Int: Int32] = [:]
            for event in listening {
                let pid = Int32(event["pid"] as! Int)
                primary.adopt(pid)
                pids[event["id"] as! Int] = pid
            }
            return (primary, listening[0]["port"] as! Int, pids)
        }

        @Test(arguments: ["roundRobin", "leastConnections"])
        func tenThousandConnectionsSpreadEvenlyOverFourWorkers(strategy: String) async throws {
            let (primary, port, _) = try await start(strategy, workers: 4)
            defer { primary.stop() }
            var served: [String: Int] = [:]
            for _ in 0..<10_000 {
                let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
                guard case .ok(let worker) = outcome else {
                    Issue.record("a request failed: \(outcome)")
                    return
                }
                served[worker, default: 0] += 1
            }
            let most = served.values.max() ?? 0, least = served.values.min() ?? 0
            #expect(served.count == 4, "connections per worker: \(served)")
            #expect(Double(most) / Double(max(least, 1)) <= 1.2, "connections per worker: \(served)")
        }

        @Test func stickyClientsKeepTheirWorkerAndFewMoveWhenOneDies() async throws {
            let (primary, port, pids) = try await start("sticky", workers: 4)
            defer { primary.stop() }
            let sources = (0..<100).map { "127.0.0.\($0 + 2)" }
            func workerOf(_ source: String) throws -> String {
                let (outcome, _) = try ClientConnection(port: port, source: source).get(keepAlive: false)
                guard case .ok(let worker) = outcome else { throw TestFailure.unexpected("\(source): \(outcome)") }
                return worker
            }
            let before = try sources.map(workerOf)
            #expect(try sources.map(workerOf) == before, "a client reached another worker without cause")
            #expect(Set(before).count == 4, "every worker has clients")

            let victim = before[0]
            kill(pids[Int(victim)!]!, SIGKILL)
            try await primary.waitForEvent(["event": "exit", "id": victim])
            let after = try sources.map(workerOf)
            let moved = zip(before, after).filter { $0 != $1 }.count
            let strayed = zip(before, after).filter { $0 != victim && $0 != $1 }.count
            print("sticky: \(moved) of 100 clients moved after worker \(victim) of 4 died (it had \(before.filter { $0 == victim }.count))")
            #expect(strayed == 0, "clients of living workers moved")
            #expect(moved <= 30)
            #expect(!after.contains(victim))
        }

        /// Keep-alive connections that all landed on one worker (here: the other was
        /// SIGSTOPped while they connected) are spread once it can take some: the primary
        /// asks the busy worker to shed its excess, and those clients reconnect.
        @Test func unevenKeepAliveConnectionsOnASharedSocketSpreadAgain() async throws {
            let (primary, port, pids) = try await start("shared", workers: 2)
            defer { primary.stop() }
            kill(pids[2]!, SIGSTOP)
            defer { kill(pids[2]!, SIGCONT) } // even if connecting fails
            // SIGSTOP returns before every thread has stopped; one still running could
            // accept the connections below.
            try await waitUntilStopped(pids[2]!)
            var clients = try (0..<16).map { _ in try ClientConnection(port: port) }
            let first = clients.map { $0.get(keepAlive: true).0 }
            kill(pids[2]!, SIGCONT)
            #expect(first.allSatisfy { $0 == .ok(worker: "1") }, "with worker 2 stopped, worker 1 took every connection: \(first)")
            // Keep every client busy for up to 20 s; a client whose connection closes reconnects.
            var servedBy: [String: Int] = [:]
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline && (servedBy["2"] ?? 0) < 100 {
                for index in clients.indices {
                    let (outcome, response) = clients[index].get(keepAlive: true)
                    if case .ok(let worker) = outcome { servedBy[worker, default: 0] += 1 }
                    if case .ok = outcome, response?.headers["connection"]?.lowercased() != "close" { continue }
                    clients[index] = try ClientConnection(port: port)
                }
            }
            print("shared keep-alive, uneven at first: responses per worker \(servedBy)")
            #expect((servedBy["2"] ?? 0) >= 100, "worker 2 got no share of the connections: \(servedBy)")
        }

        @Test(arguments: ["shared", "reusePort", "roundRobin", "leastConnections", "sticky"])
        func keepAliveAndConnectionCloseBothWork(strategy: String) async throws {
            let (primary, port, _) = try await start(strategy, workers: 2)
            defer { primary.stop() }
            let connection = try ClientConnection(port: port)
            var workers: Set<String> = []
            for _ in 0..<20 {
                let (outcome, response) = connection.get(keepAlive: true)
                guard case .ok(let worker) = outcome else {
                    Issue.record("keep-alive request failed: \(outcome)")
                    return
                }
                workers.insert(worker)
                #expect(response?.headers["connection"] == nil)
            }
            #expect(workers.count == 1, "one keep-alive connection is served by one worker")
            for _ in 0..<20 {
                let (outcome, response) = try ClientConnection(port: port).get(keepAlive: false)
                guard case .ok = outcome else {
                    Issue.record("connection-close request failed: \(outcome)")
                    return
                }
                #expect(response?.headers["connection"]?.lowercased() == "close")
            }
        }

        @Test(arguments: ["shared", "reusePort", "roundRobin", "leastConnections", "sticky"])
        func noQueuedConnectionIsLostWhenAWorkerIsKilledUnderLoad(strategy: String) async throws {
            try await killAWorkerUnderLoad(strategy, label: strategy)
        }

        /// The runtime accept mode: the handoffs reach the worker's runtime on its channel
        /// (as with `accept(on:)`) instead of its event loop on a link, and the runtime
        /// accepts on a reusePort socket instead of SwiftNIO.
        @Test(arguments: ["roundRobin", "sticky", "reusePort"])
        func theRuntimeAcceptModeLosesNothingEither(strategy: String) async throws {
            try await killAWorkerUnderLoad(strategy, label: "\(strategy), runtime accept mode",
                                           environment: ["ACCEPT_MODE": "runtime"])
        }

        private func killAWorkerUnderLoad(_ strategy: String, label: String, environment: [String: String] = [:]) async throws {
            let (primary, port, pids) = try await start(strategy, workers: 2, restart: true, environment: environment)
            defer { primary.stop() }
            let clients = 8
            let outcomes = try await load(port: port, clients: clients, duration: .seconds(3)) {
                try await Task.sleep(for: .seconds(1))
                kill(pids[1]!, SIGKILL)
                let replacement = try await primary.waitForEvent(["event": "listening", "id": "3"])
                primary.adopt(Int32(replacement["pid"] as! Int))
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            let failures = outcomes.filter { if case .ok = $0.key { false } else { true } }
            print("\(label): \(served) served, failures while a worker was SIGKILLed under load: \(failures)")
            #expect(served > 100)
            #expect(outcomes[.refused] == nil, "connections refused: \(failures)")
            // Only requests in flight on the killed worker may fail: at most one per client.
            #expect(failures.values.reduce(0, +) <= clients, "failures: \(failures)")
        }
    }
}

extension IntegrationTests {
    @Suite(.timeLimit(.minutes(1)))
    struct ConnectionLimitTests {
        @Test func aWorkerAtItsLimitDeclinesAndTheConnectionWaitsForRoom() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: [
                "WORKERS": "2", "DISTRIBUTION": "roundRobin", "MAX_CONNECTIONS": "1",
            ])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            listening.forEach { primary.adopt(Int32($0["pid"] as! Int)) }
            let port = listening[0]["port"] as! Int

            // Each worker holds one keep-alive connection: both are at their limit.
            var held = [try ClientConnection(port: port), try ClientConnection(port: port)]
            let holders = held.map { connection -> String in
                guard case .ok(let worker) = connection.get(keepAlive: true).0 else { return "failed" }
                return worker
            }
            #expect(Set(holders) == ["1", "2"])

            let third = try ClientConnection(port: port, timeout: 1)
            #expect(third.send(keepAlive: false) == nil)
            #expect(third.receive().0 == .timeout, "every worker is at its limit: the connection must wait")
            held.removeFirst() // closes worker holders[0]'s connection, making room there
            let (outcome, _) = third.receive()
            #expect(outcome == .ok(worker: holders[0]), "the waiting connection goes where room was made")
        }

        @Test(arguments: ["shared", "reusePort", "roundRobin", "leastConnections", "sticky"])
        func aConnectionBeyondTheLimitWaitsUntilOneCloses(strategy: String) async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: [
                "WORKERS": "1", "DISTRIBUTION": strategy, "MAX_CONNECTIONS": "1",
            ])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let port = listening["port"] as! Int

            var held: ClientConnection? = try ClientConnection(port: port)
            #expect(held?.get(keepAlive: true).0 == .ok(worker: "1"))
            let waiting = try ClientConnection(port: port, timeout: 1)
            #expect(waiting.send(keepAlive: false) == nil)
            #expect(waiting.receive().0 == .timeout, "\(strategy): the worker is at its limit, so the connection must wait")
            held = nil // closes the held connection
            #expect(waiting.receive().0 == .ok(worker: "1"), "\(strategy): the waiting connection is served once room is made")
        }
    }
}
