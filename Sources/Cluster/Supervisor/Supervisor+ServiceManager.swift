#if canImport(Glibc)
import Glibc
#endif

/// Keeping the service manager informed (sd_notify), when it gave the primary a
/// `NOTIFY_SOCKET`: see ``ServiceStatus`` for what is said when.
extension Supervisor {
    /// Sends whatever changed since the last message.
    func notifyServiceManager() {
        guard ServiceNotifier.shared.socketPath != nil else { return }
        ServiceNotifier.shared.send(serviceStatus.update(serviceSnapshot, monotonicMicroseconds: Self.monotonicMicroseconds()))
    }

    /// A hot upgrade's new primary takes over: the unit's main process is now this one.
    func notifyServiceManagerOfTakeOver() {
        guard ServiceNotifier.shared.socketPath != nil else { return }
        ServiceNotifier.shared.send(serviceStatus.tookOver(pid: getpid(), state: serviceSnapshot))
    }

    private var serviceSnapshot: ServiceStatus.Snapshot {
        var reloading: Int?
        var failure: String?
        switch model.lastReload {
        case .inProgress(let generation): reloading = generation
        case .failed(_, let reason): failure = reason
        case .completed, nil: break
        }
        return ServiceStatus.Snapshot(serving: model.serving.count, desired: model.desired, reloading: reloading,
                                      stopping: model.phase != .running, degraded: model.degradation,
                                      lastReloadFailure: failure)
    }

    /// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` wants it.
    private static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
