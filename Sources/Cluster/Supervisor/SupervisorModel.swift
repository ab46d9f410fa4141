import Logging

/// A supervisor's decisions, apart from its processes: the slots and what should run in
/// them in, the actions that make it so out. A pure value, driven by the events and the
/// instants it is given, like ``RestartLedger``; the ``Supervisor`` actor performs its
/// actions and reports back.
///
/// The slot is the unit. Each holds at most one worker that serves or is starting (its
/// *holder*), at most one started to take over from it (its *successor*: a reload, a
/// recycle), a spawn under way, or a restart waiting out its backoff. A successor that is
/// ready becomes the holder and the old holder retires; a holder that dies leaves the slot
/// to its successor, or to a restart. Retiring workers belong to no slot: they drain, and
/// their exit is intended. The slot count follows the desired worker count.
///
/// Every event method reconciles before it returns: due restarts and empty slots are
/// started, surplus slots drained, the reload advanced.
struct SupervisorModel<Instant: InstantProtocol> where Instant.Duration == Duration {
    typealias Ledger = RestartLedger<Instant>

    /// One worker the model keeps.
    struct Member: Equatable, CustomStringConvertible {
        let id: Int
        let pid: Int32
        let slot: Int
        let generation: Int
        let startedAt: Instant
        var readyAt: Instant?
        /// When the watchdog sent SIGABRT.
        var abortedAt: Instant?
        /// SIGKILL was sent (not ready in time, or still there after the watchdog's abort).
        var killed = false
        /// Recycle after this many requests.
        let requestLimit: Int?
        /// Started by the reload under way and not ready yet: the reload completes only
        /// when it is.
        var reloading = false

        /// `worker 3 (pid 9)`, as ``Worker`` says it.
        var description: String { "worker \(id) (pid \(pid))" }

        /// The worker as log metadata, for a line about it.
        var metadata: Logger.Metadata {
            ["cluster.worker.id": "\(id)", "cluster.worker.pid": "\(pid)", "cluster.worker.slot": "\(slot)",
             "cluster.worker.generation": "\(generation)"]
        }
    }

    /// A spawn asked for and not reported yet.
    struct Launch: Equatable {
        let generation: Int
        /// It is to take over from the slot's holder.
        let successor: Bool
        let reloading: Bool
    }

    /// One place in the cluster: a reusePort socket, sticky clients, a series of metrics.
    struct Slot: Equatable {
        var holder: Member?
        var successor: Member?
        var launching: Launch?
        /// When its restart is due: it has no worker and waits out its backoff.
        var restartAt: Instant?

        /// A worker will hold it: one does, one is being spawned, or a restart waits.
        var isTaken: Bool { holder != nil || launching != nil || restartAt != nil }
        /// A successor runs or is being spawned.
        var isBeingReplaced: Bool { successor != nil || launching?.successor == true }

        /// The holder left: its successor, if any, holds the slot now.
        mutating func handOver() {
            holder = successor
            successor = nil
        }
    }

    /// A reload under way.
    struct Rollout: Equatable {
        /// The generation it starts.
        let generation: Int
        /// Replacements that became ready.
        var replaced = 0
    }

    enum Phase: Equatable {
        case running
        case stopping(Supervisor.Outcome)
    }

    /// Where a worker is.
    enum Place: Equatable {
        case holder(slot: Int)
        case successor(slot: Int)
        case retiring
    }

    let supervision: Supervision
    var slots: [Int: Slot] = [:]
    /// Workers told to drain or killed on purpose, by id.
    var retiring: [Int: Member] = [:]
    var desired: Int
    /// The generation new workers belong to; each completed reload adds one.
    var generation = 1
    var ledger: Ledger
    var rollout: Rollout?
    var lastReload: Supervisor.ReloadState?
    var reloadQueued = false
    var phase = Phase.running
    /// Why the cluster is degraded (a crash-loop episode while workers serve), or nil.
    var degradation: String?
    /// Unplanned restarts of each slot.
    var restarts: [Int: Int] = [:]
    var lastRecyclingSample: Instant?
    /// The slots last passed to `releaseSlots`.
    var released: Set<Int>?
    /// The actions of the event being handled.
    var actions: [SupervisorAction] = []

    init(supervision: Supervision) {
        self.supervision = supervision
        desired = supervision.workers
        ledger = Ledger(policy: supervision.restart)
    }

    // MARK: Reading

    /// Every worker, by id.
    var members: [Member] {
        (slots.values.flatMap { [$0.holder, $0.successor].compactMap(\.self) } + retiring.values).sorted { $0.id < $1.id }
    }

    /// Workers serving now (ready holders), by id.
    var serving: [Member] {
        slots.values.compactMap(\.holder).filter { $0.readyAt != nil }.sorted { $0.id < $1.id }
    }

    /// Stopping, and every worker has exited.
    var isDrained: Bool { phase != .running && slots.isEmpty && retiring.isEmpty }

    func place(of id: Int) -> Place? {
        if retiring[id] != nil { return .retiring }
        for (index, slot) in slots {
            if slot.holder?.id == id { return .holder(slot: index) }
            if slot.successor?.id == id { return .successor(slot: index) }
        }
        return nil
    }

    func member(_ id: Int) -> Member? {
        switch place(of: id) {
        case .holder(let index): slots[index]?.holder
        case .successor(let index): slots[index]?.successor
        case .retiring: retiring[id]
        case nil: nil
        }
    }

    /// Where `member` is in its supervised life, for the status table.
    func role(of member: Member) -> SupervisedWorker.Role {
        switch place(of: member.id) {
        case .retiring, nil: .retiring
        case .successor: .starting
        case .holder(let index):
            member.readyAt == nil ? .starting : slots[index]?.isBeingReplaced == true ? .replaced : .ready
        }
    }

    // MARK: Spawns

    /// The worker a `.spawn` asked for started.
    mutating func spawned(slot index: Int, worker id: Int, pid: Int32, requestLimit: Int?, at now: Instant) -> [SupervisorAction] {
        guard let launch = slots[index]?.launching else {
            // No longer wanted: the cluster stops, the reload failed, or the slot went.
            retiring[id] = Member(id: id, pid: pid, slot: index, generation: generation, startedAt: now, requestLimit: nil)
            emit(.kill(worker: id))
            return finish(at: now)
        }
        let member = Member(id: id, pid: pid, slot: index, generation: launch.generation, startedAt: now,
                            requestLimit: requestLimit, reloading: launch.reloading)
        slots[index]?.launching = nil
        if launch.successor, slots[index]?.holder != nil {
            slots[index]?.successor = member
        } else {
            slots[index]?.holder = member
        }
        return finish(at: now)
    }

    /// The worker a `.spawn` asked for could not start; `error` says why.
    mutating func spawnFailed(slot index: Int, error: String, at now: Instant) -> [SupervisorAction] {
        emit(.log(.error, "could not start a worker in slot \(index): \(error)"))
        guard let launch = slots[index]?.launching else { return finish(at: now) }
        slots[index]?.launching = nil
        if launch.successor {
            // The holder keeps serving; a recycle is tried again at the next sample.
            if launch.reloading { failReload("a worker of generation \(launch.generation) could not start: \(error)") }
            return finish(at: now)
        }
        let decision = ledger.exited(worker: "the worker for slot \(index)", slot: index, status: .exited(127),
                                     uptime: .zero, readyFor: nil, serving: serving.count, at: now)
        apply(decision, slot: index, at: now, exit: nil)
        return finish(at: now)
    }

    // MARK: Worker life

    /// A worker became ready: a successor takes over its slot and the old holder retires;
    /// a holder that joined has the others give it a share of their connections.
    mutating func ready(worker id: Int, at now: Instant) -> [SupervisorAction] {
        guard let place = place(of: id), var member = member(id), member.readyAt == nil else { return finish(at: now) }
        member.readyAt = now
        if member.reloading {
            member.reloading = false
            rollout?.replaced += 1
        }
        update(member, at: place)
        if let episode = ledger.booted() {
            degradation = nil
            emit(.log(.notice, "recovered: \(member) booted, ending the crash loop that began \(Ledger.seconds(episode.began.duration(to: now))) ago (\(episode.failures) boot failures); restarts are back to normal", member.metadata))
        }
        switch place {
        case .successor(let index):
            let old = slots[index]?.holder
            slots[index]?.holder = member
            slots[index]?.successor = nil
            if let old {
                emit(.log(.info, "\(member) (generation \(member.generation)) is ready; retiring worker \(old.id)", member.metadata))
                retire(old)
            }
        case .holder:
            // A worker joined (scaling up, or a restart): keep-alive clients stay where they
            // connected, so each other worker gives back its share of connections.
            let others = serving.filter { $0.id != id }.map(\.id)
            if phase == .running, !others.isEmpty {
                emit(.rebalance(workers: others, fraction: 1 / Double(others.count + 1)))
            }
        case .retiring:
            break
        }
        return finish(at: now)
    }

    /// A worker exited. A retiring one was meant to; a successor that dies leaves its slot
    /// to the holder; a holder leaves it to its successor, or to a restart after the
    /// ledger's backoff.
    mutating func exited(worker id: Int, status: ExitStatus, at now: Instant) -> [SupervisorAction] {
        switch place(of: id) {
        case nil:
            break
        case .retiring:
            retiring[id] = nil
        case .successor(let index):
            guard let member = slots[index]?.successor else { break }
            slots[index]?.successor = nil
            if member.reloading {
                // Its predecessor keeps serving.
                failReload("\(describe(member)) exited (\(status)) before it was ready")
            } else if let holder = slots[index]?.holder {
                emit(.log(.error, "\(member), replacing worker \(holder.id), exited (\(status)) before it was ready; worker \(holder.id) keeps serving", member.metadata))
            }
        case .holder(let index):
            guard let member = slots[index]?.holder else { break }
            slots[index]?.handOver()
            if member.reloading { failReload("\(describe(member)) exited (\(status)) before it was ready") }
            guard phase == .running else { break }
            let uptime = member.startedAt.duration(to: now)
            let readyFor = member.readyAt.map { $0.duration(to: now) }
            let decision = ledger.exited(worker: "\(member)", slot: index, status: status, uptime: uptime,
                                         readyFor: readyFor, serving: serving.count, at: now)
            let exit = "\(Ledger.exit(of: "\(member)", status, readyFor: readyFor)) (up \(Ledger.roughly(uptime)))"
            apply(decision, slot: index, at: now, exit: exit, metadata: member.metadata)
        }
        return finish(at: now)
    }

    /// Carries out the ledger's decision about `slot`, whose worker exited (`exit` says
    /// how; nil: it could not start, which is not counted as a restart).
    private mutating func apply(_ decision: RestartDecision, slot index: Int, at now: Instant, exit: String?,
                                metadata: Logger.Metadata = [:]) {
        let delay: Duration
        switch decision {
        case .restart(let after):
            delay = after
        case .degrade(let after, let reason):
            degradation = reason
            emit(.log(.critical, "crash loop: \(reason)", metadata))
            delay = after
        case .stop(let reason):
            emit(.log(.critical, reason, metadata))
            beginStop(.crashLoop(reason), immediately: false)
            return
        }
        if slots[index]?.holder != nil || slots[index]?.launching != nil {
            // The worker started to replace it takes the slot: nothing to restart.
            if let exit { emit(.log(.warning, "\(exit); the worker replacing it takes slot \(index)", metadata)) }
            return
        }
        if let exit {
            restarts[index, default: 0] += 1
            emit(.restartScheduled(slot: index, after: delay))
            emit(.log(.warning, "\(exit); restarting slot \(index) in \(Ledger.roughly(delay))", metadata))
        }
        slots[index]?.restartAt = now.advanced(by: delay.asTimerDelay)
    }

    // MARK: Helpers

    mutating func emit(_ action: SupervisorAction) { actions.append(action) }

    /// Reconciles, and hands over the actions of the event.
    mutating func finish(at now: Instant) -> [SupervisorAction] {
        reconcileSlots(at: now)
        defer { actions.removeAll() }
        return actions
    }

    /// Drains `member`, which has left its slot: its exit is intended.
    mutating func retire(_ member: Member) {
        var member = member
        member.reloading = false
        retiring[member.id] = member
        emit(.retire(worker: member.id))
    }

    /// Writes `member` back where it is.
    mutating func update(_ member: Member, at place: Place) {
        switch place {
        case .holder(let index): slots[index]?.holder = member
        case .successor(let index): slots[index]?.successor = member
        case .retiring: retiring[member.id] = member
        }
    }

    /// `worker 3 (pid 9, generation 2)`.
    func describe(_ member: Member) -> String {
        "worker \(member.id) (pid \(member.pid), generation \(member.generation))"
    }
}
