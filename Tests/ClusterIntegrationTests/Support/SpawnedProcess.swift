import Foundation
import Synchronization
import Testing

/// A program a test started: its output as lines, its standard input, and a guarantee that
/// it and every pid the test adopts are SIGKILLed by pid when the test is done with it.
final class SpawnedProcess: Sendable {
    let pid: Int32
    private let process: Process
    private let input: FileHandle
    private let lines = Lines()
    private let others = Mutex<Set<Int32>>([])

    /// The path of a product of this build: the test bundle lives in the same directory.
    static func product(_ name: String) -> String {
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        if directory.lastPathComponent.hasSuffix(".xctest") { directory.deleteLastPathComponent() }
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent(name).path),
              directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent(name).path
    }

    /// Starts a product of this package with `arguments` and `environment` added to ours.
    /// With `shellPrefix`, it runs as `/bin/sh -c "PREFIX; exec PRODUCT ARGS"`.
    /// With `launcher`, it runs as `LAUNCHER... PRODUCT ARGS` (`unshare`, `taskset`).
    init(_ product: String, _ arguments: [String] = [], environment: [String: String] = [:], shellPrefix: String? = nil,
         launcher: [String] = []) throws {
        let path = SpawnedProcess.product(product)
        let process = Process()
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [path] + arguments
        } else if let shellPrefix {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(shellPrefix); exec \(([path] + arguments).joined(separator: " "))"]
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = input
        try process.run()
        self.process = process
        self.pid = process.processIdentifier
        self.input = input.fileHandleForWriting
        let reader = output.fileHandleForReading
        let lines = self.lines
        Thread.detachNewThread {
            var partial = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                partial.append(chunk)
                while let newline = partial.firstIndex(of: 10) {
                    let line = String(decoding: partial[partial.startIndex..<newline], as: UTF8.self)
                    partial.removeSubrange(partial.startIndex...newline)
                    lines.append(line)
                }
            }
        }
    }

    deinit { stop() }

    /// Also SIGKILL `pid` when this process is stopped (its workers).
    func adopt(_ pid: Int32) { _ = others.withLock { $0.insert(pid) } }

    /// Everything printed so far.
    var output: [String] { lines.all }

    /// Writes a line to the program's standard input.
    func send(_ line: String) {
        input.write(Data((line + "\n").utf8))
    }

    /// Waits for a line that satisfies `predicate` and returns it, or fails the test.
    @discardableResult
    func waitForLine(timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                     _ predicate: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        var seen = 0
        while ContinuousClock.now < deadline {
            let current = output
            if let match = current[seen...].first(where: predicate) { return match }
            seen = current.count
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("no matching line within \(timeout); output was:\n\(output.joined(separator: "\n"))", sourceLocation: sourceLocation)
        throw TestFailure.timeout
    }

    /// Waits for a JSON line whose fields include `fields` (compared as text).
    @discardableResult
    func waitForEvent(_ fields: [String: String], timeout: Duration = .seconds(20),
                      sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String: Any] {
        let line = try await waitForLine(timeout: timeout, sourceLocation: sourceLocation) { line in
            SpawnedProcess.json(line).map { SpawnedProcess.matches($0, fields) } ?? false
        }
        return SpawnedProcess.json(line)!
    }

    /// Waits for `count` JSON lines with `fields`.
    func waitForEvents(_ fields: [String: String], count: Int, timeout: Duration = .seconds(20),
                       sourceLocation: SourceLocation = #_sourceLocation) async throws -> [[String: Any]] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let found = events(fields)
            if found.count >= count { return found }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("fewer than \(count) events \(fields) within \(timeout); output was:\n\(output.joined(separator: "\n"))", sourceLocation: sourceLocation)
        throw TestFailure.timeout
    }

    /// All JSON lines so far with these fields.
    func events(_ fields: [String: String]) -> [[String: Any]] {
        output.compactMap(SpawnedProcess.json).filter { SpawnedProcess.matches($0, fields) }
    }

    static func matches(_ object: [String: Any], _ fields: [String: String]) -> Bool {
        fields.allSatisfy { key, value in object[key].map { "\($0)" } == value }
    }

    static func json(_ line: String) -> [String: Any]? {
        guard line.hasPrefix("{") else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    /// Waits for the program to exit; returns its exit code, or 128 + the signal that ended it.
    func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { throw TestFailure.timeout }
            try await Task.sleep(for: .milliseconds(5))
        }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// SIGKILLs the program, every adopted pid, and every worker it reported forking
    /// that is still its child (checked, so a recycled pid is never hit).
    func stop() {
        for pid in others.withLock({ $0 }) { kill(pid, SIGKILL) }
        for event in events(["event": "fork"]) {
            guard let pid = (event["pid"] as? Int).map(Int32.init), parent(of: pid) == self.pid else { continue }
            kill(pid, SIGKILL)
        }
        if process.isRunning { kill(pid, SIGKILL) }
    }
}

/// Output lines, shared by the reader thread and the test.
final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

enum TestFailure: Error { case timeout, unexpected(String) }

/// True while `pid` runs (a zombie has exited).
func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// The targets of a process's descriptors, by number.
func descriptors(of pid: Int32) -> [Int: String] {
    let directory = "/proc/\(pid)/fd"
    var result: [Int: String] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
        if let fd = Int(name), let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(name)") {
            result[fd] = target
        }
    }
    return result
}

/// The resident memory of `pid` in kB, from /proc.
func residentKilobytes(_ pid: Int32) -> Int? {
    status(of: pid, "VmRSS").flatMap { Int($0.split(separator: " ")[0]) }
}

/// One field of /proc/PID/status, such as `Uid` or `SigIgn`.
func status(of pid: Int32, _ field: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
    }
    return nil
}

/// The children of `pid` (every thread's), from /proc.
func children(of pid: Int32) -> [Int32] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.flatMap { task in
        ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
            .split(separator: " ").compactMap { Int32($0) }
    }
}

/// Waits until every thread of `pid` is stopped (state T in /proc): SIGSTOP returns
/// before every thread has stopped.
func waitUntilStopped(_ pid: Int32) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let states = threads.compactMap { try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/stat", encoding: .utf8) }
            .compactMap { $0.split(separator: ")").last?.split(separator: " ").first }
        if !states.isEmpty, states.allSatisfy({ $0 == "T" || $0 == "t" }) { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("process \(pid) did not stop within 10 s")
}

/// The state letter of `pid` (R, S, Z...), from /proc.
func processState(_ pid: Int32) -> Character? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(close, offsetBy: 2)]
}

/// The parent of `pid`, from /proc, or nil when it is gone.
func parent(of pid: Int32) -> Int32? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 1 ? Int32(fields[1]) : nil
}

/// CPU seconds (user + system) `pid` has used, from /proc, or nil when it is gone.
func cpuSeconds(of pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Runs `executable` to its end (SIGKILLed after `timeout`), `environment` added to ours, and
/// returns its exit code (128 + the signal, when a signal ended it) and its output.
func runToEnd(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
              timeout: Duration) throws -> (code: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    // Read on a thread of its own: a command that hangs must not hang the test.
    let output = Mutex<Data?>(nil)
    Thread.detachNewThread {
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        output.withLock { $0 = data }
    }
    let deadline = ContinuousClock.now + timeout
    while process.isRunning || output.withLock({ $0 == nil }) {
        if ContinuousClock.now > deadline {
            kill(process.processIdentifier, SIGKILL)
            throw TestFailure.timeout
        }
        usleep(10_000)
    }
    let code = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return (code, String(decoding: output.withLock { $0! }, as: UTF8.self))
}
