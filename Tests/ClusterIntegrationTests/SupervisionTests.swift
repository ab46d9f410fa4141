import Foundation
import Testing

extension IntegrationTests {
    /// The supervisor with real processes, real load on loopback and real signals,
    /// Puma-style: every failed request is counted and classified.
    @Suite(.timeLimit(.minutes(3)))
    struct SupervisionTests {
        /// Starts the fixture's supervised primary and waits until `workers` workers listen.
        private func start(workers: Int = 2, _ environment: [String: String] = [:]) async throws -> (SpawnedProcess, port: Int) {
            var variables = ["WORKERS": String(workers)]
            variables.merge(environment) { $1 }
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: variables)
            let listening = try await primary.waitForEvents(["event": "listening"], count: workers)
            return (primary, listening[0]["port"] as! Int)
        }

        /// "reusePort" or "reusePort runtime": the distribution, and the accept mode if not the default.
        private func settings(_ strategy: String) -> [String: String] {
            let words = strategy.split(separator: " ").map(String.init)
            return ["DISTRIBUTION": words[0], "ACCEPT_MODE": words.count > 1 ? words[1] : "automatic"]
        }

        private func failures(_ outcomes: [Outcome: Int]) -> [Outcome: Int] {
            outcomes.filter { if case .ok = $0.key { false } else { true } }
        }

        /// Each strategy, with the default accept mode (for reusePort: SwiftNIO accepts, and a
        /// slot's old worker hands its turn to its replacement) and with the runtime's.
        @Test(arguments: [("shared", false), ("shared", true), ("leastConnections", false), ("reusePort", false),
                          ("reusePort", true), ("reusePort runtime", false), ("leastConnections runtime", false)])
        func threeRollingReloadsUnderLoadFailNothing(strategy: String, keepAlive: Bool) async throws {
            let (primary, port) = try await start(settings(strategy))
            defer { primary.stop() }
            let outcomes = try await load(port: port, clients: 8, duration: .seconds(5), keepAlive: keepAlive) {
                try await Task.sleep(for: .milliseconds(500))
                // The second reload asked for during the first is queued, not interleaved.
                primary.send("reload")
                primary.send("reload")
                try await primary.waitForLine { $0.contains("reload complete: every worker is generation 3") }
                primary.send("reload")
                try await primary.waitForLine { $0.contains("reload complete: every worker is generation 4") }
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            print("\(strategy) \(keepAlive ? "keep-alive" : "close"): 3 rolling reloads under load: \(served) served, failures \(failures(outcomes))")
            #expect(served > 500)
            #expect(failures(outcomes).isEmpty, "failed requests: \(failures(outcomes))")
            #expect(primary.output.contains { $0.contains("reload requested during a reload") })
            #expect(primary.events(["event": "exit"]).allSatisfy { ($0["code"] as? Int) == 0 }, "every old worker drained and exited 0")
            #expect(primary.events(["event": "fork"]).count == 2 + 3 * 2)
        }

        @Test(arguments: [("shared", false), ("shared", true), ("leastConnections", false), ("reusePort", false),
                          ("reusePort", true), ("reusePort runtime", false)])
        func aHotUpgradeUnderLoadFailsNothing(strategy: String, keepAlive: Bool) async throws {
            let (primary, port) = try await start(settings(strategy))
            defer { primary.stop() }
            var successor: Int32 = 0
            let outcomes = try await load(port: port, clients: 8, duration: .seconds(4), keepAlive: keepAlive) {
                try await Task.sleep(for: .milliseconds(500))
                primary.signal(SIGUSR2)
                let started = try await primary.waitForEvents(["event": "supervising"], count: 2)
                successor = Int32(started[1]["pid"] as! Int)
                primary.adopt(successor) // its workers die with it (PR_SET_PDEATHSIG)
                #expect(try await primary.waitForExit(timeout: .seconds(10)) == 0, "the old primary drains and exits 0")
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            print("\(strategy) \(keepAlive ? "keep-alive" : "close"): hot upgrade under load: \(served) served, failures \(failures(outcomes))")
            if !failures(outcomes).isEmpty {
                // What the primaries said about it: warnings, errors and lifecycle notices.
                for line in primary.output where [" warning ", " error ", " notice "].contains(where: line.contains) { print("primary: \(line)") }
            }
            #expect(served > 500)
            // Known gap (Sources/Cluster/Cluster.docc/SupervisionInDepth.md, "Hot upgrade"): with the primary accepting
            // (leastConnections), a CPU-saturated machine has seen a hot upgrade lose 1 to 5
            // connections, in about one run of ten; the path that drops them is not found
            // yet. Bounded here (one per client) so the check stays real; zero elsewhere.
            let tolerated = strategy == "leastConnections" ? 8 : 0
            #expect(failures(outcomes).values.reduce(0, +) <= tolerated, "failed requests: \(failures(outcomes))")
            #expect(isRunning(successor), "the new primary carries on")
            #expect(primary.events(["event": "exit"]).allSatisfy { ($0["code"] as? Int) == 0 },
                    "every worker of either primary exited 0: \(primary.events(["event": "exit"]))")
            let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
            guard case .ok = outcome else {
                Issue.record("the new primary does not serve: \(outcome)")
                return
            }
        }

        @Test func killingAWorkerEverySecondRefusesNothing() async throws {
            // Each victim lived about 2 s: with the default resetAfter (30 s) each slot's
            // backoff would grow to 1 s, which is not what this measures. A 1 s reset makes
            // each kill a restart at once.
            let (primary, port) = try await start(["RESET_AFTER_MS": "1000"])
            defer { primary.stop() }
            let kills = 10
            let outcomes = try await load(port: port, clients: 8, duration: .seconds(Double(kills) + 1.5)) {
                for _ in 0..<kills {
                    try await Task.sleep(for: .seconds(1))
                    // The oldest worker still running.
                    let exited = Set(primary.events(["event": "exit"]).map { $0["id"] as! Int })
                    guard let victim = primary.events(["event": "listening"]).first(where: { !exited.contains($0["id"] as! Int) }) else { continue }
                    kill(Int32(victim["pid"] as! Int), SIGKILL)
                }
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            let failed = failures(outcomes).values.reduce(0, +)
            let killed = primary.events(["event": "exit", "signal": "SIGKILL"]).count
            print("a worker SIGKILLed every second for \(kills) s under load: \(served) served, \(killed) killed, failures \(failures(outcomes)), \(Double(failed) / Double(max(killed, 1))) per kill")
            #expect(killed >= kills - 1)
            #expect(outcomes[.refused] == nil, "connections refused: \(failures(outcomes))")
            // At most the requests in flight on the killed worker: one per client.
            #expect(failed <= killed * 8, "failures: \(failures(outcomes))")
            #expect(served > 1000)
        }

        /// A client that makes the only worker trap as soon as it is up, twelve times, with the
        /// default restart policy: each trap costs that worker (restarted within 1 s), never
        /// the service. Twelve deaths soon after ready were once a crash loop that stopped the
        /// cluster at the sixth.
        @Test func aRequestThatTrapsTheOnlyWorkerTwelveTimesInARowNeverStopsTheCluster() async throws {
            let (primary, port) = try await start(workers: 1)
            defer { primary.stop() }
            let traps = 12
            for trap in 1...traps {
                _ = try? HTTP.get(port: port, path: "/crash", timeout: .seconds(5))
                _ = try await primary.waitForEvents(["event": "exit"], count: trap)
                _ = try await primary.waitForEvents(["event": "listening"], count: trap + 1, timeout: .seconds(20))
            }
            #expect(try HTTP.get(port: port).status == 200, "the thirteenth worker serves")
            #expect(isRunning(primary.pid), "the primary is still up")
            let stopping = primary.output.filter { $0.contains("stopping the cluster") || $0.contains("crash loop") }
            #expect(stopping.isEmpty, "\(stopping)")
            let restarts = primary.output.filter { $0.contains("after it was ready") && $0.contains("restarting slot 0 in") }
            #expect(restarts.count == traps, "each trap logged with its restart delay: \(restarts)")
            print("\(traps) traps of the only worker: \(restarts.last ?? "no restart line")")
        }

        @Test func aWorkerThatCannotStartStopsThePrimaryWithOneMessage() async throws {
            let failFile = FileManager.default.temporaryDirectory.appendingPathComponent("fail-\(UUID())").path
            try "exit 3".write(toFile: failFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: failFile) }
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: [
                "WORKERS": "1", "FAIL_FILE": failFile, "RESTART_DELAY_MS": "1000", "MAX_BOOT_FAILURES": "3",
            ])
            defer { primary.stop() }
            try await primary.waitForEvent(["event": "exit", "code": "3"])
            // While it backs off (at once, then 1 s, then 2 s), the primary sleeps.
            let before = try #require(cpuSeconds(of: primary.pid))
            let start = ContinuousClock.now
            try await Task.sleep(for: .seconds(1.5))
            let after = try #require(cpuSeconds(of: primary.pid))
            let share = (after - before) / (start.duration(to: .now) / .seconds(1))
            print("primary CPU while backing off: \(Int(share * 1000) / 10)%")
            #expect(share < 0.05)
            let code = try await primary.waitForExit(timeout: .seconds(10))
            #expect(code == 1)
            let message = try #require(primary.output.first { $0.contains("failed to boot") })
            #expect(message.contains("exit code 3") && message.contains("4 workers failed to boot within 30 s"), "\(message)")
            // The supervisor logs each exit before it decides (the event printer may not
            // print the last one before the primary exits).
            let exits = primary.output.filter { $0.contains("cluster.supervisor") && $0.contains("exited (exit code 3)") }
            #expect(exits.count == 4, "\(exits)")
        }

        @Test func exitCode78MeansCannotBootAndStopsAtOnce() async throws {
            let failFile = FileManager.default.temporaryDirectory.appendingPathComponent("fail-\(UUID())").path
            try "exit 78".write(toFile: failFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: failFile) }
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "2", "FAIL_FILE": failFile])
            defer { primary.stop() }
            #expect(try await primary.waitForExit(timeout: .seconds(10)) == 1)
            #expect(primary.output.contains { $0.contains("exited with code 78: it cannot boot") })
            #expect(primary.events(["event": "fork"]).count == 2, "no restart after a worker said it cannot boot")
        }

        @Test func aHandlerStuckInAnInfiniteLoopIsReplacedWithinTheTimeoutPlusASecond() async throws {
            // Without the runtime's backtracer: SIGKILL 300 ms after SIGABRT would cut it
            // short and leave its helper process behind.
            let (primary, port) = try await start(workers: 1, ["WATCHDOG_MS": "1000", "KILL_AFTER_MS": "300",
                                                               "SWIFT_BACKTRACE": "enable=no"])
            defer { primary.stop() }
            let hung = try ClientConnection(port: port, timeout: 5)
            let start = ContinuousClock.now
            #expect(hung.send("/spin", keepAlive: false) == nil)
            let replacement = try await primary.waitForEvent(["event": "listening", "id": "2"], timeout: .seconds(5))
            let elapsed = start.duration(to: .now)
            print("a blocked event loop: replacement listening after \(elapsed) (watchdog timeout 1 s)")
            #expect(elapsed < .seconds(2))
            let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
            #expect(outcome == .ok(worker: "2"))
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(["SIGABRT", "SIGKILL"].contains(exit["signal"] as? String), "\(exit)")
            #expect(primary.output.contains { $0.contains("worker 1") && $0.contains("is hung: its event loop has been blocked") })
            _ = replacement
        }

        @Test func aRouteThatKeepsAllocatingIsRecycledAtTheMemoryLimit() async throws {
            let (primary, port) = try await start(workers: 1, ["MAX_RSS_MB": "160"])
            defer { primary.stop() }
            for _ in 0..<6 {
                let (outcome, _) = try ClientConnection(port: port).get("/leak?mb=32", keepAlive: false)
                guard case .ok = outcome else { break } // recycled while we were still leaking
            }
            let replacement = try await primary.waitForEvent(["event": "listening", "id": "2"], timeout: .seconds(10))
            #expect(replacement["slot"] as? Int == 0)
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 0 && exit["exitedAfterDisconnect"] as? Bool == true, "recycled by draining: \(exit)")
            #expect(primary.output.contains { $0.contains("recycling worker 1") && $0.contains("resident memory") })
            let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
            #expect(outcome == .ok(worker: "2"))
        }

        @Test func sigtermLetsSlowRequestsFinishAndExitsZero() async throws {
            let (primary, port) = try await start()
            defer { primary.stop() }
            let connections = try (0..<4).map { _ in try ClientConnection(port: port, timeout: 10) }
            for connection in connections { #expect(connection.send("/slow?ms=1500", keepAlive: true) == nil) }
            try await Task.sleep(for: .milliseconds(300))
            primary.signal(SIGTERM)
            for connection in connections {
                let (outcome, response) = connection.receive()
                guard case .ok = outcome else {
                    Issue.record("a request in flight at SIGTERM failed: \(outcome)")
                    continue
                }
                #expect(response?.headers["connection"]?.lowercased() == "close")
            }
            #expect(try await primary.waitForExit(timeout: .seconds(10)) == 0)
            #expect(primary.events(["event": "exit"]).allSatisfy { ($0["code"] as? Int) == 0 })
        }

        @Test(arguments: [[SIGINT, SIGINT], [SIGQUIT]])
        func aSecondSigintOrSigquitStopsAtOnce(signals: [Int32]) async throws {
            let (primary, port) = try await start()
            defer { primary.stop() }
            let slow = try ClientConnection(port: port, timeout: 10)
            #expect(slow.send("/slow?ms=5000", keepAlive: false) == nil)
            try await Task.sleep(for: .milliseconds(200))
            let start = ContinuousClock.now
            for signal in signals {
                primary.signal(signal)
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try await primary.waitForExit(timeout: .seconds(4)) == 0)
            #expect(start.duration(to: .now) < .seconds(2), "stopped without waiting for the 5 s request")
            if case .ok = slow.receive().0 { Issue.record("the 5 s request was answered: the workers were not killed at once") }
        }

        @Test func aReplacementThatIsNeverReadyAbortsTheReloadAndTheOldWorkersServe() async throws {
            let failFile = FileManager.default.temporaryDirectory.appendingPathComponent("fail-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: failFile) }
            let (primary, port) = try await start(["FAIL_FILE": failFile, "READY_TIMEOUT_MS": "1000"])
            defer { primary.stop() }
            try "hang".write(toFile: failFile, atomically: true, encoding: .utf8) // the deploy is broken
            primary.send("reload")
            try await primary.waitForLine { $0.contains("reload failed: worker 3 (pid") && $0.contains("generation 1 keeps serving") }
            let killed = try await primary.waitForEvent(["event": "exit", "id": "3"])
            #expect(killed["signal"] as? String == "SIGKILL")
            var served: Set<String> = []
            for _ in 0..<20 {
                let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
                if case .ok(let worker) = outcome { served.insert(worker) } else { Issue.record("\(outcome)") }
            }
            #expect(served.isSubset(of: ["1", "2"]) && !served.isEmpty, "the old generation keeps serving: \(served)")
            #expect(primary.events(["event": "exit", "id": "1"]).isEmpty && primary.events(["event": "exit", "id": "2"]).isEmpty)
        }

        @Test func explicitReadinessHoldsTheOldWorkerUntilTheNewOneSaysReady() async throws {
            let (primary, _) = try await start(workers: 1, ["READINESS": "explicit", "READY_DELAY_MS": "800"])
            defer { primary.stop() }
            try await primary.waitForEvent(["event": "ready", "id": "1"])
            primary.send("reload")
            try await primary.waitForEvent(["event": "listening", "id": "2"])
            let listeningAt = ContinuousClock.now
            try await primary.waitForEvent(["event": "disconnect", "id": "1"])
            let waited = listeningAt.duration(to: .now)
            #expect(waited >= .milliseconds(600), "worker 1 retired \(waited) after worker 2 listened, before it said ready")
            #expect(primary.events(["event": "ready", "id": "2"]).count == 1)
        }

        @Test func sigttinAndSigttouScaleAndScalingDownDrainsTheOldest() async throws {
            let (primary, _) = try await start()
            defer { primary.stop() }
            primary.signal(SIGTTIN)
            try await primary.waitForEvent(["event": "listening", "id": "3"])
            primary.signal(SIGTTOU)
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 0 && exit["exitedAfterDisconnect"] as? Bool == true)
            primary.send("scale 1")
            try await primary.waitForEvent(["event": "exit", "id": "2"])
            try await Task.sleep(for: .milliseconds(300))
            #expect(primary.events(["event": "fork"]).count == 3, "no restart after scaling down")
        }

        @Test func scalingAReusePortListenerDownLeavesNoSocketWithoutAWorker() async throws {
            let (primary, port) = try await start(["DISTRIBUTION": "reusePort"])
            defer { primary.stop() }
            primary.send("scale 1")
            try await primary.waitForEvent(["event": "exit", "id": "1"])
            // Each new connection has a new source port, so the kernel's hash spreads them
            // over every socket still in the group: none may be one nobody accepts on.
            for _ in 0..<40 {
                let (outcome, _) = try ClientConnection(port: port, timeout: 2).get(keepAlive: false)
                guard outcome == .ok(worker: "2") else {
                    Issue.record("a connection after scaling down: \(outcome)")
                    return
                }
            }
        }

        @Test func aWorkerIsRecycledAfterItsRequestLimit() async throws {
            let (primary, port) = try await start(workers: 1, ["MAX_REQUESTS": "50"])
            defer { primary.stop() }
            for _ in 0..<60 {
                let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
                guard case .ok = outcome else {
                    Issue.record("a request failed while the worker was recycled: \(outcome)")
                    return
                }
            }
            try await primary.waitForEvent(["event": "listening", "id": "2"], timeout: .seconds(5))
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 0)
            #expect(primary.output.contains { $0.contains("recycling worker 1") && $0.contains("requests (limit 50)") })
        }

        @Test func aWorkerIsRecycledAtItsMaximumAge() async throws {
            let (primary, port) = try await start(workers: 1, ["MAX_AGE_MS": "1000"])
            defer { primary.stop() }
            try await primary.waitForEvent(["event": "listening", "id": "2"], timeout: .seconds(4))
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 0)
            #expect(primary.output.contains { $0.contains("recycling worker 1") && $0.contains("older than 1 s") })
            // Worker 2 ages too, so whichever worker is current answers.
            guard case .ok = try ClientConnection(port: port).get(keepAlive: false).0 else {
                Issue.record("no worker answers after recycling by age")
                return
            }
        }

        @Test(.enabled(if: getuid() == 0, "switching users needs root"))
        func workersGetTheirLimitsAndUserAfterThePrimaryBoundAPrivilegedPort() async throws {
            let (primary, port) = try await start(workers: 1, ["PORT": "1001", "RUN_AS": "nobody", "LIMIT_NOFILE": "321"])
            defer { primary.stop() }
            #expect(port == 1001)
            let worker = try #require(primary.events(["event": "listening"]).first?["pid"] as? Int).map(Int32.init)!
            let limits = try String(contentsOfFile: "/proc/\(worker)/limits", encoding: .utf8)
            let openFiles = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
            #expect(openFiles.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2) == ["321", "321"], "\(openFiles)")
            #expect(status(of: worker, "Uid")?.split(separator: "\t").first == "65534", "the worker runs as nobody")
            let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
            #expect(outcome == .ok(worker: "1"))
        }

        @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"), "a PID namespace needs root and unshare"))
        func asPID1ThePrimaryReapsOrphansItDidNotSpawn() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: ["WORKERS": "1"],
                                             launcher: ["/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--mount-proc"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            #expect(primary.events(["event": "supervising"]).first?["pid"] as? Int == 1, "the primary is PID 1 in its namespace")
            // The primary as the host sees it: unshare's child.
            let host = try #require(children(of: primary.pid).first)
            let worker = try #require(children(of: host).first)
            let port = listening["port"] as! Int
            #expect(try ClientConnection(port: port).get("/orphan", keepAlive: false).0 == .ok(worker: "1"))
            let adopted = children(of: host).filter { $0 != worker }
            #expect(!adopted.isEmpty, "the orphan became the primary's child")
            try await Task.sleep(for: .seconds(2)) // it exits after 1 s
            let zombies = children(of: host).filter { processState($0) == "Z" }
            #expect(zombies.isEmpty, "orphans left as zombies: \(zombies)")
            #expect(children(of: host) == [worker], "only the worker is left")
            #expect(try ClientConnection(port: port).get(keepAlive: false).0 == .ok(worker: "1"), "its own worker was not reaped away")
        }
    }
}
