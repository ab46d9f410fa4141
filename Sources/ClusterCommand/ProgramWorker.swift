import CClusterShims
import Cluster
import Foundation
import Synchronization

/// A worker of `cluster run`: a swift-cluster worker that runs the operator's program as
/// its child and stands for it. The program gets the worker's sockets by the systemd
/// socket-activation protocol (`LISTEN_FDS`, `LISTEN_PID` = its own pid, `LISTEN_FDNAMES`,
/// descriptors from 3) and `PORT`; readiness comes from /proc (it waits on a socket,
/// ``AcceptWatch``), from sd_notify (`READY=1`) or from a timer; a drain from the primary
/// becomes `drain-signal` to the program; the program's exit becomes this worker's exit, so
/// the supervisor sees every crash; and every process the program starts ends with it
/// (``TreeGuard``).
struct ProgramWorker {
    let worker: ClusterWorker
    let configuration: RunConfiguration

    /// Message to the primary with the program's pid, for `cluster status` and `signal`.
    struct Started: Codable { let program: Int32 }

    func run() async throws -> Never {
        var descriptors: [(source: Int32, target: Int32)] = []
        var names: [String] = []
        var listeners: [Listener] = []
        for address in configuration.listen {
            let listener = try await worker.listener(address)
            guard let socket = listener.descriptor else {
                throw CommandError("\(address) is distributed by \(listener.distribution); a program needs a socket: use shared or reusePort")
            }
            descriptors.append((socket, Int32(3 + descriptors.count)))
            names.append(Self.name(of: listener.boundAddress))
            listeners.append(listener)
        }
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CLUSTER_") && !$0.key.hasPrefix("LISTEN_") && $0.key != "NOTIFY_SOCKET" }
        environment.merge(configuration.environment) { $1 }
        environment["CLUSTER_WORKER_INDEX"] = String(worker.id) // for the program's logs (not a cluster runtime variable)
        if !descriptors.isEmpty {
            environment["LISTEN_FDS"] = String(descriptors.count)
            environment["LISTEN_FDNAMES"] = names.joined(separator: ":")
        }
        if let port = listeners.compactMap(\.boundAddress.port).first { environment["PORT"] = String(port) }
        let notify = try NotifySocket.open(needed: configuration.readiness == .notify || configuration.watchdog != nil)
        if let notify { environment["NOTIFY_SOCKET"] = notify.address }
        if let watchdog = configuration.watchdog { environment["WATCHDOG_USEC"] = String(watchdog.saturatingMicroseconds) }

        try TreeGuard.install()
        let pid = try await start(environment: environment, descriptors: descriptors)
        worker.account(process: getpid()) // the program and everything below this worker
        try? await worker.send(Started(program: pid))
        worker.onDrain { [drainSignal = configuration.drainSignal] in kill(pid, drainSignal.rawValue) }

        let served = listeners
        let ready: @Sendable () -> Void = { [worker] in
            for listener in served { worker.reportListening(listener) }
            worker.ready()
        }
        if let notify {
            notify.watch(readiness: configuration.readiness == .notify ? ready : nil,
                         watchdog: configuration.watchdog, program: pid)
        }
        switch configuration.readiness {
        case .notify:
            break
        case .accepting where !listeners.isEmpty:
            let watch = AcceptWatch(listeners: listeners)
            Task { [readyAfter = configuration.readyAfter] in
                guard watch.isReadable(program: pid) else {
                    say("cannot see what program \(pid) waits on in /proc (is ptrace forbidden here?); it counts as ready after \(readyAfter)")
                    try? await Task.sleep(for: readyAfter)
                    return ready()
                }
                // Every 20 ms for the first second, then every 100 ms: a slow boot costs little.
                var checks = 0
                while !watch.isAccepting() {
                    checks += 1
                    try? await Task.sleep(for: .milliseconds(checks < 50 ? 20 : 100))
                }
                ready()
            }
        case .accepting, .started:
            Task {
                try? await Task.sleep(for: configuration.readyAfter)
                ready()
            }
        }
        // The thread that started the program waits for it and ends this process with it.
        while true { try? await Task.sleep(for: .seconds(3600)) }
    }

    /// Starts the program from a thread of its own that then waits for it, for good:
    /// PR_SET_PDEATHSIG follows the thread that forked, and the concurrency pool's
    /// threads come and go, which would kill the program with an idle pool thread.
    private func start(environment: [String: String], descriptors: [(source: Int32, target: Int32)]) async throws -> Int32 {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { [self] in
                let pid: Int32
                do {
                    pid = try spawn(environment: environment, descriptors: descriptors)
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                continuation.resume(returning: pid)
                Self.exit(like: TreeGuard.wait(for: pid))
            }
        }
    }

    /// Starts the program with `LISTEN_PID` set to its own pid.
    private func spawn(environment: [String: String], descriptors: [(source: Int32, target: Int32)]) throws -> Int32 {
        let executable = try Self.resolve(configuration.command[0], path: environment["PATH"])
        let argv = configuration.command.map { strdup($0) } + [nil]
        var entries = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        // Room for the digits, which the child writes after fork.
        let pidEntry = descriptors.isEmpty ? nil : strdup("LISTEN_PID=" + String(repeating: " ", count: 20))
        if let pidEntry { entries.append(pidEntry) }
        let envp = entries + [nil]
        defer {
            argv.forEach { free($0) }
            entries.forEach { free($0) }
        }
        var pid: pid_t = 0
        let error = descriptors.map(\.source).withUnsafeBufferPointer { sources in
            descriptors.map(\.target).withUnsafeBufferPointer { targets in
                cluster_spawn_program(executable, argv, envp, pidEntry, sources.baseAddress, targets.baseAddress,
                                      Int32(descriptors.count), &pid)
            }
        }
        guard error == 0 else { throw CommandError("cannot start \(executable): \(String(cString: strerror(error)))") }
        return pid
    }

    /// The program's path: as given when it has a slash, else the first match on PATH.
    static func resolve(_ program: String, path: String?) throws -> String {
        if program.contains("/") {
            guard access(program, X_OK) == 0 else { throw CommandError("\(program) is not an executable file") }
            return program
        }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw CommandError("\(program) is not on PATH (\(path ?? "unset")); give its full path")
    }

    /// A name for `LISTEN_FDNAMES`: `http` for TCP (`http-PORT` when there are more), the
    /// file name for a Unix socket. Names may not hold ':'.
    static func name(of address: ListenAddress) -> String {
        if let path = address.path { return String(path.split(separator: "/").last ?? "unix").replacingOccurrences(of: ":", with: "_") }
        return "tcp-\(address.port ?? 0)"
    }

    /// Ends this worker as the program ended: the same exit code, or the same signal.
    static func exit(like status: Int32) -> Never {
        let signal = status & 0x7f
        if signal == 0 { Foundation.exit((status >> 8) & 0xff) }
        // On this thread, unblocked: delivered before the next line, deterministically.
        Glibc.signal(signal, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        raise(signal)
        Foundation.exit(128 + signal) // a signal that does not end a process (SIGCHLD...)
    }
}

/// The worker's end of sd_notify: a datagram socket in the abstract namespace whose name
/// the program gets as `NOTIFY_SOCKET`.
final class NotifySocket: Sendable {
    let fd: Int32
    let address: String

    private init(fd: Int32, address: String) {
        self.fd = fd
        self.address = address
    }

    static func open(needed: Bool) throws -> NotifySocket? {
        guard needed else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("cannot make the NOTIFY_SOCKET: \(String(cString: strerror(errno)))") }
        let name = "cluster-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0 // abstract: no file to clean up
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            close(fd)
            throw CommandError("cannot bind the NOTIFY_SOCKET: \(String(cString: strerror(errno)))")
        }
        return NotifySocket(fd: fd, address: "@" + name)
    }

    /// Reads notifications on a thread of its own: `READY=1` calls `readiness` (once);
    /// with a `watchdog` interval, a program silent for longer than that gets SIGABRT,
    /// as systemd's `WatchdogSec=` does.
    func watch(readiness: (@Sendable () -> Void)?, watchdog: Duration?, program: Int32) {
        let lastPing = Mutex(ContinuousClock.now)
        Thread.detachNewThread { [fd] in
            var readied = false
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count < 0 { if errno == EINTR { continue } else { return } }
                let lines = String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n")
                if lines.contains("WATCHDOG=1") { lastPing.withLock { $0 = .now } }
                if lines.contains("READY=1"), !readied, let readiness {
                    readied = true
                    readiness()
                }
            }
        }
        guard let watchdog else { return }
        Thread.detachNewThread {
            while true {
                Thread.sleep(forTimeInterval: 0.1)
                let silent = lastPing.withLock { $0.duration(to: .now) }
                if silent > watchdog {
                    say("the program (pid \(program)) sent no WATCHDOG=1 for \(silent); sending SIGABRT")
                    kill(program, SIGABRT)
                    return
                }
            }
        }
    }
}
