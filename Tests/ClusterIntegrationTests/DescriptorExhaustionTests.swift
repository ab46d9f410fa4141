import Foundation
import Glibc
import Testing

extension IntegrationTests {
    /// A flood of idle connections against a low descriptor limit (`ulimit -n 256` for
    /// the primary and its workers) is an episode, not an outage: the primary logs it once,
    /// closes what it cannot hand over, and serves again by itself once the clients leave.
    @Suite(.timeLimit(.minutes(3)))
    struct DescriptorExhaustionTests {
        @Test(arguments: ["leastConnections", "roundRobin"])
        func aConnectionFloodAtTheDescriptorLimitPassesAndServingResumes(strategy: String) async throws {
            try raiseOwnDescriptorLimit(to: 4096)
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: ["WORKERS": "2", "DISTRIBUTION": strategy],
                                             shellPrefix: "ulimit -n 256")
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            let port = listening[0]["port"] as! Int
            let workers = listening.map { Int32($0["pid"] as! Int) }
            workers.forEach(primary.adopt)
            let openDescriptors = { (pid: Int32) in descriptors(of: pid).count }

            // 600 idle connections: more than the primary and both workers can hold. Each
            // worker fills its table (a worker declines what the kernel could not give it).
            var flood: [ClientConnection] = []
            for _ in 0..<600 { flood.append(try ClientConnection(port: port)) }
            let filled = ContinuousClock.now + .seconds(30)
            while workers.contains(where: { openDescriptors($0) < 200 }), ContinuousClock.now < filled {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(workers.allSatisfy { openDescriptors($0) >= 200 }, "the workers did not fill up: \(workers.map(openDescriptors))")
            flood.removeAll() // the clients leave

            // Served again without help, within a bound.
            var served: HTTP.Response?
            let deadline = ContinuousClock.now + .seconds(30)
            while served == nil, ContinuousClock.now < deadline {
                served = try? HTTP.get(port: port, timeout: .seconds(2))
                if served == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(served?.status == 200, "the primary did not serve again within 30 s of the flood ending")

            // If the primary itself ran out (how far it gets depends on timing), it said so
            // once per episode, and said when it was over.
            let episodes = primary.output.filter { $0.contains("is out of descriptors") }.count
            #expect(episodes <= 3, "logged \(episodes) times; once per episode is the promise")
            if episodes > 0 { _ = try await primary.waitForLine { $0.contains("listener 0 has descriptors again") } }
            #expect(primary.events(["event": "exit"]).isEmpty, "a worker died: \(primary.events(["event": "exit"]))")
            #expect(kill(primary.pid, 0) == 0, "the primary is gone")
        }

        private func raiseOwnDescriptorLimit(to wanted: rlim_t) throws {
            var limit = rlimit()
            getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            guard limit.rlim_cur < wanted else { return }
            limit.rlim_cur = min(wanted, limit.rlim_max)
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        }
    }
}
