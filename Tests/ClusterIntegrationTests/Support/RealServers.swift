import Foundation
import Synchronization
import Testing

// MARK: Processes, ports and executables

/// Every pid in /proc with its parent and start time (clock ticks since boot).
private func processTable() -> [Int32: (parent: Int32, start: UInt64)] {
    var table: [Int32: (parent: Int32, start: UInt64)] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(name), let entry = statEntry(pid) else { continue }
        table[pid] = entry
    }
    return table
}

/// A process's parent and start time, or nil when it is gone or a zombie.
private func statEntry(_ pid: Int32) -> (parent: Int32, start: UInt64)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // fields[0] is the state (field 3), fields[1] the parent, fields[19] the start time (field 22).
    guard fields.count > 19, fields[0] != "Z", fields[0] != "X", let parent = Int32(fields[1]),
          let start = UInt64(fields[19]) else { return nil }
    return (parent, start)
}

/// `root` and every process below it, with their start times (to tell a reused pid).
func processTree(of root: Int32) -> [Int32: UInt64] {
    let table = processTable()
    guard let rootEntry = table[root] else { return [:] }
    var tree: [Int32: UInt64] = [root: rootEntry.start]
    var added = true
    while added {
        added = false
        for (pid, entry) in table where tree[pid] == nil && tree[entry.parent] != nil {
            tree[pid] = entry.start
            added = true
        }
    }
    return tree
}

/// Whether `pid` is still the process that started at `start`.
private func stillRuns(_ pid: Int32, _ start: UInt64) -> Bool {
    statEntry(pid)?.start == start
}

/// The processes of `tree` still running after `timeout` (returns as soon as none is).
func survivors(of tree: [Int32: UInt64], within timeout: Duration) async -> [Int32: UInt64] {
    let deadline = ContinuousClock.now + timeout
    while true {
        let left = tree.filter { stillRuns($0.key, $0.value) }
        if left.isEmpty || ContinuousClock.now > deadline { return left }
        try? await Task.sleep(for: .milliseconds(20))
    }
}

/// "pid (command line)" for each process, for failure messages.
func describe(_ tree: [Int32: UInt64]) -> String {
    tree.keys.sorted().map { pid in
        let line = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?
            .replacingOccurrences(of: "\0", with: " ").trimmingCharacters(in: .whitespaces) ?? "?"
        return "\(pid) (\(line))"
    }.joined(separator: ", ")
}

/// Every process seen in a cluster's tree; `killAll` SIGKILLs those still running (a pid
/// whose start time changed belongs to someone else now and is left alone).
final class Reaper: Sendable {
    private let seen = Mutex<[Int32: UInt64]>([:])
    private let roots = Mutex<[Int32: UInt64]>([:])

    /// Notes `root` and every process below it now, and returns them. A root whose pid now
    /// names another process is not looked below again.
    @discardableResult
    func track(_ root: Int32) -> [Int32: UInt64] {
        let tree = processTree(of: root)
        guard let start = tree[root], roots.withLock({ $0[root, default: start] == start }) else { return [:] }
        roots.withLock { $0[root] = start }
        seen.withLock { $0.merge(tree) { old, _ in old } }
        return tree
    }

    /// Stops every tracked process before it kills any: a master (nginx) whose worker died
    /// first would start another. Then looks again below the roots, for a process started
    /// between the last look and the stop.
    func killAll() {
        for _ in 0..<3 {
            for root in roots.withLock({ $0.keys }) { track(root) }
            let alive = seen.withLock { $0 }.filter { stillRuns($0.key, $0.value) }
            if alive.isEmpty { return }
            for pid in alive.keys { kill(pid, SIGSTOP) }
            for root in roots.withLock({ $0.keys }) { track(root) }
            for (pid, start) in seen.withLock({ $0 }) where stillRuns(pid, start) { kill(pid, SIGKILL) }
        }
    }
}

/// Connects to the Unix socket at `path`, sends `request`, and reads until `until` arrives
/// or the peer closes (5 s limit on each read and write).
func unixExchange(_ path: String, request: [UInt8], until: UInt8?) throws -> [UInt8] {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure.unexpected("socket: errno \(errno)") }
    defer { close(fd) }
    var limit = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw TestFailure.unexpected("path too long: \(path)") }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes + [0]) }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else { throw TestFailure.unexpected("connect \(path): errno \(errno)") }
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
        throw TestFailure.unexpected("send to \(path): errno \(errno)")
    }
    var reply: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while until.map({ !reply.contains($0) }) ?? true {
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { break }
        reply += buffer[0..<n]
    }
    return reply
}

/// The workers of `cluster status --json`, from the control socket at `path`: one JSON line
/// asks, one JSON line answers.
func controlStatus(_ path: String) throws -> [[String: Any]] {
    let reply = try unixExchange(path, request: Array("{\"command\":\"status\",\"arguments\":[]}\n".utf8), until: 10)
    guard let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
          let status = object["status"] as? [String: Any], let workers = status["workers"] as? [[String: Any]] else {
        throw TestFailure.unexpected("status on \(path): \(String(decoding: reply, as: UTF8.self))")
    }
    return workers
}

/// A TCP port on 127.0.0.1 that nothing listens on now (bound, read, closed).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw TestFailure.unexpected("no free port: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The path of `name` on PATH, if it is there.
func which(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// The path of `tool` on PATH, if a test can run it. A missing tool is a failure in CI
/// (`CI` set: `.ci/run` installs it), elsewhere a skip with the reason printed.
func requiredTool(_ tool: String, by suite: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    if let path = which(tool) { return path }
    if ProcessInfo.processInfo.environment["CI"] != nil {
        Issue.record("\(tool) is not installed: CI must install it (.ci/run)", sourceLocation: sourceLocation)
    } else {
        print("\(suite): skipping: \(tool) is not on PATH")
    }
    return nil
}
