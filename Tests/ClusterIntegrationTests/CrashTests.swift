import Cluster
import Foundation
import Glibc
import Testing

extension IntegrationTests {
    /// A worker's crash loses only the connections it had begun to read: the fixture's
    /// worker that takes a connection from `victim` blocks its event loop right after
    /// taking it, before reading its request, and is then SIGKILLed.
    @Suite(.timeLimit(.minutes(3)))
    struct CrashTests {
        private let victim = "127.0.0.9"

        /// The fixture's HTTP server, 2 workers distributed by `strategy`; the first that
        /// takes a connection from `victim` stalls (no other after it).
        private func start(_ strategy: String, mode: String = "automatic",
                           restart: Bool = false) async throws -> (SpawnedProcess, port: Int, pids: [Int: Int32], mark: String) {
            let mark = FileManager.default.temporaryDirectory.appendingPathComponent("stall-\(UUID().uuidString)").path
            var variables = ["WORKERS": "2", "DISTRIBUTION": strategy, "ACCEPT_MODE": mode, "STALL_CLIENT": victim, "STALL_MARK": mark]
            if restart { variables["RESTART"] = "1" }
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: variables)
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            var pids: [Int: Int32] = [:]
            for event in listening {
                let pid = Int32(event["pid"] as! Int)
                primary.adopt(pid)
                pids[event["id"] as! Int] = pid
            }
            return (primary, listening[0]["port"] as! Int, pids, mark)
        }

        private func stop(_ primary: SpawnedProcess, _ mark: String) {
            primary.stop()
            try? FileManager.default.removeItem(atPath: mark)
        }

        /// Connects from `victim`, sends a request and waits until the worker that took the
        /// connection has stalled; returns the client and that worker's id.
        private func stallOneWorker(_ primary: SpawnedProcess, port: Int) async throws -> (ClientConnection, stalled: Int) {
            let client = try ClientConnection(port: port, source: victim)
            #expect(client.send(keepAlive: false) == nil)
            let stalled = try await primary.waitForEvent(["event": "stalled"])
            return (client, stalled["id"] as! Int)
        }

        /// Clients that each send a request now, from sources of their own (sticky spreads
        /// them over both slots).
        private func clients(_ count: Int, port: Int) throws -> [ClientConnection] {
            try (0..<count).map { index in
                let client = try ClientConnection(port: port, source: "127.0.0.\(20 + index)")
                #expect(client.send(keepAlive: false) == nil)
                return client
            }
        }

        /// The primary holds each handed-off connection until its worker has read it: the
        /// one the stalled worker took (and answered for, as taken) and those waiting in its
        /// handoff link are all answered by the other worker once it is killed. The same
        /// with the handoffs on the worker's channel (`runtime`).
        @Test(arguments: ["roundRobin", "leastConnections", "sticky"], ["automatic", "runtime"])
        func connectionsAKilledWorkerNeverReadAreAnsweredByAnother(strategy: String, mode: String) async throws {
            let (primary, port, pids, mark) = try await start(strategy, mode: mode)
            defer { stop(primary, mark) }
            let (stuck, stalled) = try await stallOneWorker(primary, port: port)
            let others = try clients(8, port: port)
            kill(pids[stalled]!, SIGKILL)
            try await primary.waitForEvent(["event": "exit", "id": "\(stalled)"])
            let survivor = pids.keys.first { $0 != stalled }!
            #expect(stuck.receive().0 == .ok(worker: "\(survivor)"), "the connection the killed worker took and never read")
            for client in others { #expect(client.receive().0 == .ok(worker: "\(survivor)")) }
        }

        /// On a shared socket the stalled worker accepts only a few connections ahead of
        /// its reads (`Acceptor.unreadLimit`, its first one included); the rest stay in the
        /// kernel's queue, and the other worker (stopped meanwhile, so that only the queue
        /// can keep them) serves them once the stalled one is killed.
        @Test func onASharedSocketWhatTheKilledWorkerLeftQueuedIsServed() async throws {
            let (primary, port, pids, mark) = try await start("shared")
            defer { stop(primary, mark) }
            let (_, stalled) = try await stallOneWorker(primary, port: port)
            let other = pids.first { $0.key != stalled }!
            kill(other.value, SIGSTOP)
            defer { kill(other.value, SIGCONT) } // even if connecting fails
            try await waitUntilStopped(other.value)
            let sockets = { descriptors(of: pids[stalled]!).values.filter { $0.hasPrefix("socket:") }.count }
            let before = sockets()
            let queued = try clients(8, port: port)
            // Its runtime thread accepts while its event loop is stuck: let it take what it will.
            let deadline = ContinuousClock.now + .seconds(10)
            while sockets() < before + Acceptor.unreadLimit - 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            kill(pids[stalled]!, SIGKILL)
            try await primary.waitForEvent(["event": "exit", "id": "\(stalled)"])
            kill(other.value, SIGCONT)
            let outcomes = queued.map { $0.receive().0 }
            let served = outcomes.filter { $0 == .ok(worker: "\(other.key)") }.count
            #expect(served >= queued.count - (Acceptor.unreadLimit - 1), "outcomes: \(outcomes)")
        }

        /// On a reusePort socket the stalled worker's slot keeps its queue: the connections
        /// the kernel gave that slot after the stall are served by the slot's next worker.
        @Test func onAReusePortSocketWhatTheKilledWorkerLeftQueuedIsServed() async throws {
            let (primary, port, pids, mark) = try await start("reusePort", restart: true)
            defer { stop(primary, mark) }
            let (_, stalled) = try await stallOneWorker(primary, port: port)
            let queued = try clients(8, port: port)
            kill(pids[stalled]!, SIGKILL)
            try await primary.waitForEvent(["event": "exit", "id": "\(stalled)"])
            let replacement = try await primary.waitForEvent(["event": "listening", "id": "3"])
            primary.adopt(Int32(replacement["pid"] as! Int))
            let outcomes = queued.map { $0.receive().0 }
            #expect(outcomes.allSatisfy { if case .ok = $0 { true } else { false } }, "outcomes: \(outcomes)")
        }
    }
}
