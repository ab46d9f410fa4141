import Foundation
import Synchronization
import Testing

/// The example running as a primary: its output as lines, and a guarantee that it and the
/// workers it reported are SIGKILLed by pid when the test is done with it.
final class ExampleProcess: Sendable {
    let pid: Int32
    private let process: Process
    private let lines = Lines()
    private let workers = Mutex<Set<Int32>>([])

    /// Starts the `vapor-express` product of this build with `environment` added to ours.
    init(environment: [String: String]) throws {
        let process = Process()
        process.executableURL = ExampleProcess.product("vapor-express")
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        self.process = process
        pid = process.processIdentifier
        let reader = output.fileHandleForReading
        Thread.detachNewThread { [lines] in
            var partial = Data()
            while case let chunk = reader.availableData, !chunk.isEmpty {
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

    /// A product of this build: the test bundle lives in the same directory.
    private static func product(_ name: String) -> URL {
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent(name).path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent(name)
    }

    /// Everything printed so far.
    var output: [String] { lines.all }

    /// Waits for a line that satisfies `predicate` and returns it, or fails the test.
    @discardableResult
    func waitForLine(timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                     _ predicate: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let match = output.first(where: predicate) { return match }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("no matching line within \(timeout); output was:\n\(output.joined(separator: "\n"))", sourceLocation: sourceLocation)
        throw TestFailure.timeout
    }

    /// Worker ids to pids, and the port, once the primary has said `count` times that a
    /// worker is listening (`Worker 1 (pid 123) is listening on tcp://0.0.0.0:41234`).
    /// The workers are SIGKILLed with the primary.
    func listeningWorkers(count: Int) async throws -> (workers: [Int: Int32], port: Int) {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            var workers: [Int: Int32] = [:]
            var port = 0
            for line in output where line.hasPrefix("Worker ") && line.contains(" is listening on ") {
                let words = line.split(separator: " ")
                if words.count == 8, let id = Int(words[1]), let pid = Int32(words[3].dropLast()),
                   let bound = words[7].split(separator: "?")[0].split(separator: ":").last.flatMap({ Int($0) }) {
                    workers[id] = pid
                    port = bound
                }
            }
            if workers.count >= count {
                self.workers.withLock { $0.formUnion(workers.values) }
                return (workers, port)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("fewer than \(count) workers listening: \(output)")
        throw TestFailure.timeout
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

    /// SIGKILLs the workers it reported and the program.
    func stop() {
        for pid in workers.withLock({ $0 }) { kill(pid, SIGKILL) }
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

/// CPU seconds (user + system) `pid` has used, from /proc, or nil when it is gone.
func cpuSeconds(of pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
