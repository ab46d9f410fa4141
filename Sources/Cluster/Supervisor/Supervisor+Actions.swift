import Logging

/// The actor performs what its model decides: the only place where the supervisor's
/// decisions touch processes.
extension Supervisor {
    /// Performs `actions` in order, and those the model returns for the spawns among them.
    func perform(_ actions: [SupervisorAction]) async {
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case .spawn(let slot, _):
                // An earlier action's outcome may have called it off (the cluster stops).
                guard model.slots[slot]?.launching != nil else { continue }
                queue.append(contentsOf: await spawn(slot: slot))
            case .retire(let id):
                workers[id]?.disconnect(timeout: supervision.drainTimeout)
            case .kill(let id):
                workers[id]?.kill(.kill)
            case .signal(let id, let signal):
                workers[id]?.signal(signal)
            case .rebalance(let ids, let fraction):
                ids.forEach { workers[$0]?.rebalance(fraction: fraction) }
            case .restartScheduled:
                metrics.countRestart()
            case .releaseSlots(let slots):
                primary.releaseSlots(keeping: slots)
            case .stopAccepting:
                endUpgrade()
                // Connections not yet accepted stay queued (for a new primary after a hot upgrade).
                primary.stopAccepting()
            case .log(let level, let message, let metadata):
                logger.log(level: level, "\(message)", metadata: metadata.isEmpty ? nil : metadata)
            }
        }
        let reason = model.degradation
        degradedReason.withLock { $0 = reason }
    }

    /// Starts a worker in `slot` and tells the model how it went.
    private func spawn(slot: Int) async -> [SupervisorAction] {
        do {
            let worker = try await primary.fork(slot: slot)
            workers[worker.id] = worker
            let recycling = supervision.recycling
            let limit = recycling.maxRequests.map { $0 + Int.random(in: 0...recycling.jitter) }
            return model.spawned(slot: slot, worker: worker.id, pid: worker.pid, requestLimit: limit, at: clock.now)
        } catch {
            return model.spawnFailed(slot: slot, error: "\(error)", at: clock.now)
        }
    }
}
