import Foundation
import Testing

extension IntegrationTests {
    /// The Express port: a Hummingbird app in every worker, drained on SIGTERM.
    @Suite(.timeLimit(.minutes(1)))
    struct ExpressTests {
        @Test func everyWorkerServesTheExactResult() async throws {
            let express = try SpawnedProcess("express", environment: ["PORT": "0", "WORKERS": "2"])
            defer { express.stop() }
            let (pids, port) = try await listeningWorkers(express, count: 2)
            pids.values.forEach(express.adopt)
            #expect(pids.keys.sorted() == [1, 2])

            // Each request names itself, so its log line tells which worker answered it.
            var servedBy: Set<Int> = []
            for index in 1...500 {
                let path = "/?n=1000&request=\(index)"
                let response = try await eventually { try HTTP.get(port: port, path: path) }
                #expect(response.status == 200)
                #expect(response.body == "Result: 2254542814429488560\n")
                let line = try await express.waitForLine { $0.contains(": GET \(path) 200 ") }
                let id = try #require(pids.first { line.hasPrefix("Worker \($0.key) (pid \($0.value)): ") }?.key, "\(line)")
                servedBy.insert(id)
                if servedBy.count == 2 { break }
            }
            #expect(servedBy == [1, 2], "a shared listener: both workers take connections")

            let bad = try HTTP.get(port: port, path: "/?n=lots")
            #expect(bad.status == 400)
            try await express.waitForLine { $0.contains(": GET /?n=lots 400 ") }
        }

        @Test func aKilledWorkerIsReplaced() async throws {
            let express = try SpawnedProcess("express", environment: ["PORT": "0", "WORKERS": "2"])
            defer { express.stop() }
            let (pids, port) = try await listeningWorkers(express, count: 2)
            pids.values.forEach(express.adopt)

            let victim = try #require(pids[1])
            kill(victim, SIGKILL)
            try await express.waitForLine { $0 == "Worker \(victim) died (signal 9 (SIGKILL))" }
            let (all, _) = try await listeningWorkers(express, count: 3)
            all.values.forEach(express.adopt)
            #expect(all.keys.sorted() == [1, 2, 3])
            for _ in 0..<10 { #expect(try HTTP.get(port: port, path: "/?n=10").body == expectedBody(10)) }
        }

        @Test func sigtermDrainsARequestInFlightAndClosesIdleConnections() async throws {
            let express = try SpawnedProcess("express", environment: ["PORT": "0", "WORKERS": "1"])
            defer { express.stop() }
            let (pids, port) = try await listeningWorkers(express, count: 1)
            pids.values.forEach(express.adopt)
            let pid = try #require(pids[1])

            // Two keep-alive connections to the one worker, each answered once.
            let idle = try ClientConnection(port: port, timeout: 20)
            let busy = try ClientConnection(port: port, timeout: 20)
            #expect(idle.get("/?n=1000", keepAlive: true).1?.body == "Result: 2254542814429488560\n")
            // About 1.5 s of work on this build, so the drain lands in the middle of it.
            let calibration = 2_000_000
            let started = ContinuousClock.now
            #expect(busy.get("/?n=\(calibration)", keepAlive: true).1?.body == expectedBody(calibration))
            let seconds = (ContinuousClock.now - started) / .seconds(1)
            let slow = max(calibration, min(Int(Double(calibration) * 1.5 / max(seconds, 1e-6)), 2_000_000_000))

            // A path of its own, so no check below can match the calibration's log line.
            let slowPath = "/?n=\(slow)&request=drained"
            let idleCPU = try #require(cpuSeconds(of: pid))
            #expect(busy.send(slowPath, keepAlive: true) == nil)
            // The worker has read the request once it spends CPU on it.
            let computing = ContinuousClock.now + .seconds(20)
            while (cpuSeconds(of: pid) ?? .infinity) < idleCPU + 0.1 && ContinuousClock.now < computing {
                try await Task.sleep(for: .milliseconds(10))
            }
            express.signal(SIGTERM)

            let response = try #require(busy.receive().1)
            #expect(response.status == 200)
            #expect(response.body == expectedBody(slow))
            #expect(response.headers["connection"] == "close", "\(response.headers)")
            #expect(busy.readsEndOfFile(), "closed after the response in flight")
            #expect(idle.readsEndOfFile(), "an idle keep-alive connection is closed at once")

            try await express.waitForLine { $0 == "Primary \(express.pid) got SIGTERM; draining 1 worker" }
            try await express.waitForLine { $0 == "Worker \(pid) exited (exit code 0) after a disconnect" }
            try await express.waitForLine { $0 == "Primary \(express.pid) exiting" }
            #expect(try await express.waitForExit() == 0)
            // The drain began while the slow request was being answered.
            let output = express.output
            let drained = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) draining"))
            let answered = try #require(output.firstIndex { $0.hasPrefix("Worker 1 (pid \(pid)): GET \(slowPath) 200 ") })
            #expect(drained < answered, "\(output)")
            // The application's service stopped after its server answered what was in flight.
            let jobsStopped = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) background jobs stopped"))
            #expect(answered < jobsStopped, "\(output)")
        }

        @Test func aRequestThatAsksToCloseIsAnsweredWithConnectionCloseThenClosed() async throws {
            let express = try SpawnedProcess("express", environment: ["PORT": "0", "WORKERS": "1"])
            defer { express.stop() }
            let (pids, port) = try await listeningWorkers(express, count: 1)
            pids.values.forEach(express.adopt)
            // A client that read keep-alive here would send its next request into a closing connection.
            let connection = try ClientConnection(port: port, timeout: 20)
            let response = try #require(connection.get("/?n=10", keepAlive: false).1)
            #expect(response.status == 200)
            #expect(response.headers["connection"] == "close", "\(response.headers)")
            #expect(connection.readsEndOfFile())
            // A keep-alive request is still answered without it.
            let kept = try ClientConnection(port: port, timeout: 20)
            #expect(try #require(kept.get("/?n=10", keepAlive: true).1).headers["connection"] == nil)
            #expect(try #require(kept.get("/?n=10", keepAlive: true).1).body == expectedBody(10))
        }

        @Test func theRequestContextNamesTheClientAPROXYHeaderNames() async throws {
            let express = try SpawnedProcess("express", environment: ["PORT": "0", "WORKERS": "1", "PROXY": "v2"])
            defer { express.stop() }
            let (pids, port) = try await listeningWorkers(express, count: 1)
            pids.values.forEach(express.adopt)
            let connection = try ClientConnection(port: port)
            connection.sendRaw(IntegrationTests.ProxyProtocolTests.header("v2", source: "203.0.113.5"))
            let (_, response) = connection.get("/client", keepAlive: false)
            #expect(response?.body == "203.0.113.5\n")
            // Straight to the worker, no header: closed unanswered.
            let direct = try ClientConnection(port: port)
            _ = direct.send("/client", keepAlive: false)
            #expect(direct.closesUnanswered())
        }

        /// Worker ids to pids, and the port, from the primary's first `count` "is listening"
        /// lines. The tests ask for port 0: the primary binds a port no one else can hold.
        private func listeningWorkers(_ process: SpawnedProcess, count: Int) async throws -> (workers: [Int: Int32], port: Int) {
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                var workers: [Int: Int32] = [:]
                var port = 0
                for line in process.output where line.hasPrefix("Worker ") && line.contains(" is listening on ") {
                    // Worker 1 (pid 123) is listening on tcp://0.0.0.0:41234
                    let words = line.split(separator: " ")
                    if words.count == 8, let id = Int(words[1]), let pid = Int32(words[3].dropLast()),
                       let bound = words[7].split(separator: "?")[0].split(separator: ":").last.flatMap({ Int($0) }) {
                        workers[id] = pid
                        port = bound
                    }
                }
                if workers.count >= count { return (workers, port) }
                try await Task.sleep(for: .milliseconds(5))
            }
            Issue.record("fewer than \(count) workers listening: \(process.output)")
            throw TestFailure.timeout
        }

        /// express's work loop, step for step: what `/?n=N` answers.
        private func expectedBody(_ n: Int) -> String {
            var value: UInt64 = 0
            for step in 0..<UInt64(n) { value = (value ^ step) &* 0x100_0000_01B3 }
            return "Result: \(value)\n"
        }
    }
}
