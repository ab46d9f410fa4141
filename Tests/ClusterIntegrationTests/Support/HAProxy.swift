import Foundation
import Synchronization
import Testing

/// HAProxy in the foreground on 127.0.0.1, running `deploy/haproxy/haproxy.cfg` with its bind
/// address, runtime-API socket and server lines replaced: what the docs show is what the
/// tests run. Stopped (SIGKILL) by `stop()` or when released.
final class HAProxy: Sendable {
    /// The frontend's port on 127.0.0.1.
    let port: Int
    /// The backend the servers are in.
    let backend = "cluster"
    private let socket: String
    private let log: String
    private let process: Process

    /// The example configuration the docs show.
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../deploy/haproxy/haproxy.cfg").standardizedFileURL.path

    /// Whether HAProxy can run here. Missing: skipped with a printed reason, or in CI a failure.
    static func available(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let reason = which("haproxy") == nil ? "haproxy is not on PATH" : NetworkHosts.unavailable
        guard let reason else { return true }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record("\(reason): CI must run as root with haproxy installed (.ci/run)", sourceLocation: sourceLocation)
        } else {
            print("LoadBalancerTests: skipping: \(reason)")
        }
        return false
    }

    /// Starts HAProxy with one server line per host (`name`, `address:port`, admin port),
    /// each with `serverOptions` added (`send-proxy-v2`), files in `directory`.
    init(servers: [(name: String, address: String, admin: Int)], serverOptions: String = "", directory: String) throws {
        port = try freePort()
        socket = "\(directory)/haproxy.sock"
        log = "\(directory)/haproxy.log"
        let configuration = "\(directory)/haproxy.cfg"
        try HAProxy.configuration(port: port, socket: socket, servers: servers, serverOptions: serverOptions)
            .write(toFile: configuration, atomically: true, encoding: .utf8)
        guard FileManager.default.createFile(atPath: log, contents: nil) else { throw TestFailure.unexpected("cannot create \(log)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: which("haproxy")!)
        process.arguments = ["-db", "-f", configuration] // -db: in the foreground, one process
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = process.standardOutput
        try process.run()
        self.process = process
    }

    deinit { stop() }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The example with the test's frontend port, socket and servers. Each replaced line
    /// must be there: a changed example fails here rather than test something else.
    static func configuration(port: Int, socket: String, servers: [(name: String, address: String, admin: Int)],
                              serverOptions: String) throws -> String {
        let example = try String(contentsOfFile: HAProxy.example, encoding: .utf8)
        var lines: [String] = []
        var replaced: Set<String> = []
        for line in example.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let words = line.split(separator: " ")
            switch (words.first, words.dropFirst().first) {
            case ("bind"?, _):
                lines.append("    bind 127.0.0.1:\(port)")
                replaced.insert("bind")
            case ("stats"?, "socket"?):
                lines.append("    stats socket \(socket) mode 600 level admin")
                replaced.insert("stats")
            case ("server"?, _):
                guard replaced.insert("server").inserted else { continue }
                lines += servers.map { server in
                    "    server \(server.name) \(server.address) cookie \(server.name) port \(server.admin) \(serverOptions)"
                }
            default:
                lines.append(line)
            }
        }
        guard replaced.isSuperset(of: ["bind", "stats", "server"]) else {
            throw TestFailure.unexpected("\(example) has no bind, stats socket or server line to replace: \(replaced)")
        }
        return lines.joined(separator: "\n")
    }

    /// What HAProxy printed (for failure messages).
    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Sends one runtime-API command and returns the answer (HAProxy closes after it).
    @discardableResult
    func command(_ line: String) throws -> String {
        try String(decoding: unixExchange(socket, request: Array((line + "\n").utf8), until: nil), as: UTF8.self)
    }

    /// Each server of the backend's row of `show stat`, by server name: `status` (UP,
    /// DOWN, DRAIN, MAINT, ...), `scur` (current sessions), `check_status`...
    func servers() throws -> [String: [String: String]] {
        let csv = try command("show stat").split(separator: "\n")
        guard let header = csv.first, header.hasPrefix("# ") else { throw TestFailure.unexpected("show stat: \(csv)") }
        let names = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var rows: [String: [String: String]] = [:]
        for line in csv.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            let row = Dictionary(zip(names, fields), uniquingKeysWith: { first, _ in first })
            guard row["pxname"] == backend, let name = row["svname"], name != "BACKEND" else { continue }
            rows[name] = row
        }
        return rows
    }

    /// Waits until `predicate` holds of the servers' rows, polling every 10 ms (a runtime
    /// API not answering yet counts as not yet); returns how long that took.
    @discardableResult
    func waitFor(_ what: String, timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                 _ predicate: ([String: [String: String]]) -> Bool) async throws -> Duration {
        let start = ContinuousClock.now
        var rows: [String: [String: String]] = [:]
        var failure: (any Error)?
        while ContinuousClock.now - start < timeout, process.isRunning {
            do {
                rows = try servers()
                failure = nil
                if predicate(rows) { return ContinuousClock.now - start }
            } catch {
                failure = error
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let summary = rows.keys.sorted().map { "\($0): \(rows[$0]?["status"] ?? "?") \(rows[$0]?["check_status"] ?? "")" }
        let api = failure.map { "; runtime API: \($0)" } ?? ""
        Issue.record("HAProxy\(process.isRunning ? "" : " exited"): not \(what) within \(timeout): \(summary)\(api); log:\n\(output)",
                     sourceLocation: sourceLocation)
        throw TestFailure.timeout
    }
}
