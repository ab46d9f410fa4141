import CClusterShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where a worker is in its life.
public enum WorkerState: String, Sendable, CustomStringConvertible {
    /// Spawned; its runtime has not said hello yet.
    case starting
    /// Its runtime is up.
    case online
    /// It accepts connections on at least one listener.
    case listening
    /// Draining, by the primary's ``Worker/disconnect(timeout:)`` or its own
    /// ``ClusterWorker/disconnect()``: it stops accepting and finishes its connections.
    case disconnecting
    /// Its channel to the primary has closed (Node's `'disconnected'`): it sends and
    /// receives nothing more, and may still be finishing its last connections. What
    /// ``ClusterEvent/disconnect(_:)`` reports; ``ClusterEvent/exit(_:_:)`` follows.
    case disconnected
    /// It exited; see ``Worker/exitStatus``.
    case dead

    public var description: String { rawValue }

    /// Its place in a worker's life: states only move to a higher rank.
    var rank: Int {
        switch self {
        case .starting: 0
        case .online: 1
        case .listening: 2
        case .disconnecting: 3
        case .disconnected: 4
        case .dead: 5
        }
    }
}

/// The primary's handle on one worker process (Node's `Worker` in the primary).
public final class Worker: Sendable, Identifiable, CustomStringConvertible {
    /// Counts up from 1 in each primary; never reused.
    public let id: Int
    /// The process id.
    public let pid: Int32
    /// The worker's place in the cluster, 0..<count, reused by its replacement.
    public let slot: Int

    private struct Mutable {
        var state: WorkerState = .starting
        var exitedAfterDisconnect = false
        var exitStatus: ExitStatus?
        var pidfd: Int32
        var killTimer: UInt64?
        var disconnectSent = false
        var reports = StatsWindow()
        var listenRefused = false
        var metricsWarning: (at: ContinuousClock.Instant, suppressed: Int)?
    }
    private let mutable: Mutex<Mutable>
    let channel: Channel
    let loop: IOLoop
    /// Descriptors this worker sent in messages that the primary's app has not taken yet.
    let descriptorBudget: DescriptorBudget

    init(id: Int, pid: Int32, slot: Int, pidfd: Int32, channel: Channel, loop: IOLoop) {
        self.id = id
        self.pid = pid
        self.slot = slot
        self.channel = channel
        self.loop = loop
        descriptorBudget = DescriptorBudget { [channel] in channel.resumeReading() }
        mutable = Mutex(Mutable(pidfd: pidfd))
    }

    /// Where the worker is in its life. It only moves forward, through each state in
    /// order (a worker that dies at once still passes `disconnected`, just before `dead`),
    /// and it changes before the event that reports it is published: `disconnected` before
    /// ``ClusterEvent/disconnect(_:)``, `dead` before ``ClusterEvent/exit(_:_:)``. It is
    /// read live: a `.disconnect` handled after the process has also exited reads `dead`.
    public var state: WorkerState { mutable.withLock { $0.state } }
    /// True when the worker exited after `disconnect()` or `kill()`, or after it left of
    /// its own will (``ClusterWorker/disconnect()``, ``ClusterWorker/kill()``): an intended
    /// exit, which a supervisor should not count as a crash.
    public var exitedAfterDisconnect: Bool { mutable.withLock { $0.exitedAfterDisconnect } }
    /// How the worker ended, once it has.
    public var exitStatus: ExitStatus? { mutable.withLock { $0.exitStatus } }
    /// True once the worker has exited.
    public var isDead: Bool { state == .dead }
    /// True while the channel to the worker is open (Node's `worker.isConnected()`): false
    /// from ``ClusterEvent/disconnect(_:)`` on, when messages can no longer reach it.
    public var isConnected: Bool { !channel.isClosed }

    public var description: String { "worker \(id) (pid \(pid))" }

    // MARK: Messages

    /// Sends bytes (and descriptors, which the worker receives as its own copies).
    /// Suspends while the worker is behind by more than a few MiB.
    public func send(bytes: [UInt8], descriptors: [Int32] = []) async throws(ClusterError) {
        try await channel.send(Frame(kind: .message, payload: bytes, descriptors: descriptors))
    }

    /// Sends a value encoded as JSON, as Node's `worker.send`.
    public func send<T: Encodable>(_ value: T, descriptors: [Int32] = []) async throws(ClusterError) {
        try await send(bytes: try MessageCodec.encode(value), descriptors: descriptors)
    }

    /// Sends without waiting; throws ``ClusterError/Code/channelFull`` when the worker is behind.
    public func sendNow(bytes: [UInt8]) throws(ClusterError) {
        try channel.sendNow(Frame(kind: .message, payload: bytes))
    }

    /// Sends a request and waits for the worker's `reply`.
    public func request(bytes: [UInt8], descriptors: [Int32] = [], timeout: Duration = .seconds(30)) async throws(ClusterError) -> ClusterMessage {
        let frame = try await channel.request(Frame(kind: .request, payload: bytes, descriptors: descriptors), timeout: timeout)
        return ClusterMessage(bytes: frame.payload, descriptors: frame.descriptors)
    }

    /// Sends a value as a request and decodes the reply.
    public func request<Request: Encodable, Reply: Decodable>(_ value: Request, as reply: Reply.Type = Reply.self,
                                                              timeout: Duration = .seconds(30)) async throws(ClusterError) -> Reply {
        try await request(bytes: try MessageCodec.encode(value), timeout: timeout).decode(Reply.self)
    }

    // MARK: Ending

    /// Sends `signal` to the worker (default SIGTERM, as Node's `worker.kill`). No effect
    /// once it has exited; the pidfd makes sure no other process is hit.
    public func kill(_ signal: Signal = .terminate) {
        mutable.withLock { state in
            guard state.exitStatus == nil else { return }
            state.exitedAfterDisconnect = true
            _ = try? Syscall.pidfdSignal(state.pidfd, signal.rawValue)
        }
    }

    /// Signals without marking the exit as intended (the runtime's own kills).
    func signal(_ signal: Signal) {
        mutable.withLock { state in
            guard state.exitStatus == nil else { return }
            _ = try? Syscall.pidfdSignal(state.pidfd, signal.rawValue)
        }
    }

    /// Asks the worker to drain, as Node's `worker.disconnect()`: it stops accepting,
    /// finishes the connections it holds (as its adapters count them), and its channel closes
    /// (``ClusterEvent/disconnect(_:)``, state ``WorkerState/disconnected``) once it holds
    /// none; then it exits (``ClusterEvent/exit(_:_:)``, `exitedAfterDisconnect` true).
    ///
    /// Without a `timeout` the worker takes as long as its last connection lasts, as in
    /// Node. With one, a worker still running after `timeout` gets SIGKILL. Calling it again
    /// only arms a deadline if none is armed yet.
    public func disconnect(timeout: Duration? = nil) {
        let send = mutable.withLock { state -> Bool in
            guard state.exitStatus == nil else { return false }
            state.exitedAfterDisconnect = true
            if state.state.rank < WorkerState.disconnecting.rank { state.state = .disconnecting }
            if let timeout, state.killTimer == nil {
                state.killTimer = loop.schedule(after: timeout) { [weak self] in self?.signal(.kill) }
            }
            defer { state.disconnectSent = true }
            return !state.disconnectSent
        }
        // Sent from the I/O thread, after what was asked of it before: when the primary
        // stops accepting and then drains every worker, no connection is handed to a worker
        // after its drain began (it would have nobody to bounce it to).
        if send { loop.execute { [channel] in try? channel.sendNow(Control.disconnect.frame, force: true, urgent: true) } }
    }

    /// The worker said it leaves of its own will (``ClusterWorker/disconnect()``,
    /// ``ClusterWorker/kill()``): its exit is intended.
    func leavingOfItsOwnWill() {
        mutable.withLock { state in
            guard state.exitStatus == nil else { return }
            state.exitedAfterDisconnect = true
            if state.state.rank < WorkerState.disconnecting.rank { state.state = .disconnecting }
        }
    }

    /// What the worker reported in its last heartbeat, with rates over the last second.
    public var stats: WorkerStats { mutable.withLock { $0.reports.stats } }

    /// Requests the worker reported serving (its adapters count them).
    public var requestsServed: Int { mutable.withLock { $0.reports.last?.report.requests ?? 0 } }

    /// How late the worker's event loops answer: as it last reported, plus the time since
    /// when a probe was still waiting then (a blocked loop's lag keeps growing).
    public var eventLoopLag: Duration {
        guard let (at, report) = mutable.withLock({ $0.reports.last }) else { return .zero }
        let reported = Duration.microseconds(report.lag)
        return report.waiting ? reported + Worker.elapsed(since: at) : reported
    }

    /// Time since the worker's last heartbeat (every 250 ms), or nil before the first.
    public var sinceLastHeartbeat: Duration? {
        mutable.withLock { $0.reports.last?.at }.map(Worker.elapsed(since:))
    }

    private static func elapsed(since instant: UInt64) -> Duration {
        let now = IOLoop.now()
        return .nanoseconds(Int64(now - min(instant, now)))
    }

    /// Its resident memory in bytes (from /proc), or nil once it has exited.
    public var residentMemory: Int? {
        guard !isDead else { return nil }
        let rss = cluster_process_rss(pid)
        return rss >= 0 ? rss : nil
    }

    /// Asks the worker to close `fraction` (0...1) of its long-lived connections
    /// gracefully, so their clients reconnect and spread over every worker.
    public func rebalance(fraction: Double) {
        guard !isDead else { return }
        try? channel.sendNow(Control.rebalance(fraction: fraction).frame, force: true)
    }

    // MARK: Runtime

    /// A heartbeat arrived; the caller has checked its figures (`HeartbeatReport.validate`).
    func recordHeartbeat(_ report: HeartbeatReport) {
        mutable.withLock { $0.reports.record(report, at: IOLoop.now()) }
    }

    /// True the first time the primary refuses this worker a listener (logged once).
    /// Whether a dropped metrics batch from this worker is worth a warning now: the first,
    /// then at most one every ten seconds. Returns how many went unmentioned since the last.
    func metricsWarningDue(now: ContinuousClock.Instant = .now) -> Int? {
        mutable.withLock { state in
            if let last = state.metricsWarning, last.at.duration(to: now) < .seconds(10) {
                state.metricsWarning?.suppressed += 1
                return nil
            }
            defer { state.metricsWarning = (now, 0) }
            return state.metricsWarning?.suppressed ?? 0
        }
    }

    func firstListenRefusal() -> Bool {
        mutable.withLock { state in
            defer { state.listenRefused = true }
            return !state.listenRefused
        }
    }

    /// Moves forward only: a worker never goes back to an earlier state.
    @discardableResult
    func advance(to next: WorkerState) -> Bool {
        mutable.withLock { state in
            guard next.rank > state.state.rank else { return false }
            state.state = next
            return true
        }
    }

    /// Reaps the worker if it has exited; closes the pidfd then.
    func reap() -> ExitStatus? {
        mutable.withLock { state -> ExitStatus? in
            guard state.exitStatus == nil else { return nil }
            guard let status = (try? Syscall.pidfdReap(state.pidfd)) ?? nil else { return nil }
            state.exitStatus = status
            state.state = .dead
            if let timer = state.killTimer { loop.cancelTimer(timer) }
            loop.deregister(state.pidfd)
            Syscall.close(state.pidfd)
            state.pidfd = -1
            return status
        }
    }

}
