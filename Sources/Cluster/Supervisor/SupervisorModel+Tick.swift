/// What time alone decides: boot and ready timeouts, the watchdog
/// and recycling.
extension SupervisorModel {
    /// The periodic check at `now`, reading each worker's `gauges` (a worker without any is
    /// not checked by the watchdog or recycling).
    mutating func tick<Gauges: WorkerGauges>(at now: Instant, gauges: [Int: Gauges]) -> [SupervisorAction] {
        for id in members.map(\.id) {
            checkReadiness(id, at: now)
            if let reading = gauges[id] { checkWatchdog(id, reading, at: now) }
        }
        if supervision.recycling.isEnabled, phase == .running,
           lastRecyclingSample.map({ $0.duration(to: now) >= .seconds(1) }) ?? true {
            lastRecyclingSample = now
            for member in serving {
                if let reading = gauges[member.id] { checkRecycling(member, reading, at: now) }
            }
        }
        return finish(at: now)
    }

    /// The watchdog found `worker` hung (`why` says how): it stops taking connections, gets
    /// SIGABRT (SIGKILL `killAfter` later, at a tick), and its slot starts a new worker now
    /// rather than after it died.
    mutating func hung(worker id: Int, why: String, at now: Instant) -> [SupervisorAction] {
        abortHung(id, why: why, at: now)
        return finish(at: now)
    }

    /// Replaces `worker` through the reload path (`reason` says why): its successor starts
    /// now in its slot, and it retires when the successor is ready.
    mutating func recycle(worker id: Int, reason: String, at now: Instant) -> [SupervisorAction] {
        startRecycling(id, reason: reason)
        return finish(at: now)
    }

    // MARK: Checks

    private mutating func checkReadiness(_ id: Int, at now: Instant) {
        guard let place = place(of: id), place != .retiring, var member = member(id), member.readyAt == nil, !member.killed else { return }
        let replacing = if case .successor = place { true } else { false }
        let limit = replacing || member.reloading ? supervision.reload.readyTimeout : supervision.bootTimeout
        guard member.startedAt.duration(to: now) > limit else { return }
        if member.reloading {
            failReload("\(describe(member)) was not ready within \(Ledger.seconds(limit))")
            return
        }
        emit(.log(.error, "\(member) was not ready within \(Ledger.seconds(limit)); killing it", member.metadata))
        member.killed = true
        update(member, at: place)
        emit(.signal(worker: id, .kill))
    }

    private mutating func checkWatchdog(_ id: Int, _ reading: some WorkerGauges, at now: Instant) {
        guard let watchdog = supervision.watchdog, let place = place(of: id), var member = member(id),
              let readyAt = member.readyAt else { return }
        if let abortedAt = member.abortedAt {
            if abortedAt.duration(to: now) >= watchdog.killAfter, !member.killed {
                member.killed = true
                update(member, at: place)
                emit(.signal(worker: id, .kill))
            }
            return
        }
        // A worker whose channel has closed (it drains its last connections) sends no more
        // heartbeats; its drain deadline bounds it.
        guard reading.isConnected else { return }
        let silence = reading.sinceLastHeartbeat ?? readyAt.duration(to: now)
        let lag = reading.eventLoopLag
        guard silence > watchdog.timeout || lag > watchdog.timeout else { return }
        let why = lag > watchdog.timeout ? "its event loop has been blocked for \(lag)" : "it has not sent a heartbeat for \(silence)"
        abortHung(id, why: why, at: now)
    }

    private mutating func abortHung(_ id: Int, why: String, at now: Instant) {
        guard let watchdog = supervision.watchdog, let place = place(of: id), var member = member(id),
              member.readyAt != nil, member.abortedAt == nil else { return }
        emit(.log(.error, "\(member) is hung: \(why) (watchdog timeout \(Ledger.seconds(watchdog.timeout))); replacing it: SIGABRT, then SIGKILL after \(Ledger.seconds(watchdog.killAfter))", member.metadata))
        member.abortedAt = now
        switch place {
        case .holder(let index):
            // Its runtime thread still works: stop it taking connections it cannot serve.
            // Its successor, if one is starting, takes the slot; else a new worker does.
            slots[index]?.handOver()
            retire(member)
        case .successor, .retiring:
            update(member, at: place)
        }
        emit(.signal(worker: id, .abort))
    }

    private mutating func checkRecycling(_ member: Member, _ reading: some WorkerGauges, at now: Instant) {
        let recycling = supervision.recycling
        var reason: String?
        if let limit = member.requestLimit, reading.requestsServed >= limit {
            reason = "it served \(reading.requestsServed) requests (limit \(limit))"
        } else if let maxRSS = recycling.maxRSS, case let rss = reading.memoryInUse, rss > maxRSS {
            reason = "its resident memory is \(rss / 1_048_576) MiB (limit \(maxRSS / 1_048_576) MiB)"
        } else if let maxAge = recycling.maxAge, member.startedAt.duration(to: now) > maxAge {
            reason = "it is older than \(Ledger.seconds(maxAge))"
        }
        if let reason { startRecycling(member.id, reason: reason) }
    }

    private mutating func startRecycling(_ id: Int, reason: String) {
        guard phase == .running, case .holder(let index) = place(of: id), let slot = slots[index], let member = slot.holder,
              member.readyAt != nil, member.abortedAt == nil, !slot.isBeingReplaced else { return }
        emit(.log(.notice, "recycling \(member): \(reason); its replacement starts first", member.metadata))
        launch(in: index, generation: member.generation, successor: true)
    }
}
