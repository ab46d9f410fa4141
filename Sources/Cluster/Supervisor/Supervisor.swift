import CClusterShims
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a primary's workers as ``Supervision`` says: the right number, restarted with
/// backoff, replaced one by one on reload, recycled before they leak, killed when hung,
/// and drained on shutdown. One loop owns all of it: signals, commands, worker events and a
/// 100 ms tick only change the desired state or feed the loop; after each, its model
/// (`SupervisorModel`) reconciles what runs with what should, and the actor performs the
/// actions that takes.
///
/// ```swift
/// case .primary(let primary):
///     let outcome = await Supervisor(primary: primary).supervise()   // SIGTERM drains, SIGHUP reloads
///     exit(outcome.exitCode)
/// ```
///
/// It is also a swift-service-lifecycle `Service` (``run()``), for a `ServiceGroup`.
public actor Supervisor {
    /// Why ``supervise()`` returned.
    public enum Outcome: Sendable, Equatable, CustomStringConvertible {
        /// Stopped on request (a signal or ``stop(immediately:)``) after the workers drained.
        case stopped
        /// Workers kept failing to boot, or one said it cannot boot, and no worker was left
        /// serving: the reason says which.
        case crashLoop(String)
        /// Nothing was started: the supervisor had run already (a supervisor runs once).
        case refused(String)

        /// The exit code for the primary: 0 when stopped, 1 after a crash loop, 70
        /// (`EX_SOFTWARE`) when refused.
        public var exitCode: Int32 {
            switch self {
            case .stopped: 0
            case .crashLoop: 1
            case .refused: 70
            }
        }

        public var description: String {
            switch self {
            case .stopped: "stopped"
            case .crashLoop(let reason), .refused(let reason): reason
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

    /// The primary supervised.
    public nonisolated let primary: Primary
    /// The rules it keeps.
    public nonisolated let supervision: Supervision

    private let inputs: AsyncStream<Input>
    nonisolated let feed: AsyncStream<Input>.Continuation
    let clock = ContinuousClock()
    /// Where the supervisor logs: restarts, reloads, crash loops, signals. Lines about a
    /// worker carry it as metadata (`cluster.worker.id`, `.pid`, `.slot`, `.generation`).
    public nonisolated let logger: Logger
    /// What should run and what to do about it; this actor performs its actions.
    var model: SupervisorModel<ContinuousClock.Instant>
    /// The live workers the model knows, by id.
    var workers: [Int: Worker] = [:]
    private var interrupts = 0
    private var autoscaler: (any AutoscalePolicy)?
    var metrics = MetricsPublisher()
    private var lastPublished: ContinuousClock.Instant?
    private var lastLoadSample: ContinuousClock.Instant?
    private var hostIdle = HostIdleSampler()
    private let startedAt = ContinuousClock.now
    private var signals: SignalWatcher?
    /// The hot upgrade in progress: the new primary, when it started, and whether this
    /// primary killed it (it is gone when its exit arrives).
    var upgrading: (child: PrimaryUpgrade, startedAt: ContinuousClock.Instant, killed: Bool)?
    /// Why the cluster is degraded (a crash-loop episode while workers serve), or nil.
    nonisolated let degradedReason = Mutex<String?>(nil)
    /// Whether this primary, started by a hot upgrade, has told the old one to stop.
    var tookOver = false
    /// Whether it has run (it runs once).
    private var started = false
    /// What the service manager has been told (sd_notify).
    var serviceStatus: ServiceStatus

    /// A supervisor for `primary`; nothing starts until ``supervise()`` (or ``run()``).
    /// It logs to `logger` (default: the label `cluster.supervisor`).
    public init(primary: Primary, supervision: Supervision = Supervision(),
                logger: Logger = Logger(label: "cluster.supervisor")) {
        self.primary = primary
        self.supervision = supervision
        self.logger = logger
        model = SupervisorModel(supervision: supervision)
        serviceStatus = ServiceStatus(startedByUpgrade: primary.upgradedFrom != nil)
        autoscaler = supervision.autoscale
        (inputs, feed) = AsyncStream.makeStream(of: Input.self)
    }

    /// The signals ``supervise()`` handles when ``Supervision/handlesSignals`` is on (and
    /// SIGCHLD as PID 1, to reap orphans).
    public static let handledSignals: [Signal] = [
        .terminate, .interrupt, .quit, .hangup, Signal(rawValue: SIGTTIN), Signal(rawValue: SIGTTOU), .user2,
    ]

    /// The signals watched for `handled`, with SIGCHLD as PID 1.
    static func watchedSignals(_ handled: [Signal]) -> [Signal] {
        handled + (getpid() == 1 ? [Signal(rawValue: SIGCHLD)] : [])
    }

    // MARK: Commands (from any thread)

    /// Starts a rolling reload: every worker is replaced by one of a new generation (from
    /// the executable now on disk), each retiring only when its replacement is ready. A
    /// reload asked for during another runs after it.
    public nonisolated func reload() { feed.yield(.reload) }

    /// Sets the number of workers. Scaling down drains the oldest workers.
    public nonisolated func scale(to workers: Int) { feed.yield(.scale(workers)) }

    /// Stops the cluster: drains every worker (SIGKILL after the drain timeout), or kills
    /// them at once. ``supervise()`` returns when all have exited.
    public nonisolated func stop(immediately: Bool = false) { feed.yield(.stop(immediately: immediately)) }

    /// Hands over to a new primary started from the executable now on disk, which inherits
    /// the listeners; when its workers are ready it stops this one (see
    /// ``Primary/upgrade(exited:)``). SIGUSR2 does the same.
    public nonisolated func upgrade() { feed.yield(.upgrade) }

    /// The number of workers the supervisor keeps.
    public var desiredWorkers: Int { model.desired }

    /// Why the cluster is degraded, or nil when it is not: workers keep failing to boot
    /// while others serve, and boot attempts back off (see ``RestartPolicy``). Readable
    /// from any thread, for health checks (`ClusterAdmin`'s `/readyz` reports it).
    public nonisolated var degradation: String? { degradedReason.withLock { $0 } }

    /// The generation new workers belong to; each completed reload adds one (a failed one
    /// adds none).
    public var currentGeneration: Int { model.generation }

    /// How the latest reload went (under way, complete, or failed and why); nil before the
    /// first.
    public var lastReload: ReloadState? { model.lastReload }

    /// Every worker the supervisor manages now, by id: for a status table.
    public var status: [SupervisedWorker] {
        let now = clock.now
        return model.members.compactMap { member in
            guard let worker = workers[member.id] else { return nil }
            return SupervisedWorker(worker: worker, generation: member.generation, role: model.role(of: member),
                                    uptime: member.startedAt.duration(to: now),
                                    restarts: model.restarts[member.slot, default: 0])
        }
    }

    // MARK: The loop

    /// Starts the workers and supervises them until the cluster stops; returns why.
    ///
    /// Cancelling the calling task stops the cluster as ``stop(immediately:)`` does: the
    /// workers drain, and this returns when they have exited. A supervisor runs once; a
    /// second call returns ``Outcome/refused(_:)`` at once.
    public func supervise() async -> Outcome {
        await supervise(handling: supervision.handlesSignals ? Self.handledSignals : [])
    }

    /// ``supervise()``, handling the signals `handled`.
    func supervise(handling handled: [Signal]) async -> Outcome {
        guard !started else {
            let reason = "this supervisor has run already; make a new Supervisor for each run"
            logger.error("\(reason)")
            return .refused(reason)
        }
        started = true
        // The loop runs in a task of its own, which the caller's cancellation does not
        // reach (its input stream would end at once): cancelling asks it to drain instead.
        let loop = Task { await self.loop(handling: handled) }
        return await withTaskCancellationHandler {
            await loop.value
        } onCancel: { [feed] in
            feed.yield(.stop(immediately: false))
        }
    }

    private func loop(handling handled: [Signal]) async -> Outcome {
        let watched = Self.watchedSignals(handled)
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
            signals?.restoreDefaults(watched)
        }
        if !handled.isEmpty {
            do {
                signals = try SignalWatcher(watched) { [feed] in feed.yield(.signal($0)) }
            } catch {
                logger.error("cannot handle signals: \(error); SIGTERM will end the primary without draining")
            }
        }
        primary.keepUpgradeNotifyFromPrograms()
        logger.info("supervising \(model.desired) workers (generation \(model.generation))")
        await perform(model.reconcile(at: clock.now))
        takeOverIfReady()
        notifyServiceManager()
        for await input in inputs {
            await handle(input)
            takeOverIfReady()
            notifyServiceManager()
            // A new primary being killed still holds the listeners: wait for its exit.
            if model.isDrained, upgrading == nil, case .stopping(let outcome) = model.phase { return outcome }
        }
        return .stopped
    }

    private func handle(_ input: Input) async {
        switch input {
        case .event(let event): await handle(event)
        case .signal(let number): await handle(signal: number)
        case .reload: await startReload(at: clock.now)
        case .scale(let count): await perform(model.scale(to: count, at: clock.now))
        case .stop(let immediately): await perform(model.stop(immediately: immediately, at: clock.now))
        case .upgrade: await startUpgrade()
        case .upgradeEnded(let status):
            // One upgrade at a time, and the loop handles this after the one that started it.
            guard let current = upgrading else { break }
            upgrading = nil
            if model.phase == .running, !current.killed {
                logger.error("hot upgrade failed: the new primary (pid \(current.child.pid)) exited (\(status)) before it took over; this primary carries on")
            }
        case .tick:
            await tick()
        }
    }

    private func handle(_ event: ClusterEvent) async {
        switch event {
        case .listening(let worker, _) where supervision.readiness == .listening,
             .ready(let worker) where supervision.readiness == .explicit:
            await perform(model.ready(worker: worker.id, at: clock.now))
        case .exit(let worker, let status):
            await perform(model.exited(worker: worker.id, status: status, at: clock.now))
            workers[worker.id] = nil
        default:
            break
        }
    }

    private func handle(signal number: Int32) async {
        let now = clock.now
        switch number {
        case SIGTERM:
            logger.notice("SIGTERM: draining every worker, then stopping")
            await perform(model.stop(immediately: false, at: now))
        case SIGINT:
            interrupts += 1
            logger.notice(interrupts == 1 ? "SIGINT: draining every worker, then stopping (again to stop at once)" : "SIGINT again: stopping at once")
            await perform(model.stop(immediately: interrupts > 1, at: now))
        case SIGQUIT:
            logger.notice("SIGQUIT: stopping at once")
            await perform(model.stop(immediately: true, at: now))
        case SIGHUP:
            await startReload(at: now)
        case SIGTTIN:
            await perform(model.scale(to: model.desired + 1, at: now))
        case SIGTTOU:
            await perform(model.scale(to: max(1, model.desired - 1), at: now))
        case SIGCHLD:
            reapOrphans()
        case SIGUSR2:
            await startUpgrade()
        default:
            break
        }
    }

    /// Starts a rolling reload (after the one under way, if any), counted.
    private func startReload(at now: ContinuousClock.Instant) async {
        metrics.countReload()
        await perform(model.reload(at: now))
    }

    // MARK: The tick

    private func tick() async {
        let now = clock.now
        await perform(model.tick(at: now, gauges: workers))
        checkUpgradeDeadline(now: now)
        if lastPublished.map({ $0.duration(to: now) >= .seconds(1) }) ?? true {
            lastPublished = now
            metrics.publish(desired: model.desired, degraded: model.ledger.episode != nil,
                            bootFailures: model.ledger.bootFailuresCounted)
        }
        await autoscale()
    }

    /// Samples the load every policy interval and applies the policy's decision.
    private func autoscale() async {
        guard var policy = autoscaler, model.phase == .running else { return }
        let now = clock.now
        if let last = lastLoadSample, last.duration(to: now) < policy.interval { return }
        lastLoadSample = now
        let load = await currentLoad()
        guard load.workers > 0 || model.desired == 0 else { return }
        let decision = policy.decide(load, at: startedAt.duration(to: now))
        autoscaler = policy
        guard let decision else { return }
        guard decision.workers != model.desired else {
            logger.info("autoscale: holding at \(model.desired) workers: \(decision.reason)")
            return
        }
        await perform(model.autoscale(to: decision, at: clock.now))
    }

    /// The load as the autoscaler sees it: ready workers' stats, the primary's queue, the host.
    private func currentLoad() async -> ClusterLoad {
        let ready = ClusterStats(model.serving.compactMap { workers[$0.id]?.stats })
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
