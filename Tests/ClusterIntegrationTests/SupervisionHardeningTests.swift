import Foundation
import Testing

extension IntegrationTests {
    /// Bad deploys against the supervisor, with real processes: a binary on disk that
    /// cannot boot, and a new primary that never takes over.
    @Suite(.timeLimit(.minutes(3)))
    struct SupervisionHardeningTests {
        /// A directory holding a copy of the fixture, so a test can replace the binary the
        /// primary runs from, as a deploy does.
        final class Deploy {
            let directory: String
            var binary: String { directory + "/ClusterFixture" }

            init() throws {
                directory = FileManager.default.temporaryDirectory.appendingPathComponent("deploy-\(UUID())").path
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try install(SpawnedProcess.product("ClusterFixture"))
            }

            /// Removes the directory (the primary may still run from it).
            func remove() { try? FileManager.default.removeItem(atPath: directory) }

            /// Puts `file` (a copy) at the binary's path, atomically, as a deploy would.
            func install(_ file: String) throws {
                let staged = directory + "/staged"
                try? FileManager.default.removeItem(atPath: staged)
                do {
                    try FileManager.default.linkItem(atPath: file, toPath: staged)
                } catch {
                    try FileManager.default.copyItem(atPath: file, toPath: staged)
                }
                guard rename(staged, binary) == 0 else { throw TestFailure.unexpected("rename: errno \(errno)") }
            }

            /// Puts a shell script at the binary's path.
            func install(script: String) throws {
                let file = directory + "/script"
                try ("#!/bin/sh\n" + script + "\n").write(toFile: file, atomically: true, encoding: .utf8)
                chmod(file, 0o755)
                try install(file)
            }

            /// Starts the supervised primary from the copy.
            func start(_ environment: [String: String]) throws -> SpawnedProcess {
                // The shell execs the copy, so the pid is the primary's and /proc/self/exe is the copy.
                try SpawnedProcess("ClusterFixture", ["supervised"], environment: environment,
                                   shellPrefix: "exec \(binary) supervised")
            }
        }

        /// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
        private func eventually(within timeout: Duration, _ condition: () throws -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if try condition() { return true }
                try await Task.sleep(for: .milliseconds(20))
            }
            return try condition()
        }

        /// The pid a log line names as `(pid N)` after `marker`.
        private func pid(in line: String, after marker: String) throws -> Int32 {
            let tail = try #require(line.range(of: marker)).upperBound
            let digits = line[tail...].drop { !$0.isNumber }.prefix { $0.isNumber }
            return try #require(Int32(digits))
        }

        /// Waits until `pid` has `count` children; `primary` adopts `pid` and them, to
        /// SIGKILL them if the test fails.
        private func adoptChildren(of pid: Int32, count: Int, by primary: SpawnedProcess) async throws -> [Int32] {
            primary.adopt(pid)
            var found: [Int32] = []
            let started = try await eventually(within: .seconds(10)) {
                found = children(of: pid)
                return found.count == count
            }
            found.forEach(primary.adopt)
            try #require(started, "\(pid) has \(found.count) children, not \(count)")
            return found
        }

        private func holdsASocket(_ pid: Int32) -> Bool {
            descriptors(of: pid).values.contains { $0.hasPrefix("socket:") }
        }

        // MARK: A bad deploy plus one crash

        @Test func aBrokenBinaryAndOneCrashLeaveTheOtherWorkerServingDegradedUntilTheGoodBinaryReturns() async throws {
            let deploy = try Deploy()
            defer { deploy.remove() }
            let good = deploy.directory + "/good"
            try FileManager.default.linkItem(atPath: deploy.binary, toPath: good)
            let primary = try deploy.start([
                "WORKERS": "2", "ADMIN_PORT": "0", "RESTART_DELAY_MS": "100", "MAX_BOOT_FAILURES": "2",
                "DEGRADED_DELAY_MS": "400", "MAX_DEGRADED_DELAY_MS": "1000",
            ])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            let port = listening[0]["port"] as! Int
            let admin = try #require(try await primary.waitForEvent(["event": "admin"])["port"] as? Int)

            try deploy.install(script: "echo 'this deploy cannot boot' >&2; exit 3")
            let victim = listening[0], survivor = String(listening[1]["id"] as! Int)
            kill(Int32(victim["pid"] as! Int), SIGKILL)

            // Fast retries fail, then the crash-loop guard: degraded, the other worker serves.
            let degraded = try await primary.waitForLine(timeout: .seconds(20)) { $0.contains("crash loop:") }
            let degradedAt = ContinuousClock.now
            #expect(degraded.contains("3 workers failed to boot") && degraded.contains("degraded")
                    && degraded.contains("1 worker keeps serving"), "\(degraded)")
            var answered = 0
            while degradedAt.duration(to: .now) < .seconds(3) {
                let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
                #expect(outcome == .ok(worker: survivor), "the healthy worker keeps answering during the crash loop")
                answered += 1
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(isRunning(primary.pid), "the primary stays up")
            let ready = try HTTP.get(port: admin, path: "/readyz")
            #expect(ready.status == 200 && ready.body.contains("ready: 1 workers") && ready.body.contains("degraded: "),
                    "\(ready.status) \(ready.body)")
            #expect(try await eventually(within: .seconds(5)) {
                try HTTP.get(port: admin, path: "/metrics").body.contains("cluster_degraded 1")
            }, "the metric says degraded")
            // Backing off: 0.4 s, 0.8 s, then 1 s apart, not 100 ms doubling from zero again.
            let failedWhileDegraded = primary.events(["event": "exit", "code": "3"]).count - 3
            print("crash loop: \(answered) requests answered by worker \(survivor) in 3 s; \(failedWhileDegraded) boot attempts meanwhile")
            #expect(failedWhileDegraded >= 1 && failedWhileDegraded <= 5, "\(failedWhileDegraded) boot attempts in 3 s while degraded")

            // The good binary back: the next attempt boots and the slot recovers by itself.
            try deploy.install(good)
            let recovered = try await primary.waitForLine(timeout: .seconds(10)) { $0.contains("recovered:") }
            #expect(recovered.contains("ending the crash loop"), "\(recovered)")
            _ = try await primary.waitForEvents(["event": "listening"], count: 3)
            let healed = try HTTP.get(port: admin, path: "/readyz")
            #expect(healed.status == 200 && healed.body.contains("ready: 2 workers") && !healed.body.contains("degraded"),
                    "\(healed.body)")
            #expect(try await eventually(within: .seconds(5)) {
                try HTTP.get(port: admin, path: "/metrics").body.contains("cluster_degraded 0")
            })
            #expect(primary.output.filter { $0.contains("crash loop:") }.count == 1, "one crash-loop message per episode")
            primary.signal(SIGTERM)
            #expect(try await primary.waitForExit() == 0)
        }

        @Test func aReloadAfterTheFixRetriesTheWaitingSlotAtOnceInsteadOfAfterTheBackoff() async throws {
            let deploy = try Deploy()
            defer { deploy.remove() }
            let good = deploy.directory + "/good"
            try FileManager.default.linkItem(atPath: deploy.binary, toPath: good)
            let primary = try deploy.start(["WORKERS": "2", "RESTART_DELAY_MS": "100", "MAX_BOOT_FAILURES": "1",
                                            "DEGRADED_DELAY_MS": "60000"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            try deploy.install(script: "exit 3")
            let slot = listening[0]["slot"] as! Int
            kill(Int32(listening[0]["pid"] as! Int), SIGKILL)
            _ = try await primary.waitForLine { $0.contains("crash loop:") && $0.contains("wait 60 s") }

            try deploy.install(good)
            let reloaded = ContinuousClock.now
            primary.send("reload")
            let retried = try await primary.waitForLine { $0.contains("reload during a crash loop") }
            #expect(retried.contains("slot \(slot) start now"), "\(retried)")
            _ = try await primary.waitForLine(timeout: .seconds(30)) { $0.contains("recovered:") }
            _ = try await primary.waitForLine(timeout: .seconds(30)) { $0.contains("reload complete: every worker is generation 2") }
            let elapsed = reloaded.duration(to: .now)
            print("crash loop ended by a reload \(elapsed) after it (backoff 60 s)")
            #expect(elapsed < .seconds(30), "the waiting slot did not wait out its 60 s backoff")
        }

        @Test func aBrokenBinaryWithNoWorkerLeftServingStillStopsThePrimary() async throws {
            let deploy = try Deploy()
            defer { deploy.remove() }
            let primary = try deploy.start(["WORKERS": "1", "RESTART_DELAY_MS": "100", "MAX_BOOT_FAILURES": "2"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 1)
            try deploy.install(script: "exit 3")
            kill(Int32(listening[0]["pid"] as! Int), SIGKILL)
            #expect(try await primary.waitForExit(timeout: .seconds(20)) == 1, "the crash-loop exit status")
            let message = try #require(primary.output.first { $0.contains("failed to boot") })
            #expect(message.contains("3 workers failed to boot") && message.contains("stopping the cluster"), "\(message)")
        }

        // MARK: A hung hot upgrade

        @Test func aNewPrimaryThatNeverTakesOverIsKilledAtTheDeadlineAndTheOldOneServesOn() async throws {
            let deploy = try Deploy()
            defer { deploy.remove() }
            let primary = try deploy.start(["WORKERS": "1", "UPGRADE_TIMEOUT_MS": "2000"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 1)
            let port = listening[0]["port"] as! Int
            // A wrapper that does not exec: its child holds the listeners too.
            try deploy.install(script: "sleep 600; echo never")

            let signalled = ContinuousClock.now
            primary.signal(SIGUSR2)
            let started = try await primary.waitForLine { $0.contains("hot upgrade: started a new primary") }
            let successor = try pid(in: started, after: "new primary")
            let wrapped = try await adoptChildren(of: successor, count: 1, by: primary)
            #expect(([successor] + wrapped).allSatisfy(holdsASocket), "the new primary and its program hold the listener")

            let failed = try await primary.waitForLine(timeout: .seconds(15)) { $0.contains("did not take over within 2 s") }
            #expect(failed.contains("pid \(successor)") && failed.contains("killing it"), "\(failed)")
            #expect(try await eventually(within: .seconds(5)) { !isRunning(successor) && !wrapped.contains(where: isRunning) },
                    "the new primary and its program are gone")
            let elapsed = signalled.duration(to: .now)
            print("hung hot upgrade: new primary killed \(elapsed) after SIGUSR2 (deadline 2 s)")
            #expect(elapsed >= .milliseconds(1900) && elapsed < .seconds(10))
            #expect(isRunning(primary.pid))
            let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
            #expect(outcome == .ok(worker: "1"), "the old primary's worker serves on")

            primary.signal(SIGTERM)
            #expect(try await primary.waitForExit() == 0)
            #expect(throws: Outcome.refused) { try ClientConnection(port: port) }
        }

        @Test func stoppingDuringAHotUpgradeKillsTheNewPrimaryAndItsWorkersSoNothingHoldsThePort() async throws {
            let failFile = FileManager.default.temporaryDirectory.appendingPathComponent("fail-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: failFile) }
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: [
                "WORKERS": "2", "FAIL_FILE": failFile, "UPGRADE_TIMEOUT_MS": "60000", "BOOT_TIMEOUT_MS": "60000",
            ])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            let port = listening[0]["port"] as! Int
            // The new primary's workers start and never get ready.
            try "hang".write(toFile: failFile, atomically: true, encoding: .utf8)

            primary.signal(SIGUSR2)
            let supervising = try await primary.waitForEvents(["event": "supervising"], count: 2)
            let successor = Int32(supervising[1]["pid"] as! Int)
            let workers = try await adoptChildren(of: successor, count: 2, by: primary)
            #expect(workers.allSatisfy(holdsASocket), "the new primary's workers hold the listener")

            primary.signal(SIGTERM)
            let stopping = try await primary.waitForLine { $0.contains("stopping during a hot upgrade") }
            #expect(stopping.contains("pid \(successor)"), "\(stopping)")
            #expect(try await primary.waitForExit() == 0)
            #expect(!isRunning(successor), "the old primary waited for the new one's death")
            #expect(try await eventually(within: .seconds(5)) { workers.allSatisfy { !isRunning($0) } },
                    "its workers died with it (PR_SET_PDEATHSIG)")
            #expect(throws: Outcome.refused) { try ClientConnection(port: port) }
        }
    }
}
