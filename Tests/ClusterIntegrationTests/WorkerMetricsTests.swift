import Foundation
import Testing

/// What the app records through swift-metrics in its workers, scraped from the primary's
/// `/metrics` and read with Prometheus's own Python text parser (`prometheus-client`).
@Suite(.serialized) struct WorkerMetricsTests {
    /// One sample as the parser read it.
    struct Sample: Decodable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// The parser, or nil (with the reason printed) where it is not installed; CI installs it.
    static func parserAvailable() throws -> Bool {
        let probe = try runToEnd("/usr/bin/env", ["python3", "-c", "import prometheus_client.parser"], timeout: .seconds(30))
        if probe.code == 0 { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("python3 cannot import prometheus_client (pip install prometheus-client): \(probe.output)")
        } else {
            print("skipped: python3 cannot import prometheus_client; pip install prometheus-client to run this test")
        }
        return false
    }

    /// Scrapes `/metrics` and parses it with `text_string_to_metric_families`, which throws on
    /// anything that is not valid Prometheus text.
    static func scrape(admin: Int) throws -> [Sample] {
        let response = try HTTP.get(port: admin, path: "/metrics")
        guard response.status == 200 else { throw TestFailure.unexpected("/metrics answered \(response.status)") }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).txt")
        try response.body.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                for s in family.samples:
                    print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
            """
        let parsed = try runToEnd("/usr/bin/env", ["python3", "-c", script, file.path], timeout: .seconds(30))
        guard parsed.code == 0 else { throw TestFailure.unexpected("the parser refused /metrics: \(parsed.output)\n\(response.body)") }
        return try parsed.output.split(separator: "\n").map { try JSONDecoder().decode(Sample.self, from: Data($0.utf8)) }
    }

    /// `name`'s value per slot.
    static func perSlot(_ samples: [Sample], _ name: String) -> [String: Double] {
        Dictionary(samples.filter { $0.name == name }.map { ($0.labels["slot"] ?? "?", $0.value) }, uniquingKeysWith: +)
    }

    static func hit(_ port: Int, times: Int) throws {
        for _ in 0..<times {
            let (outcome, response) = try ClientConnection(port: port).get("/count", keepAlive: false)
            guard response?.body.hasPrefix("counted") == true else { throw TestFailure.unexpected("/count: \(outcome)") }
        }
    }

    /// Scrapes until `condition` holds for the samples (the workers send every second).
    static func scrape(admin: Int, until condition: ([Sample]) -> Bool) async throws -> [Sample] {
        let deadline = ContinuousClock.now + .seconds(15)
        var samples = try scrape(admin: admin)
        while !condition(samples), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
            samples = try scrape(admin: admin)
        }
        return samples
    }

    @Test func appCountersFromTwoWorkersAddUpPerSlotAndKeepCountingAcrossARestart() async throws {
        guard try Self.parserAvailable() else { return }
        let primary = try SpawnedProcess("ClusterFixture", ["supervised"], environment: [
            "WORKERS": "2", "ADMIN_PORT": "0", "DISTRIBUTION": "roundRobin", "RESTART_DELAY_MS": "100",
        ])
        defer { primary.stop() }
        let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
        let port = try #require(listening[0]["port"] as? Int)
        let admin = try #require(try await primary.waitForEvent(["event": "admin"])["port"] as? Int)

        try Self.hit(port, times: 20)
        var samples = try await Self.scrape(admin: admin) { Self.perSlot($0, "app_hits_total").values.reduce(0, +) == 20 }
        let before = Self.perSlot(samples, "app_hits_total")
        print("app_hits_total per slot after 20 hits: \(before)")
        #expect(before.values.reduce(0, +) == 20, "every hit counted once: \(before)")
        #expect(Set(before.keys) == ["0", "1"] && before.values.allSatisfy { $0 > 0 }, "both slots served and counted: \(before)")
        let hits = try #require(samples.first { $0.name == "app_hits_total" })
        #expect(hits.labels["route"] == "count", "the app's own label is kept: \(hits.labels)")
        #expect(Self.perSlot(samples, "app_count_seconds_count").values.reduce(0, +) == 20, "the timer observed each hit")
        #expect(samples.contains { $0.name == "app_count_seconds_bucket" && $0.labels["le"] == "+Inf" && $0.value > 0 })

        // The primary's request counts come with the heartbeats, apart from the app's
        // metrics: wait until they have all come, or the kill below loses the last ones.
        _ = try await Self.scrape(admin: admin) { Self.perSlot($0, "cluster_requests_total").values.reduce(0, +) >= 20 }

        // SIGKILL slot 0's worker: its replacement counts from zero, the primary's series does not.
        let victim = try #require(listening.first { $0["slot"] as? Int == 0 })
        kill(Int32(try #require(victim["pid"] as? Int)), SIGKILL)
        _ = try await primary.waitForEvents(["event": "listening"], count: 3)
        samples = try Self.scrape(admin: admin)
        let afterRestart = Self.perSlot(samples, "app_hits_total")
        #expect((afterRestart["0"] ?? 0) >= (before["0"] ?? 0), "slot 0's counter did not go down: \(before) → \(afterRestart)")

        try Self.hit(port, times: 10)
        samples = try await Self.scrape(admin: admin) { Self.perSlot($0, "app_hits_total").values.reduce(0, +) == 30 }
        let after = Self.perSlot(samples, "app_hits_total")
        print("app_hits_total per slot after a restart and 10 more hits: \(after)")
        #expect(after.values.reduce(0, +) == 30, "later hits add to the totals: \(after)")
        #expect((after["0"] ?? 0) > (before["0"] ?? 0), "slot 0's new worker added to its slot's count: \(before) → \(after)")

        // The primary's own series: requests a counter per slot that a restart does not
        // lower either, build info, shares as ratios.
        samples = try await Self.scrape(admin: admin) { Self.perSlot($0, "cluster_requests_total").values.reduce(0, +) >= 30 }
        let requests = Self.perSlot(samples, "cluster_requests_total")
        #expect(requests.values.reduce(0, +) >= 30 && Set(requests.keys) == ["0", "1"], "\(requests)")
        #expect(samples.first { $0.name == "cluster_build_info" }?.value == 1)
        #expect(samples.first { $0.name == "cluster_worker_restarts_total" }?.value == 1)
        #expect(Self.perSlot(samples, "cluster_worker_event_loop_busy_ratio").count == 2)
        #expect(Self.perSlot(samples, "cluster_worker_cpu_seconds_total").values.allSatisfy { $0 > 0 })
        primary.signal(SIGTERM)
        #expect(try await primary.waitForExit() == 0)
    }
}
