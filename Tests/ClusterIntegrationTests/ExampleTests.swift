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
            example.adopt(Int32(started.split(separator: " ")[1])!)
            let listening = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.contains(" is listening on tcp://") }
            let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
            for index in 1...3 {
                #expect(try await eventually { try HTTP.get(port: port, path: "/r\(index)").body } == "hello world\n")
            }
            try await example.waitForLine { $0 == "Primary got notifyRequest from worker 1 for /r3; 3 requests so far" }
            // The primary greets a random worker every 5 seconds.
            try await example.waitForLine(timeout: .seconds(8)) { $0 == "Worker 1 got: hello from the primary #1" }
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
