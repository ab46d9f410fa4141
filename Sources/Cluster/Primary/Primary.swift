import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The primary process: it binds listeners once, forks workers, reaps them, and carries
/// messages to and from them (Node's `cluster` in the primary).
///
/// ```swift
/// guard case .primary(let primary) = Cluster.role else { ... }
/// for _ in 0..<2 { try await primary.fork() }
/// for await event in primary.events {
///     if case .exit(let worker, let status) = event { print("\(worker) died: \(status)") }
/// }
/// ```
public final class Primary: Sendable {
    struct State {
        var settings = PrimarySettings()
        var nextID = 1
        var workers: [Int: Worker] = [:]
        var watches: [Int: WorkerWatch] = [:]
        var draining = false
    }

    let state = Mutex(State())
    /// The listeners, one handle each (`ListenerTable`, `ListenerHandle`).
    let listenerTable = ListenerTable()
    let hub = EventHub()
    let loop: IOLoop
    /// Where the primary logs: ``PrimarySettings/logger``.
    var logger: Logger { state.withLock { $0.settings.logger } }

    /// The pid of the primary this one took over from in a hot upgrade, if it did.
    public let upgradedFrom: Int32?

    /// The workers' figures, published through swift-metrics every second.
    private let metrics = Mutex(MetricsPublisher())
    /// What the apps in the workers record through swift-metrics (``WorkerMetricsFactory``).
    let workerMetrics = Mutex(WorkerMetricsTable())
    /// Loop thread only.
    private nonisolated(unsafe) var balancer = ConnectionBalancer()
    /// Who accepts on each reusePort slot socket (`Primary+AcceptTurns.swift`).
    let turns = Mutex(AcceptTurns())
    /// After a hot upgrade began: the pipe whose close tells the new primary that this
    /// one's workers have stopped accepting (`Primary+AcceptTurns.swift`).
    let successor = Mutex<(fd: Int32, handingOver: Bool)?>(nil)

    init(loop: IOLoop = .shared) {
        self.loop = loop
        // A worker that dies mid-write must not kill the primary.
        signal(SIGPIPE, SIG_IGN)
        // Before anything is spawned: a socket the service manager passed reaches a worker
        // only when a listener grants it.
        InheritedSockets.shared.protect()
        upgradedFrom = cluster_startup_env("CLUSTER_UPGRADE_FROM").flatMap { Int32(String(cString: $0)) }
        if let upgradedFrom {
            listenerTable.adopt(spec: cluster_startup_env("CLUSTER_UPGRADE_LISTENERS").map { String(cString: $0) } ?? "",
                                from: upgradedFrom, loop: loop, logger: logger)
            waitForPredecessorsTurns()
        }
        loop.execute { [self] in publishMetrics() }
    }

    /// Publishes the serving workers' figures now and every second after, with or
    /// without a supervisor (a backend that was never bootstrapped makes this a no-op).
    /// I/O thread.
    private func publishMetrics() {
        let serving = workers.values.filter { $0.state == .listening }.sorted { $0.id < $1.id }
        metrics.withLock { $0.publish(serving.map { ($0.id, $0.slot, $0.stats) }) }
        balanceConnections(serving)
        _ = loop.schedule(after: .seconds(1)) { [weak self] in self?.publishMetrics() }
    }

    /// Asks a worker that holds well over its share of connections to shed the excess
    /// (`ConnectionBalancer`), where the listeners leave placement to chance.
    private func balanceConnections(_ serving: [Worker]) {
        loop.assertInLoop()
        let enabled = state.withLock { $0.settings.balanceConnections }
        let kinds = Set(listenerTable.all.map(\.handle.distribution))
        guard enabled, !kinds.contains(.sticky), !kinds.isDisjoint(with: [.shared, .reusePort]) else { return }
        let open = serving.map { (worker: $0.id, connections: $0.stats.connections) }
        guard let (id, fraction) = balancer.sample(open, at: .now), let worker = serving.first(where: { $0.id == id }) else { return }
        let counts = open.map { "\($0.worker): \($0.connections)" }.joined(separator: ", ")
        logger.info("connections are uneven (worker: open \(counts)); \(worker) closes \(Int((fraction * 100).rounded()))% of its own so their clients reconnect and spread")
        worker.rebalance(fraction: fraction)
    }

    /// What the apps in the workers record through swift-metrics (``WorkerMetricsFactory``),
    /// in the Prometheus text format: one series per slot (label `slot`), counters and
    /// histograms cumulative across the slot's restarts. `ClusterAdmin` serves it on
    /// `/metrics` merged into the primary's own series.
    public func workerMetricsExposition() -> String {
        workerMetrics.withLock { $0.exposition() }
    }

    /// `own`, the primary's own series in the Prometheus text format, with the workers'
    /// merged in (``workerMetricsExposition()``): a name that both the primary's program and
    /// its workers record stays one family (the format allows its `# TYPE` once), the
    /// workers' samples labelled by slot after the primary's. A name the primary records as
    /// another type keeps only the primary's samples, and a comment says why.
    public func metricsExposition(mergingWorkersInto own: String) -> String {
        workerMetrics.withLock { $0.exposition(mergingInto: own) }
    }

    /// This process's id.
    public var pid: Int32 { getpid() }

    /// Changes how workers are started from now on (Node's `cluster.setupPrimary`): the
    /// settings `settings` names (given to its initializer, or assigned) take effect;
    /// every other keeps what earlier calls set, or its default. Calls add up:
    ///
    /// ```swift
    /// primary.setup(PrimarySettings(user: "web"))
    /// primary.setup(PrimarySettings(output: .prefixed))   // still runs workers as "web"
    /// ```
    public func setup(_ settings: PrimarySettings) {
        state.withLock { $0.settings = $0.settings.merging(settings) }
    }

    /// Changes how workers are started from now on by editing the effective settings
    /// (``settings``): what `change` assigns takes effect, nothing else moves. The way to put
    /// one setting back to its default: `primary.setup { $0.user = nil }`.
    public func setup<E: Error>(_ change: (inout PrimarySettings) throws(E) -> Void) throws(E) {
        var changes = settings
        try change(&changes)
        setup(changes)
    }

    /// How workers are started, every default filled in (Node's `cluster.settings`):
    /// `executable` is the binary workers run (the primary's own, looked up again at each
    /// fork unless set) and `arguments` theirs. A nil `workingDirectory`, `user` or `group`
    /// means the primary's.
    public var settings: PrimarySettings {
        state.withLock { $0.settings }.effective(executable: Spawn.currentExecutable(),
                                                 arguments: Array(CommandLine.arguments.dropFirst()))
    }

    /// The live workers, by id (Node's `cluster.workers`). A worker leaves when it exits.
    public var workers: [Int: Worker] { state.withLock { $0.workers } }

    /// True once the whole cluster began to drain: ``disconnect(timeout:)`` was called, or
    /// a ``Supervisor`` began to stop (SIGTERM, SIGINT, ``Supervisor/stop(immediately:)``,
    /// a crash loop). It turns true before any worker is told to drain and never turns
    /// back, so a readiness probe that reads it (`ClusterAdmin`'s `/readyz`) fails while
    /// the connections already open are still being served.
    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Connections the primary has accepted and holds because no worker could take them
    /// (the primary-accept strategies).
    public var waitingConnections: Int {
        get async { (try? await loop.submit { [self] () throws(ClusterError) in listenerTable.all.reduce(0) { $0 + $1.handle.waitingCount } }) ?? 0 }
    }

    /// The cluster's figures from the workers' last heartbeats.
    public var stats: ClusterStats {
        ClusterStats(workers.values.filter { !$0.isDead }.sorted { $0.id < $1.id }.map(\.stats))
    }

    /// Events from now on (fork, online, listening, message, disconnect, exit).
    public var events: ClusterEvents { hub.subscribe() }

    /// Binds `address` now, distributing its connections by `distribution` (default: the
    /// settings'); workers can also ask for it with `listener(_:)`, and every worker forked
    /// afterwards inherits it. Returns the address bound (with the port chosen for 0).
    @discardableResult
    public func listen(_ address: ListenAddress, distribution: Distribution? = nil) async throws(ClusterError) -> ListenAddress {
        try await loop.submit { [self] () throws(ClusterError) in try bindListener(address, distribution: distribution).bound }
    }

    /// The listeners the primary holds: requested address → bound address.
    public var listeners: [ListenAddress: ListenAddress] {
        Dictionary(uniqueKeysWithValues: listenerTable.all.map { ($0.address, $0.handle.bound) })
    }

    /// Starts a worker (Node's `cluster.fork`) with `environment` added to its own, in
    /// `slot` (default: the lowest slot no live worker holds). A replacement that takes its
    /// predecessor's slot takes over its `reusePort` socket and its sticky clients.
    @discardableResult
    public func fork(environment: [String: String] = [:], slot: Int? = nil) async throws(ClusterError) -> Worker {
        try await loop.submit { [self] () throws(ClusterError) in try spawnWorker(environment: environment, slot: slot) }
    }

    /// Sends bytes to every live worker.
    public func broadcast(bytes: [UInt8]) async throws(ClusterError) {
        for worker in workers.values.sorted(by: { $0.id < $1.id }) where !worker.isDead {
            do { try await worker.send(bytes: bytes) } catch where error.code == .channelClosed { continue }
        }
    }

    /// Sends a value encoded as JSON to every live worker.
    public func broadcast<T: Encodable>(_ value: T) async throws(ClusterError) {
        try await broadcast(bytes: try MessageCodec.encode(value))
    }

    /// Asks every worker to drain (``Worker/disconnect(timeout:)``) and closes every
    /// listener, as Node's `cluster.disconnect()`: a client that connects from now on is
    /// refused (once the draining workers have closed their copies, milliseconds later),
    /// while the workers finish the connections they hold. Returns when every worker has
    /// exited. Without a `timeout` that takes as long as the last connection lasts; with
    /// one, workers still running after it get SIGKILL.
    ///
    /// A worker forked afterwards that asks for a listener has it bound again.
    public func disconnect(timeout: Duration? = nil) async {
        state.withLock { $0.draining = true }
        let events = self.events
        let live = workers.values.filter { !$0.isDead }
        // Accepting stops before the drains go out, so no connection is handed to a
        // worker after its drain began.
        _ = try? await loop.submit { [self] () throws(ClusterError) in closeListeners() }
        live.forEach { $0.disconnect(timeout: timeout) }
        var remaining = Set(live.filter { !$0.isDead }.map(\.id))
        guard !remaining.isEmpty else { return }
        for await event in events {
            if case .exit(let worker, _) = event { remaining.remove(worker.id) }
            remaining = remaining.filter { workers[$0] != nil }
            if remaining.isEmpty { return }
        }
    }

    // MARK: On the I/O thread

    func bindListener(_ address: ListenAddress, distribution: Distribution? = nil) throws(ClusterError) -> any ListenerHandle {
        try listenerTable.bind(address, distribution: distribution, defaultDistribution: state.withLock { $0.settings.distribution },
                               loop: loop, logger: logger)
    }

    /// Stops accepting on the listeners the primary distributes itself (it is stopping,
    /// perhaps after a hot upgrade's handover): from now on ``isDraining`` is true.
    /// Connections not yet accepted wait in the sockets' queues.
    func stopAccepting() {
        state.withLock { $0.draining = true }
        loop.execute { [self] in
            listenerTable.all.forEach { $0.handle.stopAccepting() }
            handOverTurns()
        }
    }

    /// Closes every listener (`disconnect()`: no worker will accept on them again): the
    /// primary's sockets, every reusePort slot's, and the primary-accept strategies'
    /// dispatchers, which close any connection no worker is left to take. Connections
    /// still in a socket's queue when its last copy closes are reset, not left waiting.
    /// I/O thread.
    private func closeListeners() {
        for handle in listenerTable.removeAll() {
            handle.close()
            logger.debug("closed listener", metadata: ["address": "\(handle.bound)"])
        }
    }

    /// Closes the `reusePort` sockets of slots no worker will use again (any slot not in
    /// `slots`; the last socket of a listener stays): the kernel would go on giving such a
    /// socket its share of connections with nobody to accept them. Connections already
    /// queued on it are reset. A later worker in that slot gets a new socket.
    public func releaseSlots(keeping slots: Set<Int>) {
        loop.execute { [self] in listenerTable.all.forEach { $0.handle.releaseSlots(keeping: slots) } }
    }

    /// The numbers of the reusePort listeners.
    var reusePortListenerIDs: [Int] {
        listenerTable.all.filter { $0.handle.distribution == .reusePort }.map(\.handle.id)
    }
}
