import Foundation
import Synchronization
import Testing

/// Three hosts (network namespaces), each running the supervised fixture (a primary and two
/// workers answering "worker ID pid PID") on :8000 with its admin endpoints on :9090, and
/// HAProxy in front of them on 127.0.0.1. `close()` stops every process and deletes the
/// hosts; call it in a `defer`.
final class BalancedHosts: Sendable {
    static let applicationPort = 8000
    static let adminPort = 9090

    let network: NetworkHosts
    /// Each host's primary, in host order (`ip netns exec` execs it: its pid is the primary's).
    let primaries: [SpawnedProcess]
    let haproxy: HAProxy
    private let reapers: [Reaper]
    private let directory: String

    /// The server name of host `index` in HAProxy (and its cookie value).
    static func name(_ index: Int) -> String { "host\(index + 1)" }

    /// Starts the hosts and HAProxy, and waits until HAProxy's checks pass on all three.
    /// `environment` goes to every primary; `serverOptions` onto every server line.
    static func start(environment: [String: String] = [:], serverOptions: String = "") async throws -> BalancedHosts {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("balanced-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let network = try NetworkHosts(count: 3)
        var primaries: [SpawnedProcess] = []
        var haproxy: HAProxy?
        let reapers = network.hosts.map { _ in Reaper() }
        do {
            for host in network.hosts {
                primaries.append(try SpawnedProcess("ClusterFixture", ["supervised"], environment: [
                    "WORKERS": "2", "PORT": "\(applicationPort)", "ADMIN_PORT": "\(adminPort)",
                ].merging(environment) { $1 }, launcher: network.launcher(host)))
            }
            for (primary, reaper) in zip(primaries, reapers) {
                try await primary.waitForEvent(["event": "admin"])
                _ = try await primary.waitForEvents(["event": "listening"], count: 2)
                reaper.track(primary.pid)
            }
            let servers = network.hosts.enumerated().map { index, host in
                (name: name(index), address: "\(host.address):\(applicationPort)", admin: adminPort)
            }
            haproxy = try HAProxy(servers: servers, serverOptions: serverOptions, directory: directory)
            let hosts = BalancedHosts(network: network, primaries: primaries, haproxy: haproxy!, reapers: reapers, directory: directory)
            do {
                try await hosts.haproxy.waitFor("checked up") { rows in
                    rows.count == 3 && rows.values.allSatisfy { $0["status"] == "UP" && $0["check_status"] == "L7OK" }
                }
            } catch {
                hosts.close()
                throw error
            }
            return hosts
        } catch {
            haproxy?.stop()
            stop(primaries, reapers)
            network.remove()
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    private init(network: NetworkHosts, primaries: [SpawnedProcess], haproxy: HAProxy, reapers: [Reaper], directory: String) {
        self.network = network
        self.primaries = primaries
        self.haproxy = haproxy
        self.reapers = reapers
        self.directory = directory
    }

    /// Stops HAProxy and every process of every host (orphaned workers too), then deletes
    /// the hosts and the files.
    func close() {
        haproxy.stop()
        BalancedHosts.stop(primaries, reapers)
        network.remove()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func stop(_ primaries: [SpawnedProcess], _ reapers: [Reaper]) {
        for (primary, reaper) in zip(primaries, reapers) {
            reaper.track(primary.pid)
            reaper.killAll()
            primary.stop()
        }
    }

    /// Notes every process of host `index` now, so `close()` finds workers its primary
    /// leaves behind, and returns them.
    @discardableResult
    func track(_ index: Int) -> [Int32: UInt64] { reapers[index].track(primaries[index].pid) }

    /// The pids of the workers host `index` forked, by worker id.
    func workers(of index: Int) -> [Int: String] {
        var workers: [Int: String] = [:]
        for event in primaries[index].events(["event": "fork"]) {
            if let id = event["id"] as? Int, let pid = event["pid"] as? Int { workers[id] = String(pid) }
        }
        return workers
    }

    /// The host index whose primary forked the worker with `pid`.
    func host(ofWorker pid: String) -> Int? {
        primaries.indices.first { workers(of: $0).values.contains(pid) }
    }

    /// The supervisor's account of host `index`: its generation and its latest reload.
    func reloadStatus(_ index: Int) async throws -> (generation: Int?, reload: String) {
        let primary = primaries[index]
        let before = primary.events(["event": "status"]).count
        primary.send("status")
        let status = try await primary.waitForEvents(["event": "status"], count: before + 1)[before]
        return (status["generation"] as? Int, status["reload"] as? String ?? "")
    }

    /// Waits until host `index` refuses connections on its application port (its listening
    /// socket is closed: every process holding it has exited), trying every millisecond for
    /// up to `timeout`. True when it does.
    func refusesConnections(_ index: Int, within timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            do {
                _ = try ClientConnection(host: network.hosts[index].address, port: BalancedHosts.applicationPort, timeout: 1)
            } catch .refused {
                return true
            } catch {}
            try? await Task.sleep(for: .milliseconds(1))
        }
        return false
    }

    /// The status of GET /readyz on host `index`'s admin port (over its veth pair), or nil
    /// when it does not answer.
    func readyz(_ index: Int) -> Int? {
        try? HTTP.get(host: network.hosts[index].address, port: BalancedHosts.adminPort, path: "/readyz", timeout: .seconds(2)).status
    }
}

/// What clients saw through the balancer: answers (200) by the worker pid that gave them,
/// everything else with the instant its request started, and when each request started.
struct BalancerTally: CustomStringConvertible {
    var answers: [String: Int] = [:]
    var failures: [(started: ContinuousClock.Instant, what: String)] = []
    var starts: [ContinuousClock.Instant] = []
    /// Whether the request-count bound stopped the clients before they were told to stop.
    var bounded = false

    var answered: Int { answers.values.reduce(0, +) }

    /// How many requests started within `interval`.
    func started(in interval: ClosedRange<ContinuousClock.Instant>) -> Int { starts.count { interval.contains($0) } }

    var description: String {
        let kinds = Dictionary(failures.map { ($0.what, 1) }, uniquingKeysWith: +)
        return "\(answered) answered, \(failures.count) failed \(kinds)"
    }
}

/// `clients` threads requesting / through the balancer on 127.0.0.1:`port`, each on a new
/// connection, until `stop()`, `limit` or `maxRequests` (both bounds, so a test that loses
/// its way still ends).
final class BalancerLoad: Sendable {
    private let tally = Mutex(BalancerTally())
    private let stopping = Atomic(false)
    private let finished = Atomic(0)
    private let clients: Int

    init(port: Int, clients: Int, limit: Duration = .seconds(60), maxRequests: Int = 200_000) {
        self.clients = clients
        let deadline = ContinuousClock.now + limit
        let issued = Atomic(0)
        for _ in 0..<clients {
            Thread.detachNewThread { [self] in
                while !stopping.load(ordering: .relaxed), ContinuousClock.now < deadline {
                    guard issued.wrappingAdd(1, ordering: .relaxed).oldValue < maxRequests else {
                        tally.withLock { $0.bounded = true }
                        break
                    }
                    let started = ContinuousClock.now
                    let (worker, failure) = BalancerLoad.request(port: port)
                    tally.withLock { tally in
                        tally.starts.append(started)
                        if let worker { tally.answers[worker, default: 0] += 1 }
                        if let failure { tally.failures.append((started, failure)) }
                    }
                }
                finished.add(1, ordering: .releasing)
            }
        }
    }

    /// One request on a new connection: the answering worker's pid, or what went wrong.
    private static func request(port: Int) -> (worker: String?, failure: String?) {
        do {
            let (outcome, response) = try ClientConnection(port: port).get(keepAlive: false)
            guard let response else { return (nil, "\(outcome)") }
            guard response.status == 200 else { return (nil, "HTTP \(response.status)") }
            let words = response.body.split(whereSeparator: \.isWhitespace)
            return (words.count > 3 ? String(words[3]) : response.body, nil)
        } catch {
            return (nil, "\(error)")
        }
    }

    var current: BalancerTally { tally.withLock { $0 } }

    /// Waits until `count` more requests than now have been answered.
    func waitForAnswers(_ count: Int, timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let target = current.answered + count
        let deadline = ContinuousClock.now + timeout
        while current.answered < target {
            guard ContinuousClock.now < deadline else {
                Issue.record("fewer than \(count) answers within \(timeout): \(current)", sourceLocation: sourceLocation)
                throw TestFailure.timeout
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Tells the clients to stop at their next request (for a `defer`: `stop()` also waits).
    func cancel() { stopping.store(true, ordering: .relaxed) }

    /// Tells the clients to stop, waits for them, and returns what they saw.
    func stop() async -> BalancerTally {
        stopping.store(true, ordering: .relaxed)
        while finished.load(ordering: .acquiring) < clients { try? await Task.sleep(for: .milliseconds(10)) }
        return current
    }
}
