import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// This process as a worker: its id, its channel to the primary, the listeners it inherited,
/// and the primary's word to drain (Node's `cluster.worker` and `process.send`).
public final class ClusterWorker: Sendable, ChannelDelegate {
    /// This worker's id in its primary: counts up from 1, never reused.
    public let id: Int
    /// This worker's slot, 0..<count, reused by its replacement.
    public let slot: Int
    /// The primary's process id.
    public let primaryPID: Int32

    struct State {
        var listeners: [ListenAddress: Listener] = [:]
        var draining = false
        /// The worker leaves on purpose (the primary's disconnect or its own): its channel
        /// closes once it holds no connection, and that close does not end the process.
        var leaving = false
        var drainHandlers: [@Sendable () -> Void] = []
        var rebalanceHandlers: [@Sendable (Double) -> Void] = []
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        var messageHandler: (@Sendable (ClusterMessage) -> Void)?
        /// Acceptors of listeners the primary hands connections over for, by listener id.
        var handoffAcceptors: [Int: Acceptor] = [:]
    }
    let state: Mutex<State>
    /// Turns to accept on reusePort slot sockets (`ClusterWorker+AcceptTurn.swift`).
    let turns = Mutex(WorkerTurns())
    let channel: Channel
    let inbox: Mailbox<ClusterMessage>
    let heartbeat = Heartbeat()
    /// What the app records through ``metricsFactory``.
    let metricsStore: WorkerMetricsStore
    let loop: IOLoop
    let logger = Logger(label: "cluster.worker")

    /// Messages a worker may have unread before it stops reading from the primary.
    public static let inboxLimit = 4096

    init(id: Int, slot: Int, primaryPID: Int32, channelFD: Int32, inherited: [Listener], loop: IOLoop = .shared) throws(ClusterError) {
        self.id = id
        self.slot = slot
        self.primaryPID = primaryPID
        self.loop = loop
        let channel = Channel(fd: channelFD, loop: loop)
        self.channel = channel
        inbox = Mailbox(limit: ClusterWorker.inboxLimit) { channel.resumeReading() }
        state = Mutex(State(listeners: Dictionary(inherited.map { ($0.address, $0) }) { first, _ in first }))
        metricsStore = WorkerMetricsStore { Logger(label: "cluster.worker").warning("metrics: \($0)") }
        signal(SIGPIPE, SIG_IGN)
        channel.delegate = self
        try Syscall.setNonBlocking(channelFD)
        try Syscall.setCloseOnExec(channelFD)
        try channel.start()
        try channel.sendNow(Control.online.frame, force: true)
        scheduleHeartbeat()
        scheduleProbe()
        scheduleMetricsFlush()
    }

    private func scheduleHeartbeat() {
        loop.schedule(after: Heartbeat.interval) { [self] in
            try? channel.sendNow(Control.heartbeat(heartbeat.report()).frame, force: true)
            scheduleHeartbeat()
        }
    }

    private func scheduleProbe() {
        loop.schedule(after: Heartbeat.probeInterval) { [self] in
            heartbeat.probe()
            scheduleProbe()
        }
    }

    /// Builds the worker from what the primary put in the environment (read before `main`).
    static func fromStartupEnvironment() throws(ClusterError) -> ClusterWorker {
        func value(_ name: String) -> String? {
            cluster_startup_env(name).map { String(cString: $0) }
        }
        guard let id = value("CLUSTER_WORKER_ID").flatMap(Int.init),
              let channelFD = value("CLUSTER_CHANNEL_FD").flatMap(Int32.init) else {
            throw ClusterError(.invalidConfiguration, "CLUSTER_WORKER_ID or CLUSTER_CHANNEL_FD is missing or not a number; workers are started by a primary, not by hand")
        }
        let inherited = try ListenerGrant.list(from: value("CLUSTER_LISTENERS") ?? "", variable: .listeners)
            .map { grant throws(ClusterError) in try Listener(inherited: grant) }
        let worker = try ClusterWorker(
            id: id, slot: value("CLUSTER_SLOT").flatMap(Int.init) ?? 0,
            primaryPID: value("CLUSTER_PRIMARY_PID").flatMap(Int32.init) ?? getppid(),
            channelFD: channelFD, inherited: inherited)
        // The last messages leave before the process does.
        atexit {
            Cluster.currentWorker?.flushMetrics()
            Cluster.currentWorker?.channel.flushBlocking(timeout: .seconds(1))
        }
        return worker
    }

    // MARK: Listeners

    /// The listener for `address`: one this worker inherited, or else the primary binds it
    /// (once, for every worker) and sends its descriptor over the channel.
    public func listener(_ address: ListenAddress) async throws(ClusterError) -> Listener {
        if let existing = state.withLock({ $0.listeners[address] }) { return existing }
        let reply = try await channel.request(Control.listen(address: address.description).frame, timeout: .seconds(30))
        let fd = reply.descriptors.first
        let listener: Listener
        do throws(ClusterError) {
            listener = try Listener(grant: ListenerGrant(payload: reply.payload), address: address, descriptor: fd)
        } catch {
            if let fd { Syscall.close(fd) }
            throw error
        }
        guard fd != nil || listener.distribution.primaryAccepts else {
            throw ClusterError(.malformedFrame, "the primary granted \(address) (\(listener.distribution)) without a descriptor")
        }
        return state.withLock { state in
            if let raced = state.listeners[address] {
                if let fd { Syscall.close(fd) }
                return raced
            }
            state.listeners[address] = listener
            return listener
        }
    }

    /// Tells the primary this worker accepts on `listener` now, or will as soon as it has
    /// its turn (``acceptTurn(on:)``): it counts as listening, and ready unless the
    /// supervisor waits for ``ready()``. The adapters call this.
    public func reportListening(_ listener: Listener) {
        try? channel.sendNow(Control.listening(address: listener.address.description).frame, force: true)
    }

    // MARK: Readiness and health

    /// Tells the primary this worker is ready for traffic. Needed only when the supervisor
    /// waits for it (``Supervision/Readiness/explicit``); otherwise a worker is ready when
    /// it starts accepting.
    public func ready() {
        try? channel.sendNow(Control.ready.frame, force: true)
    }

    /// Counts one request served: the supervisor recycles a worker after
    /// ``Supervision/Recycling/maxRequests``. The HTTP adapters count for you.
    public func countRequest() {
        heartbeat.countRequest()
    }

    /// Counts a connection opened (`true`) or closed: the primary's stats and the
    /// autoscaler see them. The adapters count for you.
    public func countConnection(opened: Bool) {
        heartbeat.countConnection(opened: opened)
        if !opened, heartbeat.openConnections == 0, state.withLock({ $0.leaving }) { closeChannelWhenIdle() }
    }

    /// Counts process `pid` (a program this worker started and serves through) and every
    /// process below it as part of the worker: their CPU time and memory are added to
    /// every heartbeat, so the primary's stats, the autoscaler and recycling by memory see
    /// them. `account(process: getpid())` counts every process this worker starts.
    ///
    /// A process's CPU time includes that of the children it has reaped; its memory is
    /// its resident set, so pages that forked processes share count once per process,
    /// as `ps` counts them.
    public func account(process pid: Int32) {
        heartbeat.account(pid)
    }

    /// Lets the watchdog see whether an event loop of the app turns: `schedule` must run
    /// the closure it is given on that loop. The runtime's thread sends a probe each
    /// heartbeat and reports how late it ran; a loop blocked beyond the watchdog's
    /// timeout gets the worker replaced. The adapters watch the loops they serve on.
    public func watchEventLoop(_ schedule: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        heartbeat.watch(schedule)
    }

    // MARK: Messages

    /// Messages from the primary (and from other workers, through it). One consumer.
    public var messages: ClusterMessages { ClusterMessages(mailbox: inbox) }

    /// Hands every message from now on to `handler` instead of ``messages``, called on the
    /// runtime's I/O thread as Node calls `process.on('message')` on its event loop: the
    /// fastest path (no task to resume), for handlers that only queue work or answer
    /// with ``ClusterMessage/replyNow(bytes:descriptors:)``. A handler that blocks stalls
    /// this worker's channel and its accepting.
    ///
    /// Messages that arrived before, and wait in ``messages``, go to the handler first, in
    /// order: the handler takes over on the I/O thread, between two reads.
    public func onMessage(_ handler: @escaping @Sendable (ClusterMessage) -> Void) {
        loop.execute { [self] in
            while let waiting = inbox.tryNext() { handler(waiting) }
            state.withLock { $0.messageHandler = handler }
        }
    }

    /// Sends bytes to the primary; suspends while the primary is behind.
    public func send(bytes: [UInt8], descriptors: [Int32] = []) async throws(ClusterError) {
        try await channel.send(Frame(kind: .message, payload: bytes, descriptors: descriptors))
    }

    /// Sends a value encoded as JSON to the primary, as Node's `process.send`.
    public func send<T: Encodable>(_ value: T, descriptors: [Int32] = []) async throws(ClusterError) {
        try await send(bytes: try MessageCodec.encode(value), descriptors: descriptors)
    }

    /// Sends without waiting (from an event loop, say); throws ``ClusterError/Code/channelFull``
    /// when the primary is behind by more than a few MiB.
    public func sendNow(bytes: [UInt8]) throws(ClusterError) {
        try channel.sendNow(Frame(kind: .message, payload: bytes))
    }

    /// Sends a value encoded as JSON without waiting.
    public func sendNow<T: Encodable>(_ value: T) throws(ClusterError) {
        try sendNow(bytes: try MessageCodec.encode(value))
    }

    /// Sends bytes to another worker, through the primary.
    public func send(toWorker id: Int, bytes: [UInt8], descriptors: [Int32] = []) async throws(ClusterError) {
        try await channel.send(Frame(kind: .message, peer: UInt32(id), payload: bytes, descriptors: descriptors))
    }

    /// Sends a request to the primary and waits for its reply.
    public func request(bytes: [UInt8], descriptors: [Int32] = [], timeout: Duration = .seconds(30)) async throws(ClusterError) -> ClusterMessage {
        let frame = try await channel.request(Frame(kind: .request, payload: bytes, descriptors: descriptors), timeout: timeout)
        return ClusterMessage(bytes: frame.payload, descriptors: frame.descriptors)
    }

    // MARK: Draining

    /// True once the primary asked this worker to drain, or went away.
    public var isDraining: Bool { state.withLock { $0.draining } }

    /// True while the channel to the primary is open (Node's `worker.isConnected()`):
    /// messages can be sent and received.
    public var isConnected: Bool { !channel.isClosed }

    /// Leaves the cluster of this worker's own will, as Node's `worker.disconnect()` in a
    /// worker: it stops accepting and its connections finish, as when the primary asks
    /// (``drainRequested()`` returns, ``onDrain(_:)`` handlers run, `serve` returns once its
    /// connections have closed); its channel closes once it holds no connection (as
    /// counted by ``countConnection(opened:)``, which the adapters call), and the process
    /// exits when `main` returns. The primary sees an intended exit
    /// (``Worker/exitedAfterDisconnect`` is true) after ``ClusterEvent/disconnect(_:)``.
    /// No deadline: the last connection takes as long as it takes.
    public func disconnect() {
        leave(announce: true)
    }

    /// Ends this worker now, as an intended exit: as Node's `worker.destroy()` in a
    /// worker, it tells the primary (``Worker/exitedAfterDisconnect`` is true), sends what
    /// is queued (waiting up to a second) and exits with code 0. Open connections end with
    /// the process.
    public func destroy() -> Never {
        try? channel.sendNow(Control.exitedAfterDisconnect.frame, force: true)
        flushMetrics()
        channel.flushBlocking(timeout: .seconds(1))
        exit(0)
    }

    /// Node's `worker.kill()` in a worker, which is ``destroy()``: an intended exit with code
    /// 0 (Node ignores the signal it is given there, and so there is none here).
    public func kill() -> Never {
        destroy()
    }

    /// Marks the exit intended and drains; with `announce`, tells the primary first (the
    /// worker leaves of its own will; the primary's own disconnect needs no answer).
    func leave(announce: Bool) {
        let first = state.withLock { state in
            defer { state.leaving = true }
            return !state.leaving
        }
        guard first else { return }
        if announce { try? channel.sendNow(Control.exitedAfterDisconnect.frame, force: true) }
        beginDrain()
        releaseListenerDescriptors()
        closeChannelWhenIdle()
    }

    /// Gives up the runtime's own copies of the listening sockets once the worker leaves
    /// (its servers hold their own until they stop): when the last copy of a socket
    /// closes, the kernel refuses new clients instead of queueing them for nobody, as
    /// Node's worker closes its handles. The numbers stay taken (by /dev/null), so a
    /// ``Listener`` value kept by the app never names another file.
    private func releaseListenerDescriptors() {
        let descriptors = Set(state.withLock { $0.listeners.values.compactMap(\.descriptor) })
        guard !descriptors.isEmpty else { return }
        let placeholder = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard placeholder >= 0 else { return }
        defer { Syscall.close(placeholder) }
        for descriptor in descriptors where dup2(placeholder, descriptor) == descriptor {
            try? Syscall.setCloseOnExec(descriptor)
        }
    }

    /// Closes the channel, after what is queued on it, once the worker leaves, holds no
    /// connection, and every acceptor of a listener the primary hands connections over for
    /// has stopped (Node closes the channel once the worker's servers have closed). An
    /// acceptor's stop goes out first, on the I/O thread as this close does: the primary
    /// reads every answer on a handoff link before the worker leaves its routing, so a
    /// connection the worker took is never routed again.
    func closeChannelWhenIdle() {
        loop.execute { [self] in
            guard state.withLock({ $0.leaving && $0.handoffAcceptors.values.allSatisfy(\.isStopped) }),
                  heartbeat.openConnections == 0, !channel.isClosed else { return }
            flushMetrics()
            channel.flushBlocking(timeout: .seconds(1))
            channel.close(error: nil)
        }
    }

    /// Calls `handler` when the primary asks this worker to give back a `fraction` (0...1)
    /// of its long-lived connections: a worker has joined, and keep-alive clients stay
    /// where they first connected unless some reconnect. Close that share of connections
    /// gracefully (SwiftNIO: `ChannelShouldQuiesceEvent`); ClusterNIO's `serve` does it for you.
    public func onRebalance(_ handler: @escaping @Sendable (_ fraction: Double) -> Void) {
        state.withLock { $0.rebalanceHandlers.append(handler) }
    }

    /// Calls `handler` when the primary asks this worker to drain (once; at once if it
    /// already has).
    public func onDrain(_ handler: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.draining { return true }
            state.drainHandlers.append(handler)
            return false
        }
        if now { handler() }
    }

    /// Returns when the primary asks this worker to drain: stop accepting, finish what is in
    /// flight, then return from `main` so the process exits 0.
    ///
    /// Cancelling the waiting task drains too: the worker leaves the cluster as
    /// ``disconnect()`` does, and this returns. So `serve` returns on cancellation once its
    /// connections have quiesced.
    public func drainRequested() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.draining { return true }
                    state.drainWaiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            disconnect()
        }
    }

    func beginDrain() {
        let (handlers, waiters) = state.withLock { state -> ([@Sendable () -> Void], [CheckedContinuation<Void, Never>]) in
            guard !state.draining else { return ([], []) }
            state.draining = true
            defer {
                state.drainHandlers.removeAll()
                state.drainWaiters.removeAll()
            }
            return (state.drainHandlers, state.drainWaiters)
        }
        handlers.forEach { $0() }
        waiters.forEach { $0.resume() }
        cancelAcceptTurnWaits()
    }

    func register(_ acceptor: Acceptor) {
        state.withLock { $0.handoffAcceptors[acceptor.listener.id] = acceptor }
    }
}
