import Foundation
import Testing

extension IntegrationTests {
    /// The examples do what their comments say.
    @Suite(.timeLimit(.minutes(1)))
    struct ExampleTests {
        @Test func messagesWorkersReportEachRequestAndThePrimaryGreetsThem() async throws {
            // Port 0: the primary binds a port no one else holds.
            let example = try SpawnedProcess("messages", environment: ["PORT": "0", "WORKERS": "1"])
            defer { example.stop() }
            let started = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.hasSuffix(" started") }
            let pid = try #require(Int32(started.split(separator: " ")[1]))
            example.adopt(pid)
            let listening = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.contains(" is listening on tcp://") }
            let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
            for index in 1...3 {
                #expect(try await eventually { try HTTP.get(port: port, path: "/r\(index)").body } == "hello world\n")
            }
            // As Node's example: each side names the worker by its pid.
            try await example.waitForLine { $0 == "Message from worker \(pid): notifyRequest /r3; 3 requests so far" }
            // The primary greets a random worker every 5 seconds.
            try await example.waitForLine(timeout: .seconds(8)) { $0 == "Worker \(pid) received message: hello from the primary #1" }
        }

        @Test func anExampleWithoutASupervisorStillExportsItsWorkersFigures() async throws {
            let example = try SpawnedProcess("messages", environment: ["PORT": "0", "WORKERS": "1", "ADMIN_PORT": "0"])
            defer { example.stop() }
            let started = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.hasSuffix(" started") }
            example.adopt(Int32(started.split(separator: " ")[1])!)
            let listening = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.contains(" is listening on tcp://") }
            let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
            let adminLine = try await example.waitForLine { $0.hasPrefix("Admin endpoints on ") }
            let admin = try #require(adminLine.split(separator: ":").last.flatMap { Int($0) })
            for _ in 0..<5 { _ = try await eventually { try HTTP.get(port: port) } }
            let metrics = try await eventually { () throws -> String in
                let text = try HTTP.get(port: admin, path: "/metrics").body
                // Series appear as the primary publishes them, one by one: the memory gauge is the last.
                guard text.contains("cluster_workers 1.0\n"), (metricSum("cluster_requests_total", in: text) ?? 0) >= 5,
                      text.contains("cluster_worker_resident_memory_bytes{slot=\"0\"}") else { throw TestFailure.unexpected(text) }
                return text
            }
            // The event-loop lag as a histogram: probes run 10 times a second, so some have been counted.
            #expect(metrics.contains("# TYPE cluster_worker_event_loop_lag_seconds histogram"), "\(metrics)")
            #expect((metricSum("cluster_worker_event_loop_lag_seconds_count", in: metrics) ?? 0) > 0, "\(metrics)")
            #expect(try HTTP.get(port: admin, path: "/readyz").status == 200)
        }

        @Test func aBadWorkersValueIsRefusedWithTheVariableNamed() async throws {
            let example = try SpawnedProcess("hello", environment: ["WORKERS": "lots"])
            defer { example.stop() }
            try await example.waitForLine {
                $0 == "hello: invalid configuration: WORKERS=lots is not a whole number from 0 to 1024; unset it for the default (\(ProcessInfo.processInfo.activeProcessorCount))"
            }
            #expect(try await example.waitForExit() == 1)
        }
    }
}
