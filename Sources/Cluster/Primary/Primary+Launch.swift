import CClusterShims
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Starting a worker: its channel, its listeners (inherited from fd 4), its environment,
/// its output relays, and the watches that hear its channel and its exit. I/O thread.
extension Primary {
    func spawnWorker(environment extra: [String: String], slot requested: Int?) throws(ClusterError) -> Worker {
        if let requested, requested < 0 || requested > 65535 {
            throw ClusterError(.invalidConfiguration, "slot \(requested) is out of range: slots count from 0, one per worker")
        }
        let (settings, id, slot, listeners) = state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            let used = Set(state.workers.values.map(\.slot))
            let slot = requested ?? (0...).first { !used.contains($0) }!
            return (state.settings, id, slot, listenerTable.all)
        }
        let (uid, gid) = try Spawn.resolve(user: settings.user, group: settings.group)
        let (primaryEnd, workerEnd) = try Syscall.socketPair()
        var closeAfterSpawn = [workerEnd]
        var descriptors: [(source: Int32, target: Int32)] = [(workerEnd, 3)]
        var grants: [ListenerGrant] = []
        var nextFD: Int32 = 4
        for (address, listener) in listeners {
            var grant = listener.grant
            grant.address = address.description
            if let fd = try listener.socket(forSlot: slot) {
                grant.descriptor = nextFD
                descriptors.append((fd, nextFD))
                nextFD += 1
            }
            grants.append(grant)
        }
        var relays: [(read: Int32, target: Int32)] = []
        do throws(ClusterError) {
            if settings.output == .prefixed {
                for target: Int32 in [1, 2] {
                    let pipe = try Syscall.pipe()
                    descriptors.append((pipe.write, target))
                    closeAfterSpawn.append(pipe.write)
                    relays.append((pipe.read, target))
                }
            }
            var environment = Spawn.currentEnvironment()
            environment.merge(settings.environment) { $1 }
            environment.merge(extra) { $1 }
            environment["CLUSTER_WORKER_ID"] = String(id)
            environment["CLUSTER_SLOT"] = String(slot)
            environment["CLUSTER_PRIMARY_PID"] = String(getpid())
            environment["CLUSTER_CHANNEL_FD"] = "3"
            environment["CLUSTER_LISTENERS"] = ListenerGrant.environmentValue(grants)
            if let uid { environment["CLUSTER_UID"] = String(uid) }
            if let gid { environment["CLUSTER_GID"] = String(gid) }

            let executable = settings.executable ?? Spawn.currentExecutable()
            let arguments = [executable] + (settings.arguments ?? Array(CommandLine.arguments.dropFirst()))
            let (pid, pidfd) = try Spawn.start(SpawnRequest(
                executable: executable, arguments: arguments, environment: environment,
                workingDirectory: settings.workingDirectory, descriptors: descriptors))
            closeAfterSpawn.forEach(Syscall.close)
            closeAfterSpawn = []
            settings.limits.apply(to: pid, logger: logger)

            let channel = Channel(fd: primaryEnd, loop: loop)
            let worker = Worker(id: id, pid: pid, slot: slot, pidfd: pidfd, channel: channel, loop: loop)
            let watch = WorkerWatch(primary: self, worker: worker)
            channel.delegate = watch
            state.withLock { state in
                state.workers[id] = worker
                state.watches[id] = watch
            }
            for relay in relays {
                let observer = settings.onOutput.map { handler in { @Sendable (line: String) in handler(id, line) } }
                _ = try? OutputRelay(source: relay.read, destination: relay.target, prefix: "[worker \(id)] ", loop: loop, observer: observer)
            }
            relays = []
            // Published here, on the I/O thread, so 'fork' comes before anything the worker says.
            hub.publish(.fork(worker))
            try channel.start()
            try loop.register(pidfd, events: EPOLLIN.rawValue, handler: watch)
            return worker
        } catch {
            closeAfterSpawn.forEach(Syscall.close)
            relays.forEach { Syscall.close($0.read) }
            Syscall.close(primaryEnd)
            throw error
        }
    }
}
