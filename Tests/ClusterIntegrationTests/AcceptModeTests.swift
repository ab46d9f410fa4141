import Foundation
import Glibc
import Testing

extension IntegrationTests {
    /// How a worker's SwiftNIO server takes connections (`AcceptMode`), in the build
    /// configuration the suite runs in: both modes are exercised in debug and release.
    @Suite(.timeLimit(.minutes(2)))
    struct AcceptModeTests {
        /// Two workers in one reusePort slot, as a slot's worker and its replacement are
        /// during a reload: only the first accepts (in the eventLoop mode, a second
        /// SwiftNIO server on the socket would be woken for connections the first takes,
        /// which SwiftNIO's debug builds assert on); once it is gone, the second takes the
        /// slot's turn and serves every connection.
        @Test(arguments: ["eventLoop", "runtime"])
        func aSlotsSecondWorkerAcceptsOnlyOnceTheFirstHasStopped(mode: String) async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["turns"], environment: ["ACCEPT_MODE": mode])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            for event in listening { primary.adopt(Int32(event["pid"] as! Int)) }
            let port = listening[0]["port"] as! Int

            var servedBy: [Outcome: Int] = [:]
            for _ in 0..<300 {
                let connection = try ClientConnection(port: port)
                servedBy[connection.get(keepAlive: false).0, default: 0] += 1
            }
            #expect(servedBy == [.ok(worker: "1"): 300], "the first worker holds the turn: \(servedBy)")

            primary.send("kill 1 SIGKILL")
            try await primary.waitForEvent(["event": "exit", "id": "1"])
            servedBy = [:]
            for _ in 0..<100 {
                let connection = try ClientConnection(port: port)
                servedBy[connection.get(keepAlive: false).0, default: 0] += 1
            }
            #expect(servedBy == [.ok(worker: "2"): 100], "the second worker has the turn: \(servedBy)")
            #expect(primary.events(["event": "exit"]).count == 1, "no worker died but the one killed")
        }

        /// `eventLoop` needs a socket one worker waits on at a time; a shared listener's is
        /// every worker's. The worker says so and what to use instead.
        @Test func theEventLoopModeOnASharedListenerIsRefusedWithAClearError() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"],
                                             environment: ["WORKERS": "1", "ACCEPT_MODE": "eventLoop", "DISTRIBUTION": "shared"])
            defer { primary.stop() }
            try await primary.waitForEvent(["event": "exit", "id": "1"])
            try await primary.waitForLine { $0.contains("accept mode eventLoop needs a socket one worker waits on at a time") }
            #expect(primary.output.contains { $0.contains("use AcceptMode.runtime or .automatic, or distribute by reusePort") })
        }
    }
}
