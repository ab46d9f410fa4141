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
    struct BoundListener {
        let id: Int
        /// The primary's socket; for reusePort, one of the slots' (slot 0's at first).
        var fd: Int32
        let bound: ListenAddress
        let distribution: Distribution
        /// reusePort: one socket per slot, kept across that slot's restarts.
        var slotSockets: [Int: Int32] = [:]
        /// The primary-accept strategies: who accepts and hands over.
        let dispatcher: Dispatcher?
    }

    private struct State {
        var settings = PrimarySettings()
        var nextID = 1
        var workers: [Int: Worker] = [:]
        var watches: [Int: WorkerWatch] = [:]
        var listeners: [ListenAddress: BoundListener] = [:]
        var listenerOrder: [ListenAddress] = []
        /// Listener ids count up and are never reused (a closed listener's workers may
        /// still speak of it).
        var nextListenerID = 0
    }

    private let state = Mutex(State())
    let hub = EventHub()
    let loop: IOLoop
    let logger = Logger(label: "cluster.primary")

    /// The pid of the primary this one took over from in a hot upgrade, if it did.
    public let upgradedFrom: Int32?

    /// The workers' figures, published through swift-metrics every second.
    private let metrics = Mutex(MetricsPublisher())
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
        upgradedFrom = cluster_startup_env("CLUSTER_UPGRADE_FROM").flatMap { Int32(String(cString: $0)) }
        if upgradedFrom != nil {
            adoptInheritedListeners()
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
        let (enabled, kinds) = state.withLock { ($0.settings.balanceConnections, Set($0.listeners.values.map(\.distribution))) }
        guard enabled, !kinds.contains(.sticky), !kinds.isDisjoint(with: [.shared, .reusePort]) else { return }
        let open = serving.map { (worker: $0.id, connections: $0.stats.connections) }
        guard let (id, fraction) = balancer.sample(open, at: .now), let worker = serving.first(where: { $0.id == id }) else { return }
        let counts = open.map { "\($0.worker): \($0.connections)" }.joined(separator: ", ")
        logger.info("connections are uneven (worker: open \(counts)); \(worker) closes \(Int((fraction * 100).rounded()))% of its own so their clients reconnect and spread")
        worker.rebalance(fraction: fraction)
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

    /// Connections the primary has accepted and holds because no worker could take them
    /// (the primary-accept strategies).
    public var waitingConnections: Int {
        get async { (try? await loop.submit { [self] () throws(ClusterError) in dispatchers.reduce(0) { $0 + $1.waitingCount } }) ?? 0 }
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
        state.withLock { $0.listeners.mapValues(\.bound) }
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
        let events = self.events
        let live = workers.values.filter { !$0.isDead }
        live.forEach { $0.disconnect(timeout: timeout) }
        _ = try? await loop.submit { [self] () throws(ClusterError) in closeListeners() }
        var remaining = Set(live.filter { !$0.isDead }.map(\.id))
        guard !remaining.isEmpty else { return }
        for await event in events {
            if case .exit(let worker, _) = event { remaining.remove(worker.id) }
            remaining = remaining.filter { workers[$0] != nil }
            if remaining.isEmpty { return }
        }
    }

    // MARK: On the I/O thread

    private func bindListener(_ address: ListenAddress, distribution: Distribution? = nil) throws(ClusterError) -> BoundListener {
        if let existing = state.withLock({ $0.listeners[address] }) {
            if let distribution, distribution != existing.distribution {
                throw ClusterError(.invalidConfiguration, "\(address) is already distributed by \(existing.distribution); a listener has one strategy for its whole life")
            }
            return existing
        }
        let (id, chosen) = state.withLock { state in
            defer { state.nextListenerID += 1 }
            return (state.nextListenerID, distribution ?? state.settings.distribution)
        }
        let (fd, bound) = try Socket.listen(address, reusePort: chosen.kind == .reusePort)
        let dispatcher: Dispatcher?
        do {
            dispatcher = chosen.primaryAccepts ? try Dispatcher(id: id, fd: fd, distribution: chosen, loop: loop, logger: logger) : nil
        } catch {
            Syscall.close(fd)
            throw error
        }
        var listener = BoundListener(id: id, fd: fd, bound: bound, distribution: chosen, dispatcher: dispatcher)
        if chosen.kind == .reusePort { listener.slotSockets[0] = fd }
        state.withLock { state in
            state.listeners[address] = listener
            state.listenerOrder.append(address)
        }
        logger.debug("listening", metadata: ["address": "\(bound)", "distribution": "\(chosen)"])
        return listener
    }

    /// Stops accepting on the listeners the primary distributes itself (it is stopping or
    /// handing over); connections not yet accepted wait in the sockets' queues.
    func stopAccepting() {
        loop.execute { [self] in
            dispatchers.forEach { $0.stopAccepting() }
            handOverTurns()
        }
    }

    /// Closes every listener (`disconnect()`: no worker will accept on them again): the
    /// primary's sockets, every reusePort slot's, and the primary-accept strategies'
    /// dispatchers, which close any connection no worker is left to take. Connections
    /// still in a socket's queue when its last copy closes are reset, not left waiting.
    /// I/O thread.
    private func closeListeners() {
        let closing = state.withLock { state -> [BoundListener] in
            defer {
                state.listeners.removeAll()
                state.listenerOrder.removeAll()
            }
            return state.listenerOrder.compactMap { state.listeners[$0] }
        }
        for listener in closing {
            listener.dispatcher?.close()
            Set([listener.fd] + listener.slotSockets.values).forEach(Syscall.close)
            logger.debug("closed listener", metadata: ["address": "\(listener.bound)"])
        }
    }

    /// Closes the `reusePort` sockets of slots no worker will use again (any slot not in
    /// `slots`; the last socket of a listener stays): the kernel would go on giving such a
    /// socket its share of connections with nobody to accept them. Connections already
    /// queued on it are reset. A later worker in that slot gets a new socket.
    public func releaseSlots(keeping slots: Set<Int>) {
        loop.execute { [self] in
            let closed = state.withLock { state -> [Int32] in
                var closed: [Int32] = []
                for (address, var listener) in state.listeners where listener.distribution.kind == .reusePort {
                    for (slot, fd) in listener.slotSockets.sorted(by: { $0.key < $1.key })
                    where !slots.contains(slot) && listener.slotSockets.count > 1 {
                        closed.append(fd)
                        listener.slotSockets.removeValue(forKey: slot)
                        if fd == listener.fd { listener.fd = listener.slotSockets.sorted { $0.key < $1.key }.first!.value }
                    }
                    state.listeners[address] = listener
                }
                return closed
            }
            closed.forEach(Syscall.close)
        }
    }

    // MARK: Hot upgrade

    /// The listeners, as a new primary inherits them: descriptors from 3 and one line per
    /// socket, `fd TAB slot TAB distribution TAB bound TAB address asked for` (slot -1: the
    /// listener's own socket; others: a reusePort slot's). I/O thread.
    func handover() -> (descriptors: [(source: Int32, target: Int32)], spec: String) {
        let listeners = state.withLock { state in state.listenerOrder.map { ($0, state.listeners[$0]!) } }
        var descriptors: [(source: Int32, target: Int32)] = []
        var lines: [String] = []
        for (address, listener) in listeners {
            let sockets = [(-1, listener.fd)] + listener.slotSockets.sorted { $0.key < $1.key }.filter { $0.value != listener.fd }
            for (slot, fd) in sockets {
                let target = Int32(3 + descriptors.count)
                descriptors.append((fd, target))
                lines.append("\(target)\t\(slot)\t\(listener.distribution)\t\(listener.bound)\t\(address)")
            }
        }
        return (descriptors, lines.joined(separator: "\n"))
    }

    /// Takes the listeners an old primary handed over, so `listen` finds them bound.
    private func adoptInheritedListeners() {
        let spec = cluster_startup_env("CLUSTER_UPGRADE_LISTENERS").map { String(cString: $0) } ?? ""
        for line in spec.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            do throws(ClusterError) {
                guard fields.count == 5, let fd = Int32(fields[0]), let slot = Int(fields[1]) else {
                    throw ClusterError(.invalidConfiguration, "CLUSTER_UPGRADE_LISTENERS has a line '\(line)' this primary cannot read")
                }
                let distribution = try Distribution(parsing: fields[2])
                let bound = try ListenAddress(parsing: fields[3])
                let address = try ListenAddress(parsing: fields[4])
                try Syscall.setCloseOnExec(fd)
                if slot >= 0 {
                    state.withLock { $0.listeners[address]?.slotSockets[slot] = fd }
                    continue
                }
                let id = state.withLock { state in
                    defer { state.nextListenerID += 1 }
                    return state.nextListenerID
                }
                let dispatcher = distribution.primaryAccepts
                    ? try Dispatcher(id: id, fd: fd, distribution: distribution, loop: loop, logger: logger) : nil
                var listener = BoundListener(id: id, fd: fd, bound: bound, distribution: distribution, dispatcher: dispatcher)
                if distribution.kind == .reusePort { listener.slotSockets[0] = fd }
                state.withLock { state in
                    state.listeners[address] = listener
                    state.listenerOrder.append(address)
                }
            } catch {
                logger.error("cannot take over a listener from primary \(upgradedFrom ?? 0): \(error)")
            }
        }
    }

    /// The descriptor a worker in `slot` accepts on, or nil when the primary accepts.
    private func descriptor(for address: ListenAddress, slot: Int) throws(ClusterError) -> Int32? {
        guard let listener = state.withLock({ $0.listeners[address] }) else { return nil }
        switch listener.distribution.kind {
        case .shared: return listener.fd
        case .roundRobin, .leastConnections, .sticky: return nil
        case .reusePort:
            if let existing = listener.slotSockets[slot] { return existing }
            let (fd, _) = try Socket.listen(listener.bound, reusePort: true)
            state.withLock { $0.listeners[address]?.slotSockets[slot] = fd }
            return fd
        }
    }

    /// How a worker learns a listener: `id TAB distribution TAB bound address`.
    static func grant(_ listener: BoundListener) -> String {
        "\(listener.id)\t\(listener.distribution)\t\(listener.bound)"
    }

    private var dispatchers: [Dispatcher] {
        state.withLock { $0.listeners.values.compactMap(\.dispatcher) }
    }

    /// The numbers of the reusePort listeners.
    var reusePortListenerIDs: [Int] {
        state.withLock { $0.listeners.values.filter { $0.distribution == .reusePort }.map(\.id) }
    }

    /// The listener with the primary's number `id`.
    func boundListener(id: Int) -> BoundListener? {
        state.withLock { $0.listeners.values.first { $0.id == id } }
    }

    private func dispatcher(_ id: Int) -> Dispatcher? {
        state.withLock { $0.listeners.values.first { $0.id == id }?.dispatcher }
    }

    private func spawnWorker(environment extra: [String: String], slot requested: Int?) throws(ClusterError) -> Worker {
        if let requested, requested < 0 || requested > 65535 {
            throw ClusterError(.invalidConfiguration, "slot \(requested) is out of range: slots count from 0, one per worker")
        }
        let (settings, id, slot, listeners) = state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            let used = Set(state.workers.values.map(\.slot))
            let slot = requested ?? (0...).first { !used.contains($0) }!
            return (state.settings, id, slot, state.listenerOrder.map { ($0, state.listeners[$0]!) })
        }
        let (uid, gid) = try Spawn.resolve(user: settings.user, group: settings.group)
        let (primaryEnd, workerEnd) = try Syscall.socketPair()
        var closeAfterSpawn = [workerEnd]
        var descriptors: [(source: Int32, target: Int32)] = [(workerEnd, 3)]
        var listenerSpec: [String] = []
        var nextFD: Int32 = 4
        for (address, listener) in listeners {
            var target: Int32 = -1
            if let fd = try descriptor(for: address, slot: slot) {
                target = nextFD
                nextFD += 1
                descriptors.append((fd, target))
            }
            // One line per listener: fd (-1: the primary accepts), the grant, the address asked for.
            listenerSpec.append("\(target)\t\(Primary.grant(listener))\t\(address)")
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
            environment["CLUSTER_LISTENERS"] = listenerSpec.joined(separator: "\n")
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

    fileprivate func received(_ frame: Frame, from worker: Worker, on channel: Channel) {
        switch frame.kind {
        case .control:
            handleControl(frame, from: worker, on: channel)
        case .handoff:
            handleHandoff(frame, from: worker)
        case .message, .request:
            if frame.peer != 0 {
                forward(frame, from: worker)
                return
            }
            // A worker whose descriptors pile up unread waits until the app takes or drops them.
            if !frame.descriptors.isEmpty, !worker.descriptorBudget.reserve(frame.descriptors.count) {
                channel.pauseReading()
                // The app may have dropped enough between the count and the pause, and its
                // release found nothing to resume: look again.
                if worker.descriptorBudget.count <= DescriptorBudget.perWorker / 2 { channel.resumeReading() }
            }
            let replier = frame.kind == .request ? Replier(channel: channel, correlation: frame.correlation) : nil
            hub.publish(.message(worker, ClusterMessage(bytes: frame.payload, descriptors: frame.descriptors, replier: replier,
                                                        budget: worker.descriptorBudget)), from: channel)
        case .reply, .failure:
            break // Routed by the channel to the waiting request.
        }
    }

    private func handleControl(_ frame: Frame, from worker: Worker, on channel: Channel) {
        let control: Control
        do {
            control = try Control(frame)
        } catch {
            frame.descriptors.forEach(Syscall.close)
            protocolViolation(by: worker, error)
            return
        }
        // Only a handoff link rides a control message; any other descriptor is a lie.
        if !frame.descriptors.isEmpty, !control.carriesDescriptors {
            frame.descriptors.forEach(Syscall.close)
            protocolViolation(by: worker, ClusterError(.malformedFrame, "it sent '\(control.name)' with \(frame.descriptors.count) descriptors attached, which carries none"))
            return
        }
        switch control {
        case .online:
            if worker.advance(to: .online) { hub.publish(.online(worker)) }
        case .listening(let text):
            guard let address = try? ListenAddress(parsing: text) else {
                protocolViolation(by: worker, ClusterError(.malformedFrame, "it reported listening on '\(text)', which is no address"))
                return
            }
            // SwiftNIO and others re-listen with their own small backlog; restore ours.
            if let listener = state.withLock({ $0.listeners[address] }) {
                try? Syscall.listen(listener.fd, backlog: Socket.backlog)
            }
            worker.advance(to: .listening)
            hub.publish(.listening(worker, state.withLock { $0.listeners[address]?.bound } ?? address))
        case .listen(let text):
            let reply: Frame
            do {
                let address = try ListenAddress(parsing: text)
                try checkListenRequest(address, from: worker)
                let listener = try bindListener(address)
                let fd = try descriptor(for: address, slot: worker.slot)
                reply = Frame(kind: .reply, correlation: frame.correlation, payload: Array(Primary.grant(listener).utf8),
                              descriptors: fd.map { [$0] } ?? [])
            } catch {
                // Typed, so the worker throws the same error (errno, system call, address).
                reply = Frame(kind: .failure, correlation: frame.correlation, payload: RemoteFailure(error).payload)
            }
            try? channel.sendNow(reply, force: true)
        case .accepting(let id) where frame.descriptors.isEmpty && boundListener(id: id)?.distribution == .reusePort:
            requestTurn(for: worker, listener: id)
        case .accepting(let id):
            guard let dispatcher = dispatcher(id),
                  let bound = state.withLock({ $0.listeners.values.first { $0.id == id }?.bound }) else {
                frame.descriptors.forEach(Syscall.close)
                protocolViolation(by: worker, ClusterError(.malformedFrame, "it asked for connections from listener \(id), which the primary does not distribute"))
                return
            }
            guard !dispatcher.contains(worker: worker.id) else {
                frame.descriptors.forEach(Syscall.close)
                protocolViolation(by: worker, ClusterError(.malformedFrame, "it asked for connections from listener \(id) twice"))
                return
            }
            switch frame.descriptors.count {
            case 0:
                dispatcher.join(worker: worker.id, slot: worker.slot, channel: channel)
            case 2:
                let link = Channel(fd: frame.descriptors[0], loop: loop, doorbell: frame.descriptors[1])
                do {
                    try dispatcher.join(worker: worker.id, slot: worker.slot, link: link)
                } catch {
                    logger.error("\(worker) offered a handoff link that cannot be watched (\(error)); its connections go over its channel")
                    link.close(error: nil)
                    dispatcher.join(worker: worker.id, slot: worker.slot, channel: channel)
                }
            default:
                frame.descriptors.forEach(Syscall.close)
                protocolViolation(by: worker, ClusterError(.malformedFrame, "it asked for connections with \(frame.descriptors.count) descriptors attached; 0 or 2 (a handoff link) are valid"))
                return
            }
            worker.advance(to: .listening)
            hub.publish(.listening(worker, bound))
        case .stopAccepting(let id):
            dispatcher(id)?.leave(worker: worker.id)
            releaseTurn(of: worker, listener: id)
        case .ready:
            hub.publish(.ready(worker))
        case .exitedAfterDisconnect:
            worker.leavingOfItsOwnWill()
        case .heartbeat(let report):
            do {
                try report.validate()
                worker.recordHeartbeat(report)
            } catch {
                protocolViolation(by: worker, error)
            }
        case .disconnect, .rebalance, .acceptTurn:
            protocolViolation(by: worker, ClusterError(.malformedFrame, "it sent '\(control)', which only the primary sends"))
        }
    }

    /// A worker may have the primary bind a listener it does not hold yet only as
    /// ``PrimarySettings/listenRequests`` allows.
    private func checkListenRequest(_ address: ListenAddress, from worker: Worker) throws(ClusterError) {
        let (held, count, settings) = state.withLock { ($0.listeners[address] != nil, $0.listeners.count, $0.settings) }
        guard !held, let refusal = settings.listenRequests.refusal(of: address, holding: count, workersSwitchUser: settings.user != nil) else { return }
        // Once per worker: a worker that asks again and again does not flood the log.
        let level: Logger.Level = worker.firstListenRefusal() ? .warning : .debug
        logger.log(level: level, "\(worker) asked the primary to bind \(address); refused: \(refusal)")
        throw ClusterError(.invalidConfiguration, refusal)
    }

    private func handleHandoff(_ frame: Frame, from worker: Worker) {
        // A worker's handoff answers carry no descriptors; any that came are not ours to keep.
        defer { frame.descriptors.forEach(Syscall.close) }
        do {
            let message = try Handoff(frame)
            try dispatcher(message.listener)?.received(message, from: worker.id)
        } catch {
            protocolViolation(by: worker, error)
        }
    }

    private func forward(_ frame: Frame, from worker: Worker) {
        defer { frame.descriptors.forEach(Syscall.close) }
        guard let target = workers[Int(frame.peer)], !target.isDead else {
            if frame.kind == .request {
                try? worker.channel.sendNow(Frame(kind: .failure, correlation: frame.correlation,
                                                  payload: Array("no live worker has id \(frame.peer)".utf8)), force: true)
            } else {
                logger.warning("dropped a message from \(worker) to worker \(frame.peer): no live worker has that id")
            }
            return
        }
        var forwarded = frame
        forwarded.peer = UInt32(worker.id)
        if frame.kind == .request {
            // The reply comes back through the primary to the original requester.
            forwarded.kind = .message
            logger.warning("\(worker) sent a request to worker \(frame.peer); worker-to-worker requests are delivered as messages")
        }
        do {
            try target.channel.sendNow(forwarded, force: true)
        } catch {
            logger.warning("could not forward a message from \(worker) to \(target): \(error)")
            return
        }
        // Back-pressure across the primary: while the target is behind by more than a few
        // MiB, the sender's channel is not read, so its own queue fills and its `send`
        // waits. The primary holds at most a few MiB per target, not what a sender sends.
        if target.channel.isFull {
            let sender = worker.channel
            sender.pauseReading()
            target.channel.whenDrained { sender.resumeReading() }
        }
    }

    private func protocolViolation(by worker: Worker, _ error: ClusterError) {
        logger.error("\(worker) broke the channel protocol (\(error)); killing it. The primary carries on.")
        worker.signal(.kill)
        worker.channel.close(error: nil) // logged here, not again as a malformed frame
    }

    fileprivate func channelClosed(for worker: Worker, error: ClusterError?) {
        if let error, error.code == .malformedFrame || error.code == .systemCall("recvmsg") {
            logger.error("\(worker) sent a malformed frame (\(error)); killing it. The primary carries on.")
            worker.signal(.kill)
        }
        dispatchers.forEach { $0.leave(worker: worker.id) }
        // The state reads `disconnected` before anyone hears of it (Node's order).
        worker.advance(to: .disconnected)
        hub.publish(.disconnect(worker))
    }

    fileprivate func processExited(_ worker: Worker) {
        guard !worker.isDead else { return }
        // Deliver what the worker wrote before it died, then its channel's close
        // ('disconnect', state `disconnected`), then its exit (state `dead`): always in
        // that order, as in Node, whichever the kernel reported first.
        worker.channel.readAvailable(batches: .max)
        if !worker.channel.isClosed { worker.channel.close(error: nil) }
        guard let status = worker.reap() else { return }
        dispatchers.forEach { $0.leave(worker: worker.id) }
        state.withLock { state in
            state.workers.removeValue(forKey: worker.id)
            state.watches.removeValue(forKey: worker.id)
        }
        releaseTurns(of: worker)
        hub.publish(.exit(worker, status))
    }
}

/// Hears a worker's channel and pidfd on the I/O thread and tells the primary.
private final class WorkerWatch: ChannelDelegate, IOHandler, Sendable {
    // Strong: a weak load per message costs more than it is worth, and the primary lives
    // as long as the process; the watch goes when its worker does.
    let primary: Primary?
    let worker: Worker

    init(primary: Primary, worker: Worker) {
        self.primary = primary
        self.worker = worker
    }

    func channel(_ channel: Channel, received frame: Frame) {
        primary?.received(frame, from: worker, on: channel)
    }

    func channelClosed(_ channel: Channel, error: ClusterError?) {
        primary?.channelClosed(for: worker, error: error)
    }

    func handle(events: UInt32) {
        primary?.processExited(worker)
    }
}
