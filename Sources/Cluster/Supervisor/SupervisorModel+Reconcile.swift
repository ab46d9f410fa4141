/// Commands change the desired state; reconciling makes the slots match it.
extension SupervisorModel {
    // MARK: Commands

    /// Reconciles: the first step, and whenever the owner changed nothing else.
    mutating func reconcile(at now: Instant) -> [SupervisorAction] { finish(at: now) }

    /// Sets the number of workers (0...4096). Scaling down drains the oldest.
    mutating func scale(to count: Int, at now: Instant) -> [SupervisorAction] {
        let count = max(0, min(count, 4096))
        if phase == .running, count != desired {
            emit(.log(.notice, "scaling from \(desired) to \(count) workers"))
            desired = count
        }
        return finish(at: now)
    }

    /// Sets the number of workers as an autoscale decision says.
    mutating func autoscale(to decision: AutoscaleDecision, at now: Instant) -> [SupervisorAction] {
        if phase == .running {
            emit(.log(.notice, "autoscale: \(desired) → \(decision.workers) workers: \(decision.reason)"))
            desired = max(0, decision.workers)
        }
        return finish(at: now)
    }

    /// Starts a rolling reload, or queues one behind the reload under way.
    mutating func reload(at now: Instant) -> [SupervisorAction] {
        startReload(at: now)
        return finish(at: now)
    }

    /// Stops the cluster: drains every worker, or kills them at once. Asked again to stop
    /// at once, kills those still draining.
    mutating func stop(immediately: Bool, at now: Instant) -> [SupervisorAction] {
        beginStop(.stopped, immediately: immediately)
        return finish(at: now)
    }

    // MARK: Reconciling

    mutating func reconcileSlots(at now: Instant) {
        guard phase == .running else { return }
        trimSurplus()
        for index in slots.keys.sorted() { fill(index, at: now) }
        while slots.count < desired {
            let draining = Set(retiring.values.map(\.slot))
            let index = (0...).first { slots[$0] == nil && !draining.contains($0) }!
            slots[index] = Slot()
            launch(in: index, generation: generation)
        }
        advanceReload(at: now)
        let keeping = Set(slots.keys)
        if keeping != released {
            released = keeping
            emit(.releaseSlots(keeping: keeping))
        }
    }

    /// More slots than desired: drop restarts not yet due (the latest first), then empty
    /// slots, then drain the oldest workers (a worker's successor with it).
    private mutating func trimSurplus() {
        let surplus = slots.count - desired
        guard surplus > 0 else { return }
        let waiting = slots.filter { $0.value.holder == nil && $0.value.restartAt != nil }
            .sorted { ($0.value.restartAt!, $0.key) > ($1.value.restartAt!, $1.key) }.map(\.key)
        let empty = slots.filter { !$0.value.isTaken }.keys.sorted()
        let held = slots.filter { $0.value.holder != nil }.sorted { $0.value.holder!.id < $1.value.holder!.id }.map(\.key)
        let spawning = slots.filter { $0.value.holder == nil && $0.value.launching != nil }.keys.sorted(by: >)
        for index in (waiting + empty + held + spawning).prefix(surplus) {
            guard let slot = slots.removeValue(forKey: index) else { continue }
            if let holder = slot.holder {
                emit(.log(.info, "scaling down: retiring \(holder)", holder.metadata))
                retire(holder)
            }
            if let successor = slot.successor { retire(successor) }
        }
    }

    /// Starts a worker in slot `index` if it has none: its restart is due, or it was left
    /// empty (its worker hung, or was killed with a failed reload).
    private mutating func fill(_ index: Int, at now: Instant) {
        guard let slot = slots[index], slot.holder == nil, slot.launching == nil else { return }
        if let due = slot.restartAt {
            guard due <= now else { return }
            slots[index]?.restartAt = nil
        }
        launch(in: index, generation: generation)
    }

    /// Asks for a worker in slot `index`: its holder, or its holder's successor.
    mutating func launch(in index: Int, generation: Int, successor: Bool = false, reloading: Bool = false) {
        slots[index]?.launching = Launch(generation: generation, successor: successor, reloading: reloading)
        emit(.spawn(slot: index, generation: generation))
    }

    // MARK: Reload

    private mutating func startReload(at now: Instant) {
        guard phase == .running else { return }
        guard rollout == nil else {
            reloadQueued = true
            emit(.log(.notice, "reload requested during a reload: it runs when this one ends"))
            return
        }
        rollout = Rollout(generation: generation + 1)
        lastReload = .inProgress(generation: generation + 1)
        let waiting = slots.filter { $0.value.restartAt != nil }.keys.sorted()
        if ledger.episode != nil, !waiting.isEmpty {
            // An operator who reloads after fixing a deploy should not wait out the backoff.
            emit(.log(.notice, "reload during a crash loop: \(waiting.count == 1 ? "slot" : "slots") \(waiting.map(String.init).joined(separator: ", ")) start now, not after the backoff"))
            for index in waiting { slots[index]?.restartAt = now }
        }
        let workers = slots.values.filter { $0.holder != nil }.count
        emit(.log(.notice, "reloading: replacing \(workers) workers with generation \(generation + 1), \(supervision.reload.maxSurge) at a time"))
    }

    /// Starts successors for the oldest workers of an older generation, `maxSurge` at a
    /// time; completes the reload when every slot's worker is of the new generation and ready.
    private mutating func advanceReload(at now: Instant) {
        guard let current = rollout, phase == .running else { return }
        var inFlight = slots.values.filter { $0.isBeingReplaced || $0.holder?.reloading == true }.count
        // Workers of an older generation started meanwhile (restarts of slots whose worker
        // died during the rollout) are replaced too.
        let stale = slots.filter { index, slot in
            guard let holder = slot.holder, !slot.isBeingReplaced else { return false }
            return holder.generation < current.generation
        }.sorted { $0.value.holder!.id < $1.value.holder!.id }.map(\.key)
        for index in stale where inFlight < supervision.reload.maxSurge {
            launch(in: index, generation: current.generation, successor: true, reloading: true)
            inFlight += 1
        }
        let restarting = slots.values.contains { $0.launching.map { !$0.successor && $0.generation < current.generation } ?? false }
        guard inFlight == 0, stale.isEmpty, !restarting else { return }
        generation = current.generation
        rollout = nil
        lastReload = .completed(generation: generation)
        emit(.log(.notice, "reload complete: every worker is generation \(generation)"))
        if reloadQueued {
            reloadQueued = false
            startReload(at: now)
            advanceReload(at: now)
        }
    }

    /// A replacement of the reload failed (`what` says how): the rollout stops there, like a
    /// failed deploy, rather than replace more healthy workers with a broken generation.
    /// Its other replacements not yet ready are killed; the workers not replaced keep
    /// serving, and the generation does not advance.
    mutating func failReload(_ what: String) {
        guard let current = rollout else { return }
        rollout = nil
        reloadQueued = false
        var killed: [Member] = []
        for index in slots.keys.sorted() {
            guard var slot = slots[index] else { continue }
            if slot.launching?.reloading == true { slot.launching = nil }
            if let successor = slot.successor, successor.reloading {
                killed.append(successor)
                slot.successor = nil
            }
            if let holder = slot.holder, holder.reloading {
                killed.append(holder)
                slot.handOver()
            }
            slots[index] = slot
        }
        for member in killed.sorted(by: { $0.id < $1.id }) {
            var member = member
            member.reloading = false
            retiring[member.id] = member
            emit(.kill(worker: member.id))
        }
        let previous = current.generation - 1
        var outcome = serving.isEmpty ? "no worker is ready; generation \(previous) is started again" : "generation \(previous) keeps serving"
        if current.replaced > 0 {
            outcome += " (with the \(current.replaced) \(current.replaced == 1 ? "worker" : "workers") of generation \(current.generation) already ready)"
        }
        let reason = "\(what); \(outcome)"
        lastReload = .failed(generation: current.generation, reason: reason)
        emit(.log(.error, "reload failed: \(reason)"))
    }

    // MARK: Stopping

    mutating func beginStop(_ outcome: Supervisor.Outcome, immediately: Bool) {
        switch phase {
        case .stopping:
            guard immediately else { return }
        case .running:
            phase = .stopping(outcome)
        }
        if let current = rollout {
            lastReload = .failed(generation: current.generation, reason: "the cluster stopped before every worker of generation \(current.generation) was ready")
        }
        rollout = nil
        reloadQueued = false
        emit(.stopAccepting)
        // Restarts waiting and spawns under way are dropped with the slots (a spawn that
        // still completes is killed).
        let running = slots.values.flatMap { [$0.holder, $0.successor].compactMap(\.self) }.sorted { $0.id < $1.id }
        slots.removeAll()
        guard immediately else {
            running.forEach { retire($0) }
            return
        }
        for member in running { retiring[member.id] = member }
        for id in retiring.keys.sorted() {
            retiring[id]?.reloading = false
            emit(.kill(worker: id))
        }
    }
}
