import CClusterShims
import Cluster
import Foundation
import Synchronization

/// A request on the control socket: one JSON line from `cluster status`, `reload`, ....
struct ControlRequest: Codable, Sendable {
    var command: String
    var arguments: [String] = []
}

/// The answer to everything but `logs`: one JSON object, then the server closes.
struct ControlReply: Codable, Sendable {
    var ok: Bool
    var message: String
    var status: ClusterStatus?
}

/// What `cluster status` shows.
struct ClusterStatus: Codable, Sendable {
    struct Row: Codable, Sendable {
        var id: Int
        var pid: Int32
        var programPID: Int32?
        var slot: Int
        var generation: Int
        var state: String
        var uptimeSeconds: Double
        var restarts: Int
        var cpuSeconds: Double
        var rssBytes: Int
        var requestsPerSecond: Double
        var connections: Int
    }

    var primaryPID: Int32
    var desiredWorkers: Int
    /// Advances only when a reload completes (every replacement ready).
    var generation: Int
    var workers: [Row]
    /// The latest reload's outcome: under way, complete, or failed and why; nil before the first.
    var reload: String?
}

/// The primary's end of the control socket: a Unix socket, mode 0600, that serves only
/// peers of the primary's own user (or root), checked with SO_PEERCRED.
final class ControlServer: Sendable {
    let path: String
    private let fd: Int32
    /// The socket file's inode, so this primary removes only its own file.
    private let inode: UInt
    private let supervisor: Supervisor
    /// Each worker's program pid, for `status` and `signal`.
    let programs = ProgramGroups()
    private let logs: LogBuffer

    /// Binds `path`. At the default path, its directory is made (0700) or checked first
    /// (``ControlPath/prepareDefaultDirectory()``). A socket file nobody answers on (left by a
    /// primary that is gone) is replaced; a live socket, a regular file or anything else
    /// at `path` is left as it is and is an error.
    /// With `takingOver` (a hot upgrade), the old primary's live socket is replaced.
    init(path: String, supervisor: Supervisor, logs: LogBuffer, takingOver: Bool = false) throws {
        if path == ControlPath.defaultPath { try ControlPath.prepareDefaultDirectory() }
        var existing = stat()
        if takingOver, lstat(path, &existing) == 0, existing.st_mode & S_IFMT == S_IFSOCK {
            unlink(path)
        } else {
            do {
                try Socket.removeStaleSocket(at: path, for: "the control socket")
            } catch {
                throw CommandError(error.context + (error.errno.map { " (\(String(cString: strerror($0))))" } ?? ""))
            }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("cannot make the control socket: \(String(cString: strerror(errno)))") }
        let saved = umask(0o177) // mode 0600 from the start, not after a window
        defer { umask(saved) }
        guard ControlClient.withAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw CommandError("cannot listen on the control socket \(path): \(reason); give --control a path in a directory you can write")
        }
        var info = stat()
        stat(path, &info)
        self.inode = info.st_ino
        self.path = path
        self.fd = fd
        self.supervisor = supervisor
        self.logs = logs
    }

    /// Serves on threads of its own until the process exits.
    func start() {
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { if errno == EINTR || errno == ECONNABORTED { continue } else { return } }
                Thread.detachNewThread { [self] in serve(client) }
            }
        }
    }

    /// Removes the socket file, unless another primary (a hot upgrade's) has replaced it.
    func remove() {
        var info = stat()
        if stat(path, &info) == 0, info.st_ino == inode { unlink(path) }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        let peer = cluster_peer_uid(client)
        guard peer == Int(getuid()) || peer == 0 else {
            send(ControlReply(ok: false, message: "refused: only user \(getuid()) or root may control this cluster"), to: client)
            return
        }
        guard let line = ControlClient.readLine(client),
              let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line.utf8)) else {
            send(ControlReply(ok: false, message: "the request was not one JSON line {\"command\": ...}"), to: client)
            return
        }
        if request.command == "logs" {
            streamLogs(to: client, follow: request.arguments.contains("follow"))
            return
        }
        send(run(request), to: client)
    }

    private func run(_ request: ControlRequest) -> ControlReply {
        let supervisor = supervisor
        switch (request.command, request.arguments) {
        case ("status", _):
            return ControlReply(ok: true, message: "", status: wait { await self.status() })
        case ("reload", _):
            supervisor.reload()
            return ControlReply(ok: true, message: "reload started: workers are replaced one by one as their replacements get ready; cluster status shows whether it completed or failed")
        case ("scale", let arguments):
            // Zero workers would leave every connection waiting in the backlog for nobody.
            guard let count = arguments.first.flatMap(Int.init), (1...1024).contains(count) else {
                return ControlReply(ok: false, message: "scale takes a worker count from 1 to 1024; to stop serving, use cluster stop")
            }
            supervisor.scale(to: count)
            return ControlReply(ok: true, message: "scaling to \(count) workers")
        case ("stop", let arguments):
            supervisor.stop(immediately: arguments.contains("now"))
            return ControlReply(ok: true, message: arguments.contains("now") ? "stopping now" : "draining every worker, then stopping")
        case ("signal", let arguments):
            guard arguments.count == 2, let id = Int(arguments[0]), let signal = Signal(name: arguments[1]) else {
                return ControlReply(ok: false, message: "signal takes a worker id and a signal name or number: cluster signal 2 USR1")
            }
            guard let pid = programs.program(of: id) ?? supervisor.primary.workers[id]?.pid else {
                return ControlReply(ok: false, message: "no worker \(id); cluster status lists them")
            }
            guard kill(pid, signal.rawValue) == 0 else {
                return ControlReply(ok: false, message: "kill(\(pid), \(signal)): \(String(cString: strerror(errno)))")
            }
            return ControlReply(ok: true, message: "sent \(signal) to worker \(id)'s program (pid \(pid))")
        default:
            return ControlReply(ok: false, message: "unknown command '\(request.command)'; the commands are status, reload, scale, stop, signal, logs")
        }
    }

    private func status() async -> ClusterStatus {
        let rows = await supervisor.status.map { entry in
            let stats = entry.worker.stats
            return ClusterStatus.Row(
                id: entry.worker.id, pid: entry.worker.pid, programPID: programs.program(of: entry.worker.id),
                slot: entry.worker.slot, generation: entry.generation, state: entry.role.rawValue,
                uptimeSeconds: entry.uptime.inSeconds, restarts: entry.restarts,
                cpuSeconds: stats.cpuTime.inSeconds, rssBytes: stats.residentMemory,
                requestsPerSecond: stats.requestsPerSecond, connections: stats.connections)
        }
        return ClusterStatus(primaryPID: getpid(), desiredWorkers: await supervisor.desiredWorkers,
                             generation: await supervisor.currentGeneration, workers: rows,
                             reload: await supervisor.lastReload.map { "\($0)" })
    }

    private func streamLogs(to client: Int32, follow: Bool) {
        let (backlog, updates) = logs.subscribe(follow: follow)
        for line in backlog where !ControlClient.write(line + "\n", to: client) { return }
        guard let updates else { return }
        defer { logs.unsubscribe(updates) }
        while let line = updates.next() {
            if !ControlClient.write(line + "\n", to: client) { return }
        }
    }

    private func send(_ reply: ControlReply, to client: Int32) {
        guard let data = try? JSONEncoder().encode(reply) else { return }
        _ = ControlClient.write(String(decoding: data, as: UTF8.self) + "\n", to: client)
    }

    /// Runs `body` and blocks this (non-pool) thread until it returns.
    private func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let value = await body()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }
}

/// The last lines the workers wrote, prefixed with their id, and the followers of new ones.
final class LogBuffer: Sendable {
    /// A follower's queue of lines; `next()` blocks until one comes.
    final class Follower: Sendable {
        let queue = Mutex<[String]>([])
        let signal = DispatchSemaphore(value: 0)

        func next() -> String? {
            signal.wait()
            return queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        }
    }

    private let capacity: Int
    private let state = Mutex<(lines: [String], followers: [ObjectIdentifier: Follower])>(([], [:]))

    init(capacity: Int = 1000) { self.capacity = capacity }

    func append(worker: Int, line: String) {
        let text = "[worker \(worker)] \(line)"
        let followers = state.withLock { state in
            state.lines.append(text)
            if state.lines.count > capacity { state.lines.removeFirst(state.lines.count - capacity) }
            return Array(state.followers.values)
        }
        for follower in followers {
            follower.queue.withLock { $0.append(text) }
            follower.signal.signal()
        }
    }

    func subscribe(follow: Bool) -> ([String], Follower?) {
        state.withLock { state in
            guard follow else { return (state.lines, nil) }
            let follower = Follower()
            state.followers[ObjectIdentifier(follower)] = follower
            return (state.lines, follower)
        }
    }

    func unsubscribe(_ follower: Follower) {
        _ = state.withLock { $0.followers.removeValue(forKey: ObjectIdentifier(follower)) }
    }
}

/// The client's end: `cluster status` and the other control commands.
enum ControlClient {
    /// Sends `request` to the primary at `path` and calls `line` with each line of the answer.
    /// Talks only to a server of this user's uid or root's (SO_PEERCRED): a socket another
    /// user put at the path gets no request, and its answer is never believed.
    static func send(_ request: ControlRequest, to path: String, line: (String) -> Void) throws {
        let fd: Int32
        do {
            fd = try connect(path)
        } catch {
            throw CommandError("no cluster answers on \(path) (\(error)); is `cluster run` running? give its --control PATH")
        }
        defer { close(fd) }
        let server = cluster_peer_uid(fd)
        guard server == Int(getuid()) || server == 0 else {
            throw CommandError(server < 0
                ? "cannot tell which user serves the control socket \(path) (\(String(cString: strerror(errno)))); nothing was sent to it"
                : "the control socket \(path) is served by uid \(server), not by you (uid \(getuid())) or root; nothing was sent to it, as it is not your cluster: give the --control PATH of your own cluster")
        }
        let data = try JSONEncoder().encode(request)
        guard write(String(decoding: data, as: UTF8.self) + "\n", to: fd) else { throw CommandError("the cluster at \(path) closed the connection") }
        while let text = readLine(fd) { line(text) }
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError(String(cString: strerror(errno))) }
        guard withAddress(path, { Glibc.connect(fd, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw CommandError(reason)
        }
        return fd
    }

    static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Reads up to a newline (dropped) or the end; nil at the end with nothing read.
    static func readLine(_ fd: Int32) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = read(fd, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == 10 { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }

    /// Writes all of `text`; false when the peer is gone.
    static func write(_ text: String, to fd: Int32) -> Bool {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }
}
