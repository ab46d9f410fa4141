import Foundation
import Testing

extension IntegrationTests {
    /// Real primaries and workers: the fixture and the examples, spawned as processes.
    @Suite(.timeLimit(.minutes(2)))
    struct WorkerLifecycleTests {
        @Test func everyWorkerComesOnlineAndServes() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "3"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 3)
            listening.forEach { primary.adopt(Int32($0["pid"] as! Int)) }
            #expect(primary.events(["event": "online"]).count == 3)
            #expect(Set(listening.map { $0["id"] as! Int }) == [1, 2, 3])
            #expect(Set(listening.map { $0["slot"] as! Int }) == [0, 1, 2])
            let port = listening[0]["port"] as! Int

            var served: [String: Int] = [:]
            for _ in 0..<300 {
                let response = try HTTP.get(port: port)
                #expect(response.status == 200)
                served[String(response.body.split(separator: " ")[1]), default: 0] += 1
            }
            // A shared listener: whichever worker is quickest takes the connection; all take some.
            #expect(Set(served.keys) == ["1", "2", "3"], "connections per worker: \(served)")
        }

        @Test func killedWorkerIsReportedWithItsSignal() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "2", "RESTART": "1"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            let victim = Int32(listening[0]["pid"] as! Int)
            listening.forEach { primary.adopt(Int32($0["pid"] as! Int)) }
            kill(victim, SIGKILL)
            let exit = try await primary.waitForEvent(["event": "exit", "pid": String(victim)])
            #expect(exit["signal"] as? String == "SIGKILL")
            #expect(exit["status"] as? String == "signal 9 (SIGKILL)")
            #expect(exit["exitedAfterDisconnect"] as? Bool == false)
            // The replacement gets the next id (never reused) and the dead worker's slot.
            let replacement = try await primary.waitForEvent(["event": "listening", "id": "3"])
            primary.adopt(Int32(replacement["pid"] as! Int))
            #expect(replacement["slot"] as? Int == listening[0]["slot"] as? Int)
        }

        @Test func helloReplacesAKilledWorker() async throws {
            // Port 0: the primary binds a port no one else holds, and every worker shares it.
            let hello = try SpawnedProcess("hello", environment: ["PORT": "0", "WORKERS": "2"])
            defer { hello.stop() }
            try await hello.waitForLine { $0.hasPrefix("Primary \(hello.pid) is running") }
            let started = try await startedWorkers(hello, count: 2)
            started.forEach(hello.adopt)
            let port = try await listeningPort(hello)
            #expect(try await eventually { try HTTP.get(port: port).body } == "Hello World\n")

            kill(started[0], SIGKILL)
            try await hello.waitForLine { $0 == "Worker \(started[0]) died (signal 9 (SIGKILL))" }
            let all = try await startedWorkers(hello, count: 3)
            all.forEach(hello.adopt)
            #expect(!isRunning(started[0]))
            for _ in 0..<20 { #expect(try HTTP.get(port: port).body == "Hello World\n") }
        }

        @Test func disconnectLetsASlowRequestFinish() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "1"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let port = listening["port"] as! Int

            let slow = Task.detached { try HTTP.get(port: port, path: "/slow?ms=1500") }
            try await primary.waitForEvent(["event": "request", "path": "/slow"])
            primary.send("disconnect 1")
            let response = try await slow.value
            #expect(response.status == 200)
            #expect(response.body == "slow worker 1 pid \(listening["pid"]!)\n")
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 0, "a drained worker exits 0: \(exit)")
            #expect(exit["exitedAfterDisconnect"] as? Bool == true)
            #expect(!primary.events(["event": "disconnect", "id": "1"]).isEmpty)
        }

        @Test func drainAnswersABusyKeepAliveConnectionWithConnectionClose() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "1"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let connection = try ClientConnection(port: listening["port"] as! Int)
            #expect(connection.get(keepAlive: true).1?.headers["connection"] == nil, "keep-alive before the drain")

            #expect(connection.send("/slow?ms=1000", keepAlive: true) == nil)
            try await primary.waitForEvent(["event": "request", "path": "/slow"])
            primary.send("disconnect 1")
            let (outcome, response) = connection.receive()
            #expect(outcome == .ok(worker: "worker"), "the request in flight finishes: \(outcome)")
            #expect(response?.body.hasPrefix("slow worker 1") == true)
            #expect(response?.headers["connection"]?.lowercased() == "close")
            try await primary.waitForEvent(["event": "exit", "id": "1", "code": "0"])
        }

        @Test func killingThePrimaryTakesEveryWorkerDownWithinASecond() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "2"])
            defer { primary.stop() }
            let pids = try await primary.waitForEvents(["event": "listening"], count: 2).map { Int32($0["pid"] as! Int) }
            pids.forEach(primary.adopt)
            #expect(pids.allSatisfy(isRunning))

            let killed = ContinuousClock.now
            primary.signal(SIGKILL)
            while pids.contains(where: isRunning), ContinuousClock.now - killed < .seconds(3) {
                try await Task.sleep(for: .milliseconds(5))
            }
            let elapsed = ContinuousClock.now - killed
            #expect(!pids.contains(where: isRunning))
            #expect(elapsed < .seconds(1), "workers outlived their primary by \(elapsed)")
        }

        /// The port from an example's first "Worker PID is listening on tcp://HOST:PORT" line.
        private func listeningPort(_ process: SpawnedProcess) async throws -> Int {
            let line = try await process.waitForLine { $0.hasPrefix("Worker ") && $0.contains(" is listening on tcp://") }
            guard let port = line.split(separator: ":").last.flatMap({ Int($0) }) else {
                throw TestFailure.unexpected("no port in '\(line)'")
            }
            return port
        }

        /// The pids of the first `count` "Worker PID started" lines.
        private func startedWorkers(_ process: SpawnedProcess, count: Int) async throws -> [Int32] {
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let pids = process.output.compactMap { line -> Int32? in
                    guard line.hasPrefix("Worker "), line.hasSuffix(" started") else { return nil }
                    return Int32(line.split(separator: " ")[1])
                }
                if pids.count >= count { return pids }
                try await Task.sleep(for: .milliseconds(5))
            }
            Issue.record("fewer than \(count) workers started: \(process.output)")
            throw TestFailure.timeout
        }
    }
}

/// Retries `body` for up to `timeout` (a server that has just started may not accept yet).
func eventually<T>(timeout: Duration = .seconds(10), _ body: () throws -> T) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while true {
        do { return try body() } catch {
            if ContinuousClock.now > deadline { throw error }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
