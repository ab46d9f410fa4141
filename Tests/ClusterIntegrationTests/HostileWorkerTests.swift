import Foundation
import Testing

extension IntegrationTests {
    /// A worker whose code is an attacker's (`Programs/hostile_worker.py`, speaking the
    /// channel protocol past the runtime) costs that worker, never the primary: the primary
    /// stays up, keeps serving through the other worker, and holds no descriptor for it.
    @Suite(.timeLimit(.minutes(3)))
    struct HostileWorkerTests {
        private static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Programs/hostile_worker.py").path

        /// Two workers, worker 1 hostile with `attack`, a replacement for any that dies.
        private func start(_ attack: String, distribution: String = "leastConnections") async throws -> (SpawnedProcess, port: Int) {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: [
                "WORKERS": "2", "RESTART": "1", "DISTRIBUTION": distribution,
                "HOSTILE": attack, "HOSTILE_ID": "1", "HOSTILE_SCRIPT": Self.script,
            ])
            let honest = try await primary.waitForEvent(["event": "listening", "id": "2"])
            primary.adopt(Int32(honest["pid"] as! Int))
            let hostile = try await primary.waitForEvent(["event": "started", "id": "1"])
            primary.adopt(Int32(hostile["pid"] as! Int))
            return (primary, honest["port"] as! Int)
        }

        /// The primary answers through a worker that is not the liar.
        private func expectServing(_ port: Int) throws {
            let response = try HTTP.get(port: port)
            #expect(response.status == 200)
        }

        /// The liar is SIGKILLed with a log line naming what it did, and replaced.
        private func expectCaught(_ primary: SpawnedProcess, saying reason: String) async throws {
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["signal"] as? String == "SIGKILL")
            #expect(primary.output.contains { $0.contains("worker 1") && $0.contains(reason) && $0.contains("killing it") },
                    "no log line says worker 1 was killed for '\(reason)'")
            try await primary.waitForEvent(["event": "listening", "id": "3"])
        }

        @Test func aHeartbeatWithAnAbsurdFigureKillsTheLiarNotThePrimary() async throws {
            let (primary, port) = try await start("rss")
            defer { primary.stop() }
            try await expectCaught(primary, saying: "rss = 9223372036854775807")
            try expectServing(port)
        }

        /// A frame on a handoff link that the link does not carry: the worker, alive and
        /// holding connections it may yet read, is killed before they go elsewhere.
        @Test func aBadFrameOnAHandoffLinkKillsTheLiar() async throws {
            let (primary, port) = try await start("link-garbage", distribution: "leastConnections")
            defer { primary.stop() }
            try await expectCaught(primary, saying: "on its handoff link: worker 1 sent a message frame on a handoff link")
            try expectServing(port)
        }

        /// Descriptors where none may be: on frames that announce none, on a runtime
        /// message that carries none, or a second handoff link for one listener. Each time
        /// 300 tries, if the primary let the liar go on.
        @Test(arguments: [
            ("unannounced", "leastConnections", "descriptors arrived that no frame announces"),
            ("control-fds", "leastConnections", "'online' with 2 descriptors attached"),
            ("accepting-twice", "roundRobin", "asked for connections from listener 0 twice"),
        ])
        func descriptorsWhereNoneMayBeAreClosedAndTheLiarKilled(attack: String, distribution: String, reason: String) async throws {
            let (primary, port) = try await start(attack, distribution: distribution)
            defer { primary.stop() }
            let before = descriptors(of: primary.pid).count
            try await expectCaught(primary, saying: reason)
            try expectServing(port)
            #expect(descriptors(of: primary.pid).count <= before + 4, "the primary kept descriptors the liar sent")
        }

        @Test func descriptorsOnMessagesTheAppIgnoresAreClosed() async throws {
            let (primary, port) = try await start("message-fds")
            defer { primary.stop() }
            let before = descriptors(of: primary.pid).count
            let attacked = try await primary.waitForEvent(["event": "attacked"])
            #expect(attacked["sent"] as? Int == 100)
            // The app drops each message unread; its 64 descriptors go with it.
            let deadline = ContinuousClock.now + .seconds(10)
            while descriptors(of: primary.pid).count > before + 4, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(descriptors(of: primary.pid).count <= before + 4, "6,400 descriptors sent; the primary holds \(descriptors(of: primary.pid).count - before) more than before")
            try expectServing(port)
        }

        @Test func aWorkerFloodingAnotherThroughThePrimaryIsHeldBackNotBuffered() async throws {
            let (primary, port) = try await start("forward-flood")
            defer { primary.stop() }
            let before = (residentKilobytes(primary.pid) ?? 0) * 1024
            // It tries to send 20 × 8 MiB to a worker that reads nothing (itself).
            let attacked = try await primary.waitForEvent(["event": "attacked"])
            let sent = attacked["sent"] as? Int ?? -1
            let grown = (residentKilobytes(primary.pid) ?? 0) * 1024 - before
            #expect(sent < 20, "the primary took all 160 MiB: no back-pressure")
            #expect(grown < 48 << 20, "the primary grew by \(grown >> 20) MiB while the liar sent \(sent) × 8 MiB")
            try expectServing(port)
        }

        /// The app's metrics are not the runtime's protocol: batches out of bounds are
        /// dropped, with one warning naming the worker for the whole burst, and it lives.
        @Test func metricsBatchesOutOfBoundsAreDroppedWithOneWarningAndTheWorkerLives() async throws {
            let (primary, port) = try await start("metrics")
            defer { primary.stop() }
            let attacked = try await primary.waitForEvent(["event": "attacked", "sent": "77"])
            let warning = try await primary.waitForLine { $0.contains("metrics batch dropped") }
            #expect(warning.contains("worker 1 ") && warning.contains("slot 0"), "\(warning)")
            try expectServing(port)
            #expect(isRunning(Int32(attacked["pid"] as! Int)), "the worker was not killed for its metrics")
            #expect(primary.events(["event": "exit", "id": "1"]).isEmpty)
            #expect(primary.output.filter { $0.contains("metrics batch dropped") }.count == 1,
                    "77 bad batches within seconds, one warning")
        }

        @Test func aWorkerCannotMakeThePrimaryBindWithoutEnd() async throws {
            let (primary, port) = try await start("listen-flood")
            defer { primary.stop() }
            let before = descriptors(of: primary.pid).count
            // 300 requests, each for a new address, every one answered: the primary binds
            // until it holds 64 (the fixture's own listener and 63 more), and says so once.
            let attacked = try await primary.waitForEvent(["event": "attacked", "sent": "300"])
            #expect(attacked["granted"] as? Int == 63)
            #expect(attacked["refused"] as? Int == 237)
            #expect(primary.output.filter { $0.contains("refused: the primary already holds 64 listeners") }.count == 1)
            #expect(descriptors(of: primary.pid).count <= before + 63 + 2, "the primary bound more listeners than its limit")
            try expectServing(port)
        }
    }
}
