import Foundation
import Testing

extension IntegrationTests {
    /// Messages and descriptors between real processes.
    @Suite(.timeLimit(.minutes(2)))
    struct ChannelTests {
        @Test func hundredThousandMessagesArriveInOrderBothWays() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["messages", "100000"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "messages"], timeout: .seconds(60))
            #expect(result["toPrimary"] as? Int == 100_000)
            #expect(result["toPrimaryInOrder"] as? Bool == true)
            #expect(result["worker"] as? String == "worker received 100000 in order: true")
        }

        @Test func descriptorsWorkOnTheOtherSide() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["descriptor"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "descriptor"])
            #expect(result["primaryRead"] as? String == "written by worker 1")
            #expect(result["fromWorkerRead"] as? String == "sent by worker 1")
        }

        @Test func oversizedMessagesAreRefusedWithAClearErrorBothWays() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["oversized"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "oversized"])
            let expected = "message too large: a message of 67108865 bytes exceeds the limit of 67108864 bytes (64 MiB); send large data through a file or a descriptor instead"
            #expect(result["primaryError"] as? String == expected)
            #expect(result["workerError"] as? String == expected)
            #expect(result["afterwards"] as? String == "yes, worker 1", "the channel still works after a refused message")
        }

        @Test func aMalformedFrameGetsItsWorkerKilledAndThePrimaryCarriesOn() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["malformed"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "malformed"])
            #expect(result["liarExit"] as? String == "SIGKILL")
            #expect(result["afterwards"] as? String == "yes, worker 2")
            #expect(primary.output.contains { $0.contains("worker 1") && $0.contains("malformed frame: unknown frame kind 99") && $0.contains("killing it") })
        }
    }
}

extension IntegrationTests {
    /// Broadcast, worker-to-worker messages and request timeouts.
    @Suite(.timeLimit(.minutes(1)))
    struct MessagingPatternTests {
        @Test func broadcastReachesEveryWorkerAndWorkersReachEachOtherThroughThePrimary() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["mesh"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "mesh"])
            #expect(result["heard"] as? [String] == [
                #"worker 1: got {"greeting":"hello, workers"}"#,
                "worker 2: got 'ping' from worker 1",
                #"worker 2: got {"greeting":"hello, workers"}"#,
            ])
            #expect(result["timeout"] as? String == "timed out: no reply within 200 ms")
        }
    }
}

extension IntegrationTests {
    @Suite(.timeLimit(.minutes(1)))
    struct FarewellTests {
        @Test func aWorkersLastMessagesArriveBeforeItsExit() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["farewell"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "farewell"])
            #expect(result["receivedBeforeExit"] as? Int == 15_000)
            #expect(result["status"] as? String == "exit code 0")
        }
    }
}

extension IntegrationTests {
    @Suite(.timeLimit(.minutes(1)))
    struct MessageHandlerTests {
        @Test func aHandlerGetsTheMessagesThatArrivedBeforeItInOrder() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["handler"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "handler"])
            #expect(result["report"] as? String == "handled 1000 in order: true")
        }
    }
}
