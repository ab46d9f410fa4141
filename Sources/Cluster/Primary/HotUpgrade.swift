import CClusterShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension Primary {
    /// Hands this primary's place to a new one, as Gunicorn and nginx do on SIGUSR2: starts
    /// the executable now on disk, with this primary's arguments and environment, and the
    /// listening sockets inherited (descriptors from 3, described in
    /// `CLUSTER_UPGRADE_LISTENERS`). The new primary binds nothing: it serves the same
    /// sockets, so no connection is refused while both run. Its workers accept on a
    /// reusePort slot socket only once this primary's have stopped (the pipe named in
    /// `CLUSTER_UPGRADE_RELEASED` closes), so no two wait on one socket. When its workers are ready it
    /// says so through the descriptor named in `CLUSTER_UPGRADE_NOTIFY`, then sends this
    /// primary SIGTERM, and this one drains and exits.
    ///
    /// Refused when this primary is PID 1 (a container's init): the old primary exits at
    /// the end of a hot upgrade, and a container ends with its PID 1, taking the new
    /// primary with it. A rolling reload (``Supervisor/reload()``, SIGHUP, `cluster
    /// reload`) replaces every worker with one started from the binary now on disk
    /// instead; to replace the primary itself, roll out a new container.
    ///
    /// - Parameter exited: Called on the I/O thread if the new primary exits while this
    ///   one still runs: the upgrade failed, and this primary carries on.
    /// - Returns: The new primary, to ask whether it took over, or to kill it.
    /// - Throws: `invalidConfiguration` as PID 1; a spawn's error when the new primary
    ///   cannot start.
    public func upgrade(exited: @escaping @Sendable (ExitStatus) -> Void) async throws(ClusterError) -> PrimaryUpgrade {
        guard getpid() != 1 else {
            throw ClusterError(.invalidConfiguration, """
                a hot upgrade is refused as PID 1 (a container's init): the container would end when this primary \
                exits at the handover; use a rolling reload instead (`cluster reload` or SIGHUP), which replaces every \
                worker with one started from the binary now on disk, or roll out a new container to replace the primary
                """)
        }
        return try await loop.submit { [self] () throws(ClusterError) -> PrimaryUpgrade in
            let handed = listenerTable.handover()
            var descriptors = handed.descriptors
            let notify = try Syscall.pipe()
            defer { Syscall.close(notify.write) }
            let notifyTarget = Int32(3 + descriptors.count)
            descriptors.append((notify.write, notifyTarget))
            let released: Int32
            do throws(ClusterError) { released = try makeSuccessorPipe() } catch {
                Syscall.close(notify.read)
                throw error
            }
            defer { Syscall.close(released) }
            let releasedTarget = Int32(3 + descriptors.count)
            descriptors.append((released, releasedTarget))
            var environment = Spawn.currentEnvironment()
            environment["CLUSTER_UPGRADE_FROM"] = String(getpid())
            environment["CLUSTER_UPGRADE_LISTENERS"] = handed.spec
            environment["CLUSTER_UPGRADE_NOTIFY"] = String(notifyTarget)
            environment["CLUSTER_UPGRADE_RELEASED"] = String(releasedTarget)
            // The service manager's socket, for the new primary to say it took over
            // (MAINPID=); the passed listeners travel in CLUSTER_UPGRADE_LISTENERS instead.
            if let notify = ServiceNotifier.shared.socketPath { environment["NOTIFY_SOCKET"] = notify }
            let executable = Spawn.currentExecutable()
            let started: (pid: pid_t, pidfd: Int32)
            do throws(ClusterError) {
                started = try Spawn.start(SpawnRequest(
                    executable: executable, arguments: [executable] + CommandLine.arguments.dropFirst(),
                    environment: environment, workingDirectory: nil, descriptors: descriptors))
            } catch {
                Syscall.close(notify.read)
                throw error
            }
            let watch = ProcessWatch(pid: started.pid, pidfd: started.pidfd, loop: loop, exited: exited)
            do throws(ClusterError) {
                try loop.register(started.pidfd, events: EPOLLIN.rawValue, handler: watch)
            } catch {
                _ = try? Syscall.pidfdSignal(started.pidfd, SIGKILL)
                Syscall.close(notify.read)
                Syscall.close(started.pidfd)
                throw error
            }
            return PrimaryUpgrade(pid: started.pid, watch: watch, notify: notify.read)
        }
    }

    /// Started by a hot upgrade: the descriptor it announces its takeover on must not reach
    /// a program this one runs (it would hold the old primary's pipe open).
    func keepUpgradeNotifyFromPrograms() {
        guard let fd = upgradeNotifyDescriptor else { return }
        try? Syscall.setCloseOnExec(fd)
    }

    private var upgradeNotifyDescriptor: Int32? {
        guard upgradedFrom != nil, let fd = cluster_startup_env("CLUSTER_UPGRADE_NOTIFY").flatMap({ Int32(String(cString: $0)) }),
              fd > 2 else { return nil }
        return fd
    }

    /// Started by a hot upgrade: tells the old primary that this one takes over, before
    /// SIGTERM asks it to drain, so that it can tell this SIGTERM from an operator's (which
    /// ends an upgrade in progress by killing the new primary).
    func announceTakeOver() {
        guard let fd = upgradeNotifyDescriptor else { return }
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? Syscall.write(fd, $0) }
        Syscall.close(fd)
    }
}

/// A new primary a hot upgrade started (``Primary/upgrade(exited:)``): whether it took
/// over, and the means to kill it if it does not.
public final class PrimaryUpgrade: Sendable {
    /// The new primary's pid.
    public let pid: Int32
    private let watch: ProcessWatch
    /// The read end of the pipe the new primary writes a byte to when it takes over.
    private let notify: Mutex<(fd: Int32, tookOver: Bool)>

    init(pid: Int32, watch: ProcessWatch, notify: Int32) {
        self.pid = pid
        self.watch = watch
        self.notify = Mutex((notify, false))
    }

    deinit {
        notify.withLock { if $0.fd >= 0 { Syscall.close($0.fd) } }
    }

    /// Whether the new primary said it takes over. It says so before it sends this primary
    /// SIGTERM, so when that SIGTERM arrives this is already true.
    public var tookOver: Bool {
        notify.withLock { state in
            guard !state.tookOver, state.fd >= 0 else { return state.tookOver }
            var byte: UInt8 = 0
            guard let count = withUnsafeMutableBytes(of: &byte, { (try? Syscall.read(state.fd, into: $0)) ?? nil }) else {
                return false // nothing yet
            }
            // It said so, or closed its end without saying it (it exited): nothing more to read.
            state.tookOver = count == 1
            Syscall.close(state.fd)
            state.fd = -1
            return state.tookOver
        }
    }

    /// SIGKILLs the new primary and its children unless it has exited already: its workers
    /// die with it (`PR_SET_PDEATHSIG`), and a wrapper script's program is killed with the
    /// script. Its exit is reported as any other, to the `exited` handler.
    public func kill() {
        watch.kill()
    }
}

/// Reaps one child by its pidfd and reports how it ended.
final class ProcessWatch: IOHandler, @unchecked Sendable {
    private let pid: pid_t
    private let pidfd: Int32
    private let loop: IOLoop
    private let exited: @Sendable (ExitStatus) -> Void
    /// Loop thread only: the pidfd is closed once the child is reaped.
    private var reaped = false

    init(pid: pid_t, pidfd: Int32, loop: IOLoop, exited: @escaping @Sendable (ExitStatus) -> Void) {
        self.pid = pid
        self.pidfd = pidfd
        self.loop = loop
        self.exited = exited
    }

    func handle(events: UInt32) {
        loop.assertInLoop()
        guard !reaped, let status = (try? Syscall.pidfdReap(pidfd)) ?? nil else { return }
        reaped = true
        loop.deregister(pidfd)
        Syscall.close(pidfd)
        exited(status)
    }

    /// SIGKILLs the child and its own children through pidfds, on the loop thread, unless
    /// it was reaped: no pid-reuse race. Its children's pidfds are opened while they are
    /// still its children (checked), before it dies and they are handed to init.
    func kill() {
        loop.execute { [self] in
            guard !reaped else { return }
            let children = Self.children(of: pid).compactMap { child -> Int32? in
                guard let fd = try? Syscall.pidfdOpen(child) else { return nil }
                guard Self.parent(of: child) == pid else {
                    Syscall.close(fd)
                    return nil
                }
                return fd
            }
            _ = try? Syscall.pidfdSignal(pidfd, SIGKILL)
            for fd in children {
                _ = try? Syscall.pidfdSignal(fd, SIGKILL)
                Syscall.close(fd)
            }
        }
    }

    /// The children of `pid`, every thread's, from /proc.
    private static func children(of pid: pid_t) -> [pid_t] {
        guard let tasks = opendir("/proc/\(pid)/task") else { return [] }
        defer { closedir(tasks) }
        var children: [pid_t] = []
        while let entry = readdir(tasks) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let task = Int32(name), let list = Host.read("/proc/\(pid)/task/\(task)/children") else { continue }
            children += list.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
        }
        return children
    }

    /// The parent of `pid`, from /proc/PID/stat, or nil when it is gone.
    private static func parent(of pid: pid_t) -> pid_t? {
        guard let stat = Host.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }
}
