import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// The entry point: is this process the primary or a worker?
///
/// As Node decides by `NODE_UNIQUE_ID`, a process is a worker when its primary started it
/// (the primary sets `CLUSTER_WORKER_ID`; a load-time hook reads and removes it before
/// `main`, so programs a worker runs are not mistaken for workers).
public enum Cluster {
    /// The role of this process.
    public enum Role: Sendable {
        /// The supervising process.
        case primary(Primary)
        /// A worker started by a primary.
        case worker(ClusterWorker)
    }

    private static let resolvedRole: Role = {
        if cluster_startup_env("CLUSTER_WORKER_ID") != nil {
            do {
                return .worker(try ClusterWorker.fromStartupEnvironment())
            } catch {
                // A worker that cannot reach its primary has nothing to do.
                let message = "cluster worker: cannot start: \(error)\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
                exit(78)
            }
        }
        return .primary(Primary())
    }()

    /// This process's role; the first access sets the worker runtime up (or the primary).
    public static var role: Role { resolvedRole }

    /// True in the primary.
    public static var isPrimary: Bool { if case .primary = role { true } else { false } }

    /// True in a worker.
    public static var isWorker: Bool { !isPrimary }

    /// The worker runtime, when this process is a worker.
    public static var currentWorker: ClusterWorker? { if case .worker(let worker) = role { worker } else { nil } }

    /// The thread that reads every channel, as a `TaskExecutor`. A task that prefers it
    /// (`withTaskExecutorPreference(Cluster.executor) { ... }`) receives messages with no
    /// thread hop: the lowest latency. Keep such tasks short; they share the thread with
    /// all channel I/O.
    public static var executor: any TaskExecutor { IOLoop.shared }
}
