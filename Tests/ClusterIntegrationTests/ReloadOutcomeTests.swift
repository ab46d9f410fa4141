import Foundation
import Testing

extension IntegrationTests {
    /// A reload reports what happened: it completes only when every replacement is ready,
    /// and otherwise fails, with the old generation serving and the generation unchanged.
    @Suite(.timeLimit(.minutes(2)))
    struct ReloadOutcomeTests {
        private func temporaryFailFile() -> String {
            FileManager.default.temporaryDirectory.appendingPathComponent("fail-\(UUID())").path
        }

        /// The supervisor's own account: its generation and its latest reload.
        private func status(_ primary: SpawnedProcess) async throws -> (generation: Int?, reload: String) {
            let before = primary.events(["event": "status"]).count
            primary.send("status")
            let status = try await primary.waitForEvents(["event": "status"], count: before + 1)[before]
            return (status["generation"] as? Int, status["reload"] as? String ?? "")
        }

        @Test func aReloadToAGenerationThatNeverGetsReadyFailsAtTheFirstWorkerAndTheOldWorkersServe() async throws {
            let failFile = temporaryFailFile()
            defer { try? FileManager.default.removeItem(atPath: failFile) }
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: [
                "WORKERS": "2", "FAIL_FILE": failFile, "READY_TIMEOUT_MS": "1000",
            ])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            let port = listening[0]["port"] as! Int
            try "hang".write(toFile: failFile, atomically: true, encoding: .utf8) // the deploy is broken
            primary.send("reload")
            let failed = try await primary.waitForLine { $0.contains("reload failed:") }
            #expect(failed.contains("worker 3 (pid") && failed.contains("generation 2) was not ready within 1 s")
                    && failed.contains("generation 1 keeps serving"), "\(failed)")
            let killed = try await primary.waitForEvent(["event": "exit", "id": "3"])
            #expect(killed["signal"] as? String == "SIGKILL", "the late replacement is killed: \(killed)")

            var served: Set<String> = []
            for _ in 0..<20 {
                let (outcome, _) = try ClientConnection(port: port).get(keepAlive: false)
                if case .ok(let worker) = outcome { served.insert(worker) } else { Issue.record("\(outcome)") }
            }
            #expect(served.isSubset(of: ["1", "2"]) && !served.isEmpty, "generation 1 keeps serving: \(served)")
            let (generation, reload) = try await status(primary)
            #expect(generation == 1, "the generation did not advance to one with no ready worker")
            #expect(reload.hasPrefix("reload failed: worker 3 (pid") && reload.contains("was not ready within 1 s"), "\(reload)")
            #expect(primary.events(["event": "fork"]).count == 3, "the rollout stopped at the first failed replacement: worker 2 was not replaced")
            #expect(primary.events(["event": "exit", "id": "1"]).isEmpty && primary.events(["event": "exit", "id": "2"]).isEmpty)
            #expect(!primary.output.contains { $0.contains("reload complete") })
        }

        /// A program whose workers never get ready (as gunicorn's did when readiness could not
        /// see them): each old worker is killed at the boot timeout while its replacement is
        /// still starting. The replacement must still get ready for the reload to count.
        @Test func aReplacementWhosePredecessorDiedMustStillGetReadyForTheReloadToComplete() async throws {
            let failFile = temporaryFailFile()
            try "hang".write(toFile: failFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: failFile) }
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: [
                "WORKERS": "2", "FAIL_FILE": failFile, "BOOT_TIMEOUT_MS": "1500", "READY_TIMEOUT_MS": "3000",
                "MAX_BOOT_FAILURES": "100",
            ])
            defer { primary.stop() }
            _ = try await primary.waitForEvents(["event": "fork"], count: 2)
            primary.send("reload")
            // The old workers die at 1.5 s, their replacement is late at 3 s.
            try await primary.waitForLine { $0.contains("was not ready within 1.5 s; killing it") }
            let failed = try await primary.waitForLine(timeout: .seconds(10)) { $0.contains("reload failed:") }
            #expect(failed.contains("generation 2) was not ready within 3 s") && failed.contains("no worker is ready"), "\(failed)")
            #expect(!primary.output.contains { $0.contains("reload complete") }, "a reload with no ready worker of its generation claimed success")
            let (generation, reload) = try await status(primary)
            #expect(generation == 1)
            #expect(reload.hasPrefix("reload failed:"), "\(reload)")
        }
    }
}
