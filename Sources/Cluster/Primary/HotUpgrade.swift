import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

extension Primary {
    /// Hands this primary's place to a new one, as Gunicorn and nginx do on SIGUSR2: starts
    /// the executable now on disk, with this primary's arguments and environment, and the
    /// listening sockets inherited (descriptors from 3, described in
    /// `CLUSTER_UPGRADE_LISTENERS`). The new primary binds nothing: it serves the same
    /// sockets, so no connection is refused while both run. When its workers are ready it
    /// sends this primary SIGTERM, and this one drains and exits.
    ///
    /// - Parameter exited: Called on the I/O thread if the new primary exits while this
    ///   one still runs: the upgrade failed, and this primary carries on.
    /// - Returns: The new primary's pid.
    public func upgrade(exited: @escaping @Sendable (ExitStatus) -> Void) async throws(ClusterError) -> Int32 {
        try await loop.submit { [self] () throws(ClusterError) -> Int32 in
            let (descriptors, spec) = handover()
            var environment = Spawn.currentEnvironment()
            environment["CLUSTER_UPGRADE_FROM"] = String(getpid())
            environment["CLUSTER_UPGRADE_LISTENERS"] = spec
            let executable = Spawn.currentExecutable()
            let (pid, pidfd) = try Spawn.start(SpawnRequest(
                executable: executable, arguments: [executable] + CommandLine.arguments.dropFirst(),
                environment: environment, workingDirectory: nil, descriptors: descriptors))
            try loop.register(pidfd, events: EPOLLIN.rawValue, handler: ProcessWatch(pidfd: pidfd, loop: loop, exited: exited))
            return pid
        }
    }
}

/// Reaps one child by its pidfd and reports how it ended.
final class ProcessWatch: IOHandler, @unchecked Sendable {
    private let pidfd: Int32
    private let loop: IOLoop
    private let exited: @Sendable (ExitStatus) -> Void

    init(pidfd: Int32, loop: IOLoop, exited: @escaping @Sendable (ExitStatus) -> Void) {
        self.pidfd = pidfd
        self.loop = loop
        self.exited = exited
    }

    func handle(events: UInt32) {
        guard let status = (try? Syscall.pidfdReap(pidfd)) ?? nil else { return }
        loop.deregister(pidfd)
        Syscall.close(pidfd)
        exited(status)
    }
}
