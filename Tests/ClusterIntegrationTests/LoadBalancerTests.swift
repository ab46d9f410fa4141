import Foundation
import Testing

extension IntegrationTests {
    /// HAProxy (`deploy/haproxy/haproxy.cfg`) in front of three hosts, each a network
    /// namespace running a supervised cluster with its admin port, under load from bounded
    /// clients on loopback: a rolling deploy host by host, a host whose primary dies, and
    /// stickiness from the cookie to the worker. Without haproxy, root or `ip netns`: skipped
    /// with a printed reason, or in CI (`CI` set) a failure.
    @Suite(.timeLimit(.minutes(2)))
    struct LoadBalancerTests {
        /// Each host in turn: drained in HAProxy until it holds no session, reloaded (SIGHUP
        /// to its primary) until the reload completed and /readyz is 200, put back. No request
        /// fails, and every host's new workers serve afterwards.
        @Test func aRollingDeployHostByHostFailsNoRequest() async throws {
            guard HAProxy.available() else { return }
            let hosts = try await BalancedHosts.start()
            defer { hosts.close() }
            let haproxy = hosts.haproxy
            let load = BalancerLoad(port: haproxy.port, clients: 6)
            defer { load.cancel() }
            try await load.waitForAnswers(100)
            let started = ContinuousClock.now
            for index in 0..<3 {
                let name = BalancedHosts.name(index)
                let step = ContinuousClock.now
                try haproxy.command("set server \(haproxy.backend)/\(name) state drain")
                let drained = try await haproxy.waitFor("\(name) drained") { $0[name]?["status"] == "DRAIN" && $0[name]?["scur"] == "0" }
                hosts.primaries[index].signal(SIGHUP)
                try await waitUntil("\(name)'s reload to generation 2 completed") {
                    try await hosts.reloadStatus(index).reload == "reload to generation 2 complete"
                }
                try await waitUntil("\(name)'s /readyz answered 200") { hosts.readyz(index) == 200 }
                hosts.track(index)
                try haproxy.command("set server \(haproxy.backend)/\(name) state ready")
                try await haproxy.waitFor("\(name) up again") { $0[name]?["status"] == "UP" }
                let replacements = hosts.workers(of: index).filter { $0.key > 2 }.values
                try await waitUntil("\(name)'s new workers answered") {
                    replacements.contains { load.current.answers[$0, default: 0] > 0 }
                }
                print("LoadBalancerTests: \(name) drained in \(drained), deployed and back in service after \(ContinuousClock.now - step); load so far: \(load.current)")
            }
            let tally = await load.stop()
            print("LoadBalancerTests: rolling deploy of 3 hosts in \(ContinuousClock.now - started): \(tally)")
            #expect(tally.failures.isEmpty, "\(tally)")
            #expect(!tally.bounded, "the load ran through the whole deploy: \(tally)")
            for index in 0..<3 {
                let workers = hosts.workers(of: index)
                #expect(workers.keys.sorted() == [1, 2, 3, 4], "host \(index + 1) replaced its two workers once: \(workers)")
            }
        }

        /// A host's primary SIGKILLed under load: its workers die with it (PR_SET_PDEATHSIG)
        /// and its admin port closes, so HAProxy's checks (inter 500ms, fall 2) take it out
        /// within about two intervals. Failures are bounded by the requests the host could
        /// still take: each client's one outstanding request at the kill, plus those sent in
        /// the milliseconds until the kernel closed its listening socket (HAProxy cannot resend
        /// a request a server accepted). From then on the host refuses connections, which
        /// HAProxy retries on another host (retries 2, redispatch): none fails.
        @Test func aHostWhosePrimaryIsKilledIsTakenOutWithinTwoCheckIntervals() async throws {
            guard HAProxy.available() else { return }
            let hosts = try await BalancedHosts.start()
            defer { hosts.close() }
            let haproxy = hosts.haproxy
            let clients = 6
            let load = BalancerLoad(port: haproxy.port, clients: clients)
            defer { load.cancel() }
            try await load.waitForAnswers(200)
            let processes = hosts.track(1)
            let killed = ContinuousClock.now
            hosts.primaries[1].signal(SIGKILL)
            #expect(await hosts.refusesConnections(1), "host2's listening socket closed")
            let gone = ContinuousClock.now
            #expect(await survivors(of: processes, within: .seconds(5)).isEmpty, "host2's workers died with their primary")
            try await haproxy.waitFor("host2 down", timeout: .seconds(10)) { $0["host2"]?["status"]?.hasPrefix("DOWN") == true }
            let removal = ContinuousClock.now - killed
            try await load.waitForAnswers(300)
            let tally = await load.stop()
            let late = tally.failures.filter { $0.started > gone }
            let teardown = tally.started(in: killed...gone)
            print("LoadBalancerTests: host2's primary SIGKILLed under load from \(clients) clients: it refused connections after \(gone - killed), "
                  + "HAProxy marked it down after \(removal); \(tally), bound \(clients) + \(teardown) sent meanwhile")
            // Two intervals (fall 2 × inter 500ms) after the first failed check, which comes
            // within an interval of the kill (a refused connection fails it at once), and room
            // for a busy machine.
            #expect(removal < .seconds(3), "HAProxy took \(removal) to take the host out")
            #expect(late.isEmpty, "no request started after host2 refused connections fails: \(late.map { ($0.started - gone, $0.what) })")
            #expect(tally.failures.count <= clients + teardown,
                    "failed requests are bounded by those host2 could take: \(clients) in flight, \(teardown) sent before it refused: \(tally)")
            #expect(!tally.bounded, "\(tally)")
        }

        /// HAProxy's cookie keeps a client on one host; `sticky` distribution keeps it on one
        /// worker there, by the client's address, which the PROXY protocol carries from
        /// HAProxy (`send-proxy-v2`) to the listener (`?proxy=v2`). Clients from 16 loopback
        /// addresses each stay on one worker, and clients of one host land on different
        /// workers: without the PROXY protocol every client of a host would have HAProxy's
        /// address. Needs `?proxy=v2` in listener addresses: without it, this fails saying so.
        @Test func aClientStaysOnOneHostByCookieAndOnOneWorkerByItsAddress() async throws {
            guard HAProxy.available() else { return }
            let listen = "tcp://0.0.0.0:\(BalancedHosts.applicationPort)?proxy=v2"
            let (code, output) = try runToEnd(SpawnedProcess.product("cluster"), ["validate", "--listen", listen, "--", "/bin/true"],
                                              timeout: .seconds(30))
            guard code == 0 else {
                Issue.record("PROXY protocol not available in this build: `cluster validate --listen \(listen)` exited \(code): \(output)")
                return
            }
            let hosts = try await BalancedHosts.start(environment: ["LISTEN": listen, "DISTRIBUTION": "sticky"],
                                                      serverOptions: "send-proxy-v2")
            defer { hosts.close() }
            var placements: [String: (host: String, workers: Set<String>)] = [:]
            for last in 2...17 {
                let source = "127.0.0.\(last)"
                var cookie: String?
                var workers: Set<String> = []
                for _ in 0..<6 {
                    let headers = cookie.map { ["Cookie: SERVERID=\($0)"] } ?? []
                    let (outcome, answer) = try ClientConnection(port: hosts.haproxy.port, source: source).get(headers: headers, keepAlive: false)
                    let response = try #require(answer, "\(source): \(outcome)")
                    try #require(response.status == 200, "\(source): \(response)")
                    let setCookie = response.headers["set-cookie"].flatMap { $0.split(separator: ";").first }
                    cookie = cookie ?? setCookie.map { String($0.dropFirst("SERVERID=".count)) }
                    workers.insert(String(response.body.split(whereSeparator: \.isWhitespace)[3]))
                }
                placements[source] = (try #require(cookie, "HAProxy set no cookie for \(source)"), workers)
            }
            print("LoadBalancerTests: placements \(placements.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value.host) \($0.value.workers.sorted())" })")
            for (source, placement) in placements {
                #expect(placement.workers.count == 1, "\(source) stayed on one worker: \(placement)")
                let host = placement.workers.first.flatMap(hosts.host(ofWorker:)).map(BalancedHosts.name)
                #expect(host == placement.host, "\(source)'s worker is on the host its cookie names: \(placement)")
            }
            let byHost = Dictionary(grouping: placements.values) { $0.host }.mapValues { Set($0.flatMap { $0.workers }) }
            #expect(byHost.count == 3, "round robin spread first requests over every host: \(byHost)")
            #expect(byHost.values.contains { $0.count > 1 }, "clients of one host reached different workers by their own addresses: \(byHost)")
        }

        /// Polls `condition` every 20 ms for up to 30 s; records an issue and throws when it
        /// never holds.
        private func waitUntil(_ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                               _ condition: () async throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while try await !condition() {
                guard ContinuousClock.now < deadline else {
                    Issue.record("not \(what) within 30 s", sourceLocation: sourceLocation)
                    throw TestFailure.timeout
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }
}
