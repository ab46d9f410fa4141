import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a primary's workers as ``Supervision`` says: the right number, restarted with
/// backoff, replaced one by one on reload, recycled before they leak, killed when hung,
/// and drained on shutdown. One loop owns all of it: signals, commands, worker events and a
/// 100 ms tick only change the desired state or feed the loop, and after each the loop
/// reconciles what runs with what should.
///
/// ```swift
/// case .primary(let primary):
///     let outcome = await Supervisor(primary: primary).run()   // SIGTERM drains, SIGHUP reloads
///     exit(outcome.exitCode)
/// ```
public actor Supervisor {
    /// Why ``run()`` returned.
    public enum Outcome: Sendable, Equatable, CustomStringConvertible {
        /// Stopped on request (a signal or ``stop(immediately:)``) after the workers drained.
        case stopped
        /// Workers kept failing to boot, or one said it cannot boot, and no worker was left
        /// serving: the reason says which.
        case crashLoop(String)

        /// The exit code for the primary: 0 when stopped, 1 after a crash loop.
        public var exitCode: Int32 { self == .stopped ? 0 : 1 }

        public var description: String {
            switch self {
            case .stopped: "stopped"
            case .crashLoop(let reason): reason
            }
        }
    }

    enum Input: Sendable {
        case event(ClusterEvent)
        case signal(Int32)
        case reload
        case scale(Int)
        case stop(immediately: Bool)
        case upgrade
        case upgradeEnded(ExitStatus)
        case tick
    }

    /// What the supervisor knows about one of its workers.
    struct Managed {
        let worker: Worker
        let generation: Int
        let startedAt: ContinuousClock.Instant
        var readyAt: ContinuousClock.Instant?
        /// Told to drain (reload, recycling, scale down, shutdown): its exit is intended.
        var retiring = false
        /// The worker this one replaces; it retires when this one is ready.
        var replacing: Int?
        /// The worker replacing this one.
        var replacedBy: Int?
        /// When the watchdog sent SIGABRT.
        var abortedAt: ContinuousClock.Instant?
        /// Recycle after this many requests.
        var requestLimit: Int?
    }

    /// A reload under way.
    struct Rollout {
        /// The generation it starts.
        let generation: Int
        /// Old workers it still has to replace, oldest first.
        var queue: [Int]
        /// Replacements it started that are not ready yet; each must be ready for the
        /// reload to complete, even one whose predecessor died meanwhile.
        var pending: Set<Int> = []
        /// Replacements that became ready.
        var replaced = 0
    }

    /// How the latest reload went.
    public enum ReloadState: Sendable, Equatable, CustomStringConvertible {
        /// Replacing the workers with ones of this generation.
        case inProgress(generation: Int)
        /// Every worker was replaced by a ready one of this generation.
        case completed(generation: Int)
        /// A replacement of this generation exited or was not ready within the reload's
        /// ready timeout: the rollout stopped there, the workers not yet replaced keep
        /// serving, and ``Supervisor/currentGeneration`` did not advance. The reason says which.
        case failed(generation: Int, reason: String)

        public var description: String {
            switch self {
            case .inProgress(let generation): "reloading to generation \(generation)"
            case .completed(let generation): "reload to generation \(generation) complete"
            case .failed(_, let reason): "reload failed: \(reason)"
            }
        }
    }

    enum Phase: Equatable {
        case running
        case stopping(Outcome)
        case done(Outcome)
    }

    /// The primary supervised.
    public nonisolated let primary: Primary
    /// The rules it keeps.
    public nonisolated let supervision: Supervision

    private let inputs: AsyncStream<Input>
    private nonisolated let feed: AsyncStream<Input>.Continuation
    private let clock = ContinuousClock()
    private let logger = Logger(label: "cluster.supervisor")
    private var managed: [Int: Managed] = [:]
    private var desired: Int
    private var generation = 1
    private var ledger: RestartLedger<ContinuousClock.Instant>
    private var pendingRestarts: [(slot: Int, due: ContinuousClock.Instant)] = []
    /// The reload under way; nil: none.
    private var rollout: Rollout?
    /// How the latest reload went; nil: none yet.
    private var reloadState: ReloadState?
    private var reloadQueued = false
    /// Workers to replace because they leak, age or served enough.
    private var recycleQueue: [Int] = []
    private var phase = Phase.running
    private var interrupts = 0
    private var lastSample: ContinuousClock.Instant?
    private var autoscaler: (any AutoscalePolicy)?
    private var metrics = MetricsPublisher()
    private var lastPublished: ContinuousClock.Instant?
    private var lastLoadSample: ContinuousClock.Instant?
    private var hostIdle = HostIdleSampler()
    /// Unplanned restarts of each slot since the supervisor started.
    private var restartsBySlot: [Int: Int] = [:]
    private let startedAt = ContinuousClock.now
    private var signals: SignalWatcher?
    /// The hot upgrade in progress: the new primary, when it started, and whether this
    /// primary killed it (it is gone when its exit arrives).
    private var upgrading: (child: PrimaryUpgrade, startedAt: ContinuousClock.Instant, killed: Bool)?
    /// Why the cluster is degraded (a crash-loop episode while workers serve), or nil.
    private nonisolated let degradedReason = Mutex<String?>(nil)
    /// Whether this primary, started by a hot upgrade, has told the old one to stop.
    private var tookOver = false

    /// A supervisor for `primary`; nothing starts until ``run()``.
    public init(primary: Primary, supervision: Supervision = Supervision()) {
        self.primary = primary
        self.supervision = supervision
        desired = supervision.workers
        ledger = RestartLedger(policy: supervision.restart)
        autoscaler = supervision.autoscale
        (inputs, feed) = AsyncStream.makeStream(of: Input.self)
    }

    /// The signals ``run()`` handles when ``Supervision/handlesSignals`` is on (and
    /// SIGCHLD as PID 1, to reap orphans).
    public static let handledSignals: [Signal] = [
        .terminate, .interrupt, .quit, .hangup, Signal(rawValue: SIGTTIN), Signal(rawValue: SIGTTOU), .user2,
    ]

    private static var watchedSignals: [Signal] {
        handledSignals + (getpid() == 1 ? [Signal(rawValue: SIGCHLD)] : [])
    }

    // MARK: Commands (from any thread)

    /// Starts a rolling reload: every worker is replaced by one of a new generation (from
    /// the executable now on disk), each retiring only when its replacement is ready. A
    /// reload asked for during another runs after it.
    public nonisolated func reload() { feed.yield(.reload) }

    /// Sets the number of workers. Scaling down drains the oldest workers.
    public nonisolated func scale(to workers: Int) { feed.yield(.scale(workers)) }

    /// Stops the cluster: drains every worker (SIGKILL after the drain timeout), or kills
    /// them at once. ``run()`` returns when all have exited.
    public nonisolated func stop(immediately: Bool = false) { feed.yield(.stop(immediately: immediately)) }

    /// Hands over to a new primary started from the executable now on disk, which inherits
    /// the listeners; when its workers are ready it stops this one (see
    /// ``Primary/upgrade(exited:)``). SIGUSR2 does the same.
    public nonisolated func upgrade() { feed.yield(.upgrade) }

    /// The number of workers the supervisor keeps.
    public var desiredWorkers: Int { desired }

    /// Why the cluster is degraded, or nil when it is not: workers keep failing to boot
    /// while others serve, and boot attempts back off (see ``RestartPolicy``). Readable
    /// from any thread, for health checks (`ClusterAdmin`'s `/readyz` reports it).
    public nonisolated var degradation: String? { degradedReason.withLock { $0 } }

    /// The generation new workers belong to; each completed reload adds one (a failed one
    /// adds none).
    public var currentGeneration: Int { generation }

    /// How the latest reload went (under way, complete, or failed and why); nil before the
    /// first.
    public var lastReload: ReloadState? { reloadState }

    /// Every worker the supervisor manages now, by id: for a status table.
    public var status: [SupervisedWorker] {
        let now = clock.now
        return managed.values.sorted { $0.worker.id < $1.worker.id }.map { entry in
            let role: SupervisedWorker.Role = if entry.retiring { .retiring }
                else if entry.readyAt == nil { .starting }
                else if entry.replacedBy != nil { .replaced }
                else { .ready }
            return SupervisedWorker(worker: entry.worker, generation: entry.generation, role: role,
                                    uptime: entry.startedAt.duration(to: now),
                                    restarts: restartsBySlot[entry.worker.slot, default: 0])
        }
    }

    // MARK: The loop

    /// Starts the workers and supervises them until the cluster stops; returns why.
    public func run() async -> Outcome {
        let events = primary.events
        let forwarder = Task { [feed] in
            for await event in events { feed.yield(.event(event)) }
        }
        let ticker = Task { [feed] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                feed.yield(.tick)
            }
        }
        defer {
            forwarder.cancel()
            ticker.cancel()
            signals?.restoreDefaults(Self.watchedSignals)
        }
        if supervision.handlesSignals {
            do {
                signals = try SignalWatcher(Self.watchedSignals) { [feed] in feed.yield(.signal($0)) }
            } catch {
                logger.error("cannot handle signals: \(error); SIGTERM will end the primary without draining")
            }
        }
        primary.keepUpgradeNotifyFromPrograms()
        logger.info("supervising \(desired) workers (generation \(generation))")
        await reconcile()
        for await input in inputs {
            await handle(input)
            await reconcile()
            if case .done(let outcome) = phase { return outcome }
        }
        return .stopped
    }

    private func handle(_ input: Input) async {
        switch input {
        case .event(let event): handle(event)
        case .signal(let number): await handle(signal: number)
        case .reload: startReload()
        case .scale(let count): scale(count)
        case .stop(let immediately): beginStop(.stopped, immediately: immediately)
        case .upgrade: await startUpgrade()
        case .upgradeEnded(let status):
            // One upgrade at a time, and the loop handles this after the one that started it.
            guard let current = upgrading else { break }
            upgrading = nil
            if phase == .running, !current.killed {
                logger.error("hot upgrade failed: the new primary (pid \(current.child.pid)) exited (\(status)) before it took over; this primary carries on")
            }
        case .tick:
            tick()
            await autoscale()
        }
    }

    private func handle(_ event: ClusterEvent) {
        switch event {
        case .listening(let worker, _) where supervision.readiness == .listening,
             .ready(let worker) where supervision.readiness == .explicit:
            becameReady(worker.id)
        case .exit(let worker, let status):
            exited(worker, status)
        default:
            break
        }
    }

    private func handle(signal number: Int32) async {
        switch number {
        case SIGTERM:
            logger.notice("SIGTERM: draining every worker, then stopping")
            beginStop(.stopped, immediately: false)
        case SIGINT:
            interrupts += 1
            logger.notice(interrupts == 1 ? "SIGINT: draining every worker, then stopping (again to stop at once)" : "SIGINT again: stopping at once")
            beginStop(.stopped, immediately: interrupts > 1)
        case SIGQUIT:
            logger.notice("SIGQUIT: stopping at once")
            beginStop(.stopped, immediately: true)
        case SIGHUP:
            startReload()
        case SIGTTIN:
            scale(desired + 1)
        case SIGTTOU:
            scale(max(1, desired - 1))
        case SIGCHLD:
            reapOrphans()
        case SIGUSR2:
            await startUpgrade()
        default:
            break
        }
    }

    // MARK: Worker life

    private func becameReady(_ id: Int) {
        guard var entry = managed[id], entry.readyAt == nil else { return }
        entry.readyAt = clock.now
        managed[id] = entry
        if rollout?.pending.remove(id) != nil { rollout?.replaced += 1 }
        if let episode = ledger.booted() {
            degradedReason.withLock { $0 = nil }
            logger.notice("recovered: \(entry.worker) booted, ending the crash loop that began \(RestartLedger<ContinuousClock.Instant>.seconds(episode.began.duration(to: clock.now))) ago (\(episode.failures) boot failures); restarts are back to normal")
        }
        guard let old = entry.replacing else {
            // A worker joined (scaling up, or a restart): keep-alive clients stay where
            // they connected, so each other worker gives back its share of connections.
            let others = managed.values.filter { $0.readyAt != nil && !$0.retiring && $0.worker.id != id }
            if phase == .running, !others.isEmpty {
                let fraction = 1 / Double(others.count + 1)
                others.forEach { $0.worker.rebalance(fraction: fraction) }
            }
            return
        }
        managed[id]?.replacing = nil
        if managed[old] != nil {
            logger.info("\(entry.worker) (generation \(entry.generation)) is ready; retiring worker \(old)")
            retire(old)
        }
    }

    private func exited(_ worker: Worker, _ status: ExitStatus) {
        guard let entry = managed.removeValue(forKey: worker.id) else { return }
        if let successor = entry.replacedBy { managed[successor]?.replacing = nil }
        if rollout?.pending.remove(worker.id) != nil, !entry.retiring {
            // A replacement of the reload died before it was ready (its predecessor, if it
            // is still there, keeps serving).
            failReload("\(describe(entry)) exited (\(status)) before it was ready")
        } else if let old = entry.replacing, managed[old] != nil {
            logger.error("\(worker), replacing worker \(old), exited (\(status)) before it was ready; worker \(old) keeps serving")
        }
        if let old = entry.replacing, managed[old] != nil {
            managed[old]?.replacedBy = nil
            return
        }
        guard phase == .running, !entry.retiring else { return }
        let now = clock.now
        let uptime = entry.startedAt.duration(to: now)
        let readyFor = entry.readyAt.map { $0.duration(to: now) }
        let decision = ledger.exited(worker: "\(worker)", slot: worker.slot, status: status, uptime: uptime,
                                     readyFor: readyFor, serving: readyWorkers, at: now)
        apply(decision, slot: worker.slot) { delay in
            metrics.countRestart()
            restartsBySlot[worker.slot, default: 0] += 1
            typealias Ledger = RestartLedger<ContinuousClock.Instant>
            let exit = Ledger.exit(of: "\(worker)", status, readyFor: readyFor)
            logger.warning("\(exit) (up \(Ledger.roughly(uptime))); restarting slot \(worker.slot) in \(Ledger.roughly(delay))")
        }
    }

    /// Workers ready and not retiring: those serving now.
    private var readyWorkers: Int {
        managed.values.filter { $0.readyAt != nil && !$0.retiring }.count
    }

    /// Carries out a restart decision for `slot`; `restarting` reports a restart.
    private func apply(_ decision: RestartDecision, slot: Int, restarting: (Duration) -> Void) {
        switch decision {
        case .restart(let delay):
            restarting(delay)
            pendingRestarts.append((slot, clock.now.advanced(by: delay.asTimerDelay)))
        case .degrade(let delay, let reason):
            degradedReason.withLock { $0 = reason }
            logger.critical("crash loop: \(reason)")
            restarting(delay)
            pendingRestarts.append((slot, clock.now.advanced(by: delay.asTimerDelay)))
        case .stop(let reason):
            logger.critical("\(reason)")
            beginStop(.crashLoop(reason), immediately: false)
        }
    }

    /// Drains `id`: its exit is intended.
    private func retire(_ id: Int) {
        guard var entry = managed[id], !entry.retiring else { return }
        entry.retiring = true
        managed[id] = entry
        entry.worker.disconnect(timeout: supervision.drainTimeout)
    }

    /// Starts a worker in `slot`; returns its id, or nil when it could not start.
    @discardableResult
    private func spawn(slot: Int, replacing old: Int? = nil, generation: Int) async -> Int? {
        do {
            let worker = try await primary.fork(slot: slot)
            var entry = Managed(worker: worker, generation: generation, startedAt: clock.now, replacing: old)
            if let maxRequests = supervision.recycling.maxRequests {
                entry.requestLimit = maxRequests + Int.random(in: 0...supervision.recycling.jitter)
            }
            managed[worker.id] = entry
            if let old { managed[old]?.replacedBy = worker.id }
            return worker.id
        } catch {
            logger.error("could not start a worker in slot \(slot): \(error)")
            if old != nil {
                if rollout?.generation == generation { failReload("a worker of generation \(generation) could not start: \(error)") }
                return nil
            }
            let decision = ledger.exited(worker: "the worker for slot \(slot)", slot: slot, status: .exited(127),
                                         uptime: .zero, readyFor: nil, serving: readyWorkers, at: clock.now)
            apply(decision, slot: slot) { _ in }
            return nil
        }
    }

    // MARK: Reconciling

    /// Workers that count toward the desired number: not retiring, and a worker and its
    /// replacement count once.
    private var serving: [Managed] {
        managed.values.filter { !$0.retiring && $0.replacing == nil }
    }

    private func reconcile() async {
        switch phase {
        case .running:
            break
        case .stopping(let outcome):
            // A new primary being killed still holds the listeners: wait for its exit.
            if managed.isEmpty, upgrading == nil { phase = .done(outcome) }
            return
        case .done:
            return
        }
        let now = clock.now
        // Restarts whose backoff has passed.
        let due = pendingRestarts.filter { $0.due <= now }
        pendingRestarts.removeAll { $0.due <= now }
        for restart in due where serving.count + pendingRestarts.count < desired {
            await spawn(slot: restart.slot, generation: generation)
        }
        // Too few: start more, in the lowest free slots.
        while phase == .running, serving.count + pendingRestarts.count < desired {
            let used = Set(managed.values.map(\.worker.slot) + pendingRestarts.map(\.slot))
            await spawn(slot: (0...).first { !used.contains($0) }!, generation: generation)
        }
        // Too many: cancel restarts not yet due, then drain the oldest.
        while serving.count + pendingRestarts.count > desired, !pendingRestarts.isEmpty {
            pendingRestarts.removeLast()
        }
        let surplus = serving.count - desired
        if surplus > 0 {
            for entry in serving.sorted(by: { $0.worker.id < $1.worker.id }).prefix(surplus) {
                logger.info("scaling down: retiring \(entry.worker)")
                retire(entry.worker.id)
            }
        }
        // Workers to recycle: each replacement starts now, the worker retires when it is ready.
        let recycle = recycleQueue
        recycleQueue.removeAll()
        for id in recycle {
            guard phase == .running, let entry = managed[id], !entry.retiring, entry.replacedBy == nil else { continue }
            await spawn(slot: entry.worker.slot, replacing: id, generation: entry.generation)
        }
        await advanceReload()
        takeOverIfReady()
        if phase == .running {
            primary.releaseSlots(keeping: Set(managed.values.filter { !$0.retiring }.map(\.worker.slot) + pendingRestarts.map(\.slot)))
        }
    }

    // MARK: Reload

    private func startReload() {
        guard phase == .running else { return }
        guard rollout == nil else {
            reloadQueued = true
            logger.notice("reload requested during a reload: it runs when this one ends")
            return
        }
        let old = managed.values.filter { !$0.retiring && $0.replacing == nil }.sorted { $0.worker.id < $1.worker.id }.map(\.worker.id)
        rollout = Rollout(generation: generation + 1, queue: old)
        reloadState = .inProgress(generation: generation + 1)
        if ledger.episode != nil, !pendingRestarts.isEmpty {
            // An operator who reloads after fixing a deploy should not wait out the backoff.
            let slots = pendingRestarts.map { String($0.slot) }.joined(separator: ", ")
            logger.notice("reload during a crash loop: \(pendingRestarts.count == 1 ? "slot" : "slots") \(slots) start now, not after the backoff")
            pendingRestarts = pendingRestarts.map { ($0.slot, clock.now) }
        }
        logger.notice("reloading: replacing \(old.count) workers with generation \(generation + 1), \(supervision.reload.maxSurge) at a time")
    }

    private func advanceReload() async {
        guard var current = rollout, phase == .running else { return }
        let replacing = Set(managed.filter { $0.value.replacing != nil }.map(\.key))
        var inFlight = replacing.union(current.pending).count
        while inFlight < supervision.reload.maxSurge, !current.queue.isEmpty {
            let old = current.queue.removeFirst()
            guard let entry = managed[old], !entry.retiring, entry.replacedBy == nil else { continue }
            rollout = current
            let started = await spawn(slot: entry.worker.slot, replacing: old, generation: current.generation)
            guard let started, rollout != nil else { return } // failed while spawning
            current.pending.insert(started)
            inFlight += 1
        }
        rollout = current
        guard current.queue.isEmpty, inFlight == 0 else { return }
        // Workers of an older generation started meanwhile (restarts of slots whose worker
        // died during the rollout) are replaced too, so that the message below is true.
        let stale = managed.values.filter { !$0.retiring && $0.replacing == nil && $0.replacedBy == nil && $0.generation < current.generation }
        if !stale.isEmpty {
            rollout?.queue = stale.map(\.worker.id).sorted()
            await advanceReload()
            return
        }
        generation = current.generation
        rollout = nil
        reloadState = .completed(generation: generation)
        logger.notice("reload complete: every worker is generation \(generation)")
        if reloadQueued {
            reloadQueued = false
            startReload()
            await advanceReload()
        }
    }

    /// `worker 3 (pid 9, generation 2)`.
    private func describe(_ entry: Managed) -> String {
        "worker \(entry.worker.id) (pid \(entry.worker.pid), generation \(entry.generation))"
    }

    /// A replacement of the reload failed (`what` says how): the rollout stops there, like a
    /// failed deploy, rather than replace more healthy workers with a broken generation.
    /// Its other replacements not yet ready are killed; the workers not replaced keep
    /// serving, and the generation does not advance.
    private func failReload(_ what: String) {
        guard let current = rollout else { return }
        rollout = nil
        reloadQueued = false
        for id in current.pending.sorted() {
            guard let entry = managed[id], entry.readyAt == nil, !entry.retiring else { continue }
            managed[id]?.retiring = true
            if let old = entry.replacing { managed[old]?.replacedBy = nil }
            managed[id]?.replacing = nil
            entry.worker.kill(.kill)
        }
        let previous = current.generation - 1
        var outcome = readyWorkers > 0 ? "generation \(previous) keeps serving" : "no worker is ready; generation \(previous) is started again"
        if current.replaced > 0 {
            outcome += " (with the \(current.replaced) \(current.replaced == 1 ? "worker" : "workers") of generation \(current.generation) already ready)"
        }
        let reason = "\(what); \(outcome)"
        reloadState = .failed(generation: current.generation, reason: reason)
        logger.error("reload failed: \(reason)")
    }

    // MARK: Hot upgrade

    private func startUpgrade() async {
        guard phase == .running else { return }
        if let upgrading {
            logger.notice("hot upgrade already in progress (new primary \(upgrading.child.pid))")
            return
        }
        let child: PrimaryUpgrade
        do {
            child = try await primary.upgrade { [feed] status in feed.yield(.upgradeEnded(status)) }
        } catch {
            logger.error("hot upgrade failed: \(error); this primary carries on")
            return
        }
        upgrading = (child, clock.now, false)
        guard phase == .running else {
            // Stopped while it was starting: it must not outlive this primary on the listeners.
            endUpgrade()
            return
        }
        logger.notice("hot upgrade: started a new primary (pid \(child.pid)) on the same listeners; this one drains when its workers are ready (within \(RestartLedger<ContinuousClock.Instant>.seconds(supervision.upgradeTimeout)))")
    }

    /// The new primary has not taken over within the upgrade timeout: kill it, carry on.
    private func checkUpgradeDeadline(now: ContinuousClock.Instant) {
        guard let current = upgrading, !current.killed, phase == .running,
              current.startedAt.duration(to: now) > supervision.upgradeTimeout, !current.child.tookOver else { return }
        logger.error("hot upgrade failed: the new primary (pid \(current.child.pid)) did not take over within \(RestartLedger<ContinuousClock.Instant>.seconds(supervision.upgradeTimeout)); killing it (its workers die with it); this primary carries on")
        current.child.kill()
        upgrading?.killed = true
    }

    /// Stopping: a new primary that took over carries on; one that has not is killed
    /// first, so that nothing started here outlives this primary on the listeners.
    private func endUpgrade() {
        guard let current = upgrading, !current.killed else { return }
        if current.child.tookOver {
            logger.notice("primary \(current.child.pid) took over: this one drains and exits")
            upgrading = nil
            return
        }
        logger.warning("stopping during a hot upgrade: killing the new primary (pid \(current.child.pid)) first (its workers die with it)")
        current.child.kill()
        upgrading?.killed = true
    }

    /// Started by a hot upgrade: once every worker is ready, the old primary may go.
    private func takeOverIfReady() {
        guard !tookOver, let old = primary.upgradedFrom, phase == .running else { return }
        let ready = managed.values.filter { $0.readyAt != nil && !$0.retiring }.count
        guard ready >= desired else { return }
        tookOver = true
        // Only our parent: a pid that is no longer the old primary's is never signalled.
        guard getppid() == old else { return }
        logger.notice("took over from primary \(old): its workers drain now")
        primary.announceTakeOver()
        kill(old, SIGTERM)
    }

    // MARK: Scaling and stopping

    private func scale(_ count: Int) {
        guard phase == .running else { return }
        let count = max(0, min(count, 4096))
        guard count != desired else { return }
        logger.notice("scaling from \(desired) to \(count) workers")
        desired = count
    }

    private func beginStop(_ outcome: Outcome, immediately: Bool) {
        switch phase {
        case .done:
            return
        case .stopping(let current):
            guard immediately else { return }
            phase = .stopping(current)
        case .running:
            phase = .stopping(outcome)
        }
        pendingRestarts.removeAll()
        if let current = rollout {
            reloadState = .failed(generation: current.generation, reason: "the cluster stopped before every worker of generation \(current.generation) was ready")
        }
        rollout = nil
        reloadQueued = false
        endUpgrade()
        // Connections not yet accepted stay queued (for a new primary after a hot upgrade).
        primary.stopAccepting()
        for (id, entry) in managed {
            if immediately {
                managed[id]?.retiring = true
                entry.worker.kill(.kill)
            } else {
                retire(id)
            }
        }
    }

    // MARK: The tick

    private func tick() {
        let now = clock.now
        for (id, entry) in managed {
            checkReadiness(entry, now: now)
            checkWatchdog(id, entry, now: now)
            checkStayedUp(entry, now: now)
        }
        checkUpgradeDeadline(now: now)
        if lastPublished.map({ $0.duration(to: now) >= .seconds(1) }) ?? true {
            lastPublished = now
            metrics.publish(desired: desired, degraded: ledger.episode != nil)
        }
        if supervision.recycling.isEnabled, phase == .running {
            if lastSample.map({ $0.duration(to: now) >= .seconds(1) }) ?? true {
                lastSample = now
                for entry in managed.values { checkRecycling(entry, now: now) }
            }
        }
    }

    private func checkReadiness(_ entry: Managed, now: ContinuousClock.Instant) {
        guard entry.readyAt == nil, !entry.retiring else { return }
        let reloading = rollout?.pending.contains(entry.worker.id) == true
        let limit = entry.replacing == nil && !reloading ? supervision.bootTimeout : supervision.reload.readyTimeout
        guard entry.startedAt.duration(to: now) > limit else { return }
        if reloading {
            failReload("\(describe(entry)) was not ready within \(RestartLedger<ContinuousClock.Instant>.seconds(limit))")
            return
        }
        logger.error("\(entry.worker) was not ready within \(RestartLedger<ContinuousClock.Instant>.seconds(limit)); killing it")
        entry.worker.signal(.kill)
    }

    /// A crash-loop episode in which workers died soon after they were ready ends when a
    /// worker started since it began stays up the policy's `resetAfter`.
    private func checkStayedUp(_ entry: Managed, now: ContinuousClock.Instant) {
        guard ledger.episode != nil, entry.readyAt != nil, !entry.retiring,
              let episode = ledger.stayedUp(since: entry.startedAt, at: now) else { return }
        degradedReason.withLock { $0 = nil }
        logger.notice("recovered: \(entry.worker) stayed up \(RestartLedger<ContinuousClock.Instant>.roughly(entry.startedAt.duration(to: now))), ending the crash loop that began \(RestartLedger<ContinuousClock.Instant>.seconds(episode.began.duration(to: now))) ago (\(episode.failures) boot failures); restarts are back to normal")
    }

    private func checkWatchdog(_ id: Int, _ entry: Managed, now: ContinuousClock.Instant) {
        guard let watchdog = supervision.watchdog, entry.readyAt != nil else { return }
        // A worker whose channel has closed (it drains its last connections) sends no
        // more heartbeats; its drain deadline bounds it.
        if entry.abortedAt == nil, !entry.worker.isConnected { return }
        if let abortedAt = entry.abortedAt {
            if abortedAt.duration(to: now) >= watchdog.killAfter { entry.worker.signal(.kill) }
            return
        }
        let silence = entry.worker.sinceLastHeartbeat ?? entry.readyAt!.duration(to: now)
        let lag = entry.worker.eventLoopLag
        guard silence > watchdog.timeout || lag > watchdog.timeout else { return }
        let why = lag > watchdog.timeout ? "its event loop has been blocked for \(lag)" : "it has not sent a heartbeat for \(silence)"
        logger.error("\(entry.worker) is hung: \(why) (watchdog timeout \(watchdog.timeout)); replacing it: SIGABRT, then SIGKILL after \(watchdog.killAfter)")
        managed[id]?.abortedAt = now
        // Its runtime thread still works: stop it taking connections it cannot serve, and
        // start the replacement now rather than after it died.
        retire(id)
        entry.worker.signal(.abort)
    }

    private func checkRecycling(_ entry: Managed, now: ContinuousClock.Instant) {
        guard entry.readyAt != nil, !entry.retiring, entry.replacedBy == nil, entry.abortedAt == nil else { return }
        let recycling = supervision.recycling
        var reason: String?
        if let limit = entry.requestLimit, entry.worker.requestsServed >= limit {
            reason = "it served \(entry.worker.requestsServed) requests (limit \(limit))"
        } else if let maxRSS = recycling.maxRSS,
                  case let rss = max(entry.worker.residentMemory ?? 0, entry.worker.stats.residentMemory), rss > maxRSS {
            reason = "its resident memory is \(rss / 1_048_576) MiB (limit \(maxRSS / 1_048_576) MiB)"
        } else if let maxAge = recycling.maxAge, entry.startedAt.duration(to: now) > maxAge {
            reason = "it is older than \(RestartLedger<ContinuousClock.Instant>.seconds(maxAge))"
        }
        guard let reason else { return }
        logger.notice("recycling \(entry.worker): \(reason); its replacement starts first")
        if !recycleQueue.contains(entry.worker.id) { recycleQueue.append(entry.worker.id) }
    }

    // MARK: Autoscaling

    /// Samples the load every policy interval and applies the policy's decision.
    private func autoscale() async {
        guard var policy = autoscaler, phase == .running else { return }
        let now = clock.now
        if let last = lastLoadSample, last.duration(to: now) < policy.interval { return }
        lastLoadSample = now
        let load = await currentLoad()
        guard load.workers > 0 || desired == 0 else { return }
        let decision = policy.decide(load, at: startedAt.duration(to: now))
        autoscaler = policy
        guard let decision else { return }
        guard decision.workers != desired else {
            logger.info("autoscale: holding at \(desired) workers: \(decision.reason)")
            return
        }
        logger.notice("autoscale: \(desired) → \(decision.workers) workers: \(decision.reason)")
        desired = decision.workers
    }

    /// The load as the autoscaler sees it: ready workers' stats, the primary's queue, the host.
    private func currentLoad() async -> ClusterLoad {
        let ready = ClusterStats(managed.values.filter { $0.readyAt != nil && !$0.retiring }.map(\.worker.stats))
        return ClusterLoad(
            workers: ready.workers,
            utilization: ready.utilization,
            eventLoopBusy: ready.eventLoopBusy,
            lagP99: ready.eventLoopLagP99,
            waitingConnections: await primary.waitingConnections,
            memoryAvailable: Host.memoryAvailable(),
            workerMemory: ready.residentMemory / max(1, ready.workers),
            loadAverage: Host.loadAverage(),
            hostIdle: hostIdle.sample(),
            cores: Cluster.availableCores)
    }

    // MARK: PID 1

    /// As PID 1 (a container's init) the primary inherits orphans; reap those it did not
    /// spawn, and ignore how they ended.
    private nonisolated func reapOrphans() {
        guard getpid() == 1 else { return }
        // On the I/O thread, where workers are spawned and reaped: none can start or end
        // between the list of ours and the reaping of the others.
        primary.loop.execute { [primary] in
            let ours = primary.workers.values.map(\.pid)
            _ = ours.withUnsafeBufferPointer { cluster_reap_others($0.baseAddress, Int32($0.count)) }
        }
    }
}
