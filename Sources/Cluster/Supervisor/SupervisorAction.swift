import Logging

/// What a ``SupervisorModel`` asks its owner to do. The owner performs each in order, and
/// reports a spawn's outcome back to the model (`spawned` or `spawnFailed`).
enum SupervisorAction: Equatable, Sendable {
    /// Start a worker of `generation` in `slot`.
    case spawn(slot: Int, generation: Int)
    /// Drain the worker, SIGKILL after the drain timeout: its exit is intended.
    case retire(worker: Int)
    /// SIGKILL the worker, its exit intended.
    case kill(worker: Int)
    /// Send the worker a signal without marking its exit as intended (a worker not ready in
    /// time, a hung one).
    case signal(worker: Int, Signal)
    /// Ask each of these workers to close `fraction` of its long-lived connections: a
    /// worker joined, and their clients should spread over it too.
    case rebalance(workers: [Int], fraction: Double)
    /// A worker died unexpectedly and its slot restarts after `delay`: count the restart.
    case restartScheduled(slot: Int, after: Duration)
    /// Close the reusePort sockets of every slot not in the set: no worker will use them.
    case releaseSlots(keeping: Set<Int>)
    /// The cluster begins to stop: stop accepting, and end a hot upgrade that has not taken
    /// over.
    case stopAccepting
    /// A line for the supervisor's log, with the worker it is about as metadata
    /// (`cluster.worker.id`, `.pid`, `.slot`, `.generation`), if any.
    case log(Logger.Level, String, Logger.Metadata = [:])
}

/// What the watchdog and recycling read about a running worker at each tick: the live
/// ``Worker`` in the supervisor, hand-set values in tests.
protocol WorkerGauges {
    /// False once the worker's channel has closed: it drains its last connections and sends
    /// no more heartbeats.
    var isConnected: Bool { get }
    /// Time since its last heartbeat, or nil before the first.
    var sinceLastHeartbeat: Duration? { get }
    /// How late its event loops answer.
    var eventLoopLag: Duration { get }
    /// Requests it reported serving.
    var requestsServed: Int { get }
    /// Its resident memory in bytes; read only when recycling by memory samples it.
    var memoryInUse: Int { get }
}

extension Worker: WorkerGauges {
    /// The larger of the resident memory read from /proc and the last heartbeat's.
    var memoryInUse: Int { max(residentMemory ?? 0, stats.residentMemory) }
}
