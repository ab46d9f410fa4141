import Foundation
import Testing

extension IntegrationTests {
    /// What a worker inherits, and what it must not.
    @Suite(.timeLimit(.minutes(2)))
    struct SpawnTests {
        @Test func aWorkerHoldsNoDescriptorItWasNotGiven() async throws {
            let marker = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-leak-\(getpid())").path
            _ = FileManager.default.createFile(atPath: marker, contents: Data())
            defer { try? FileManager.default.removeItem(atPath: marker) }
            // The shell leaves fd 7 open (not close-on-exec) in the primary, as a careless parent would.
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "1"],
                                             shellPrefix: "exec 7<\(marker)")
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            let worker = Int32(listening["pid"] as! Int)
            primary.adopt(worker)

            #expect(descriptors(of: primary.pid)[7] == marker, "the test's leak reached the primary")
            let inherited = descriptors(of: worker)
            #expect(!inherited.values.contains(marker), "the leaked descriptor reached the worker: \(inherited)")
            #expect(inherited[3]?.hasPrefix("socket:") == true, "fd 3 is the channel: \(inherited)")
            #expect(inherited[4]?.hasPrefix("socket:") == true, "fd 4 is the listener: \(inherited)")
        }

        @Test func aWorkerStartsWithDefaultSignalDispositionsAndNoBlockedSignals() async throws {
            // The primary starts with SIGTERM and SIGHUP ignored, inherited from its shell.
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "1"],
                                             shellPrefix: "trap '' TERM HUP")
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            let worker = Int32(listening["pid"] as! Int)
            primary.adopt(worker)

            let bit: (Int32) -> UInt64 = { 1 << UInt64($0 - 1) }
            let primaryIgnored = UInt64(status(of: primary.pid, "SigIgn") ?? "", radix: 16) ?? 0
            #expect(primaryIgnored & bit(SIGTERM) != 0, "the test's setup reached the primary")
            let ignored = UInt64(status(of: worker, "SigIgn") ?? "", radix: 16) ?? 0
            #expect(ignored & bit(SIGTERM) == 0)
            #expect(ignored & bit(SIGHUP) == 0)
            #expect(UInt64(status(of: worker, "SigBlk") ?? "", radix: 16) == 0)
        }

        @Test(.enabled(if: getuid() == 0, "switching users needs root"))
        func workersRunAsTheConfiguredUserWithPrefixedOutput() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "1", "FIXTURE_USER": "nobody"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            let worker = Int32(listening["pid"] as! Int)
            primary.adopt(worker)
            let nobody = getpwnam("nobody")!.pointee.pw_uid
            #expect(status(of: worker, "Uid")?.split(separator: "\t").first == "\(nobody)"[...])
            try await primary.waitForLine { $0.hasPrefix("[worker 1] {") && $0.contains("\"event\":\"started\"") }
        }
    }
}
