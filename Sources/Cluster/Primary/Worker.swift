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
    /// Told to drain: it stops accepting, finishes in-flight work and exits.
    case disconnecting
    /// It exited; see ``Worker/exitStatus``.
    case dead

    public var description: String { rawValue }
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
        var reports = StatsWindow()
        var listenRefused = false
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

    /// Where the worker is in its life.
    public var state: WorkerState { mutable.withLock { $0.state } }
    /// True when the worker exited after `disconnect()` or `kill()`: an intended exit, which
    /// a supervisor should not count as a crash.
    public var exitedAfterDisconnect: Bool { mutable.withLock { $0.exitedAfterDisconnect } }
    /// How the worker ended, once it has.
    public var exitStatus: ExitStatus? { mutable.withLock { $0.exitStatus } }
    /// True once the worker has exited.
    public var isDead: Bool { state == .dead }

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

    /// Asks the worker to drain: stop accepting, finish in-flight work and exit 0. If it is
    /// still running after `timeout`, it gets SIGKILL.
    public func disconnect(timeout: Duration = .seconds(10)) {
        let send = mutable.withLock { state -> Bool in
            guard state.exitStatus == nil, state.state != .disconnecting else { return false }
            state.state = .disconnecting
            state.exitedAfterDisconnect = true
            state.killTimer = loop.schedule(after: timeout) { [weak self] in self?.signal(.kill) }
            return true
        }
        if send { try? channel.sendNow(Control.disconnect.frame, force: true, urgent: true) }
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
            let order: [WorkerState] = [.starting, .online, .listening, .disconnecting, .dead]
            guard order.firstIndex(of: next)! > order.firstIndex(of: state.state)! else { return false }
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
