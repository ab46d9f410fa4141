import Foundation
import Testing

/// The Vapor example as a cluster: a primary and its workers, real processes and sockets.
@Suite(.timeLimit(.minutes(2)))
struct ClusterVaporTests {
    /// What `/?n=1000` answers.
    static let result1000 = "Result: 2254542814429488560\n"

    @Test(arguments: ["shared", "reusePort", "roundRobin", "leastConnections", "sticky"])
    func bothWorkersAnswerWithEveryStrategy(strategy: String) async throws {
        let example = try ExampleProcess(environment: ["PORT": "0", "WORKERS": "2", "DISTRIBUTION": strategy])
        defer { example.stop() }
        let (workers, port) = try await example.listeningWorkers(count: 2)
        #expect(workers.keys.sorted() == [1, 2])

        // Each request names itself, so its log line tells which worker answered it.
        var servedBy: Set<Int> = []
        for index in 1...500 {
            let path = "/?n=1000&request=\(index)"
            // A client address of its own for each request: sticky routes by it.
            let response = try ClientConnection(port: port, source: "127.0.0.\(2 + index % 250)").get(path)
            #expect(response.status == 200)
            #expect(response.body == Self.result1000)
            #expect(response.headers["connection"] == "close")
            let line = try await example.waitForLine { $0.contains(": GET \(path) 200 ") }
            let id = try #require(workers.first { line.hasPrefix("Worker \($0.key) (pid \($0.value)): ") }?.key, "\(line)")
            servedBy.insert(id)
            if servedBy.count == 2 { break }
        }
        #expect(servedBy == [1, 2], "\(strategy): both workers answer")
    }

    @Test func theApplicationAnswersAsVaporDoes() async throws {
        let example = try ExampleProcess(environment: ["PORT": "0", "WORKERS": "1"])
        defer { example.stop() }
        let (_, port) = try await example.listeningWorkers(count: 1)

        let connection = try ClientConnection(port: port, source: "127.0.0.9")
        for _ in 0..<3 {
            let response = try connection.get("/hello", keepAlive: true)
            #expect(response.status == 200)
            #expect(response.body == "Hello World\n")
            #expect(response.headers["connection"] == "keep-alive")
            #expect(response.headers["date"]?.hasSuffix(" GMT") == true)
        }
        #expect(try connection.get("/client", keepAlive: true).body == "127.0.0.9\n", "req.remoteAddress is the client")
        let bad = try connection.get("/?n=lots", keepAlive: true)
        #expect(bad.status == 400, "Vapor's error middleware answers the route's Abort")
        #expect(bad.body.contains("n must be a whole number"))
        #expect(try connection.get("/nowhere").status == 404)
        #expect(connection.readsEndOfFile(), "closed after a response to Connection: close")

        // Bodies are collected up to the application's routes.defaultMaxBodySize (16 KiB).
        let small = try ClientConnection(port: port)
        try small.send(raw: "POST /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
        #expect(try small.receive().status == 404, "the router has no POST /hello")
        let large = try ClientConnection(port: port)
        try large.send(raw: "POST /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20000\r\n\r\n"
                       + String(repeating: "x", count: 20_000))
        let refused = try large.receive()
        #expect(refused.status == 413)
        #expect(refused.headers["connection"] == "close")
        #expect(large.readsEndOfFile())
    }

    @Test func theClientIsTheOneAPROXYHeaderNames() async throws {
        let example = try ExampleProcess(environment: ["PORT": "0", "WORKERS": "1", "PROXY": "v1"])
        defer { example.stop() }
        let (_, port) = try await example.listeningWorkers(count: 1)
        let connection = try ClientConnection(port: port)
        try connection.send(raw: "PROXY TCP4 203.0.113.5 127.0.0.1 4242 \(port)\r\n")
        #expect(try connection.get("/client").body == "203.0.113.5\n")
    }

    @Test func sigtermAnswersTheRequestInFlightThenTheClusterExitsZero() async throws {
        let example = try ExampleProcess(environment: ["PORT": "0", "WORKERS": "1"])
        defer { example.stop() }
        let (workers, port) = try await example.listeningWorkers(count: 1)
        let pid = try #require(workers[1])

        // Two keep-alive connections to the one worker, each answered once.
        let idle = try ClientConnection(port: port, timeout: 30)
        let busy = try ClientConnection(port: port, timeout: 30)
        #expect(try idle.get("/hello", keepAlive: true).headers["connection"] == "keep-alive")
        // About 1.5 s of work on this build, so the drain lands in the middle of it.
        let calibration = 2_000_000
        let started = ContinuousClock.now
        #expect(try busy.get("/?n=\(calibration)", keepAlive: true).body == expectedBody(calibration))
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let slow = max(calibration, min(Int(Double(calibration) * 1.5 / max(seconds, 1e-6)), 2_000_000_000))

        // A path of its own, so no check below can match the calibration's log line.
        let slowPath = "/?n=\(slow)&request=drained"
        let idleCPU = try #require(cpuSeconds(of: pid))
        try busy.send(slowPath, keepAlive: true)
        // The worker has read the request once it spends CPU on it.
        let computing = ContinuousClock.now + .seconds(20)
        while (cpuSeconds(of: pid) ?? .infinity) < idleCPU + 0.1 && ContinuousClock.now < computing {
            try await Task.sleep(for: .milliseconds(10))
        }
        example.signal(SIGTERM)

        let response = try busy.receive()
        #expect(response.status == 200)
        #expect(response.body == expectedBody(slow))
        #expect(response.headers["connection"] == "close")
        #expect(busy.readsEndOfFile(), "closed after the response in flight")
        #expect(idle.readsEndOfFile(), "an idle keep-alive connection is closed")
        #expect(try await example.waitForExit() == 0)

        // The drain began while the slow request was being answered; then Vapor shut the
        // application down (its lifecycle handlers ran) and the worker's main returned.
        let output = example.output
        let drained = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) draining"))
        let answered = try #require(output.firstIndex { $0.hasPrefix("Worker 1 (pid \(pid)): GET \(slowPath) 200 ") })
        let stopped = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) background jobs stopped"))
        let exiting = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) exiting"))
        #expect(drained < answered, "\(output)")
        #expect(answered < stopped, "\(output)")
        #expect(stopped < exiting, "\(output)")
    }

    @Test func aKilledWorkerIsReplaced() async throws {
        let example = try ExampleProcess(environment: ["PORT": "0", "WORKERS": "2"])
        defer { example.stop() }
        let (workers, port) = try await example.listeningWorkers(count: 2)

        let victim = try #require(workers[1])
        kill(victim, SIGKILL)
        try await example.waitForLine { $0 == "Worker \(victim) died (signal 9 (SIGKILL))" }
        let (all, _) = try await example.listeningWorkers(count: 3)
        #expect(all.keys.sorted() == [1, 2, 3])
        for _ in 0..<10 {
            #expect(try ClientConnection(port: port).get("/hello").body == "Hello World\n")
        }
    }

    @Test func aWorkerSIGTERMedByItselfDrainsLeavesAndIsReplaced() async throws {
        let example = try ExampleProcess(environment: ["PORT": "0", "WORKERS": "1"])
        defer { example.stop() }
        let (workers, port) = try await example.listeningWorkers(count: 1)
        let pid = try #require(workers[1])
        let idle = try ClientConnection(port: port)
        #expect(try idle.get("/hello", keepAlive: true).status == 200)

        // Vapor's serve command catches the signal and shuts the server down: the worker
        // leaves the cluster as worker.disconnect() does, and the supervisor replaces it.
        kill(pid, SIGTERM)
        #expect(idle.readsEndOfFile(), "an idle keep-alive connection is closed")
        try await example.waitForLine { $0 == "Worker 1 (pid \(pid)) exiting" }
        let (all, _) = try await example.listeningWorkers(count: 2)
        #expect(all.keys.sorted() == [1, 2])
        #expect(try ClientConnection(port: port).get("/hello").body == "Hello World\n")
        let output = example.output
        let draining = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) draining"))
        let stopped = try #require(output.firstIndex(of: "Worker 1 (pid \(pid)) background jobs stopped"))
        #expect(draining < stopped, "\(output)")
    }

    /// The example's work loop, step for step: what `/?n=N` answers.
    private func expectedBody(_ n: Int) -> String {
        var value: UInt64 = 0
        for step in 0..<UInt64(n) { value = (value ^ step) &* 0x100_0000_01B3 }
        return "Result: \(value)\n"
    }
}
