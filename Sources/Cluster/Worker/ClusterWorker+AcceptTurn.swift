import Synchronization

/// This worker's turns to accept on reusePort slot sockets (`AcceptTurns` in the primary),
/// by listener id. Several acceptors of one listener in this worker share one turn.
struct WorkerTurns: Sendable {
    struct Turn {
        var granted = false
        /// Acceptors using the turn (holding it or waiting for it).
        var users = 0
        var waiters: [@Sendable (_ granted: Bool) -> Void] = []
    }
    var byListener: [Int: Turn] = [:]
}

extension ClusterWorker {
    /// Returns when this worker may accept on `listener`'s socket: at once for a shared
    /// socket or one the primary accepts on; for a `reusePort` slot socket, when no other
    /// worker of this slot accepts on it (during a reload or recycle, once the worker this
    /// one replaces has stopped). Returns false when the worker began to drain first.
    ///
    /// A server that accepts on ``Listener/duplicateDescriptor()`` itself (SwiftNIO's
    /// `ServerBootstrap`, say) reports listening (``reportListening(_:)``: the worker then
    /// counts as ready and connections queue for it), waits here, starts accepting, and
    /// calls ``stoppedAccepting(on:)`` once it has stopped. The adapters do all of it.
    public func acceptTurn(on listener: Listener) async -> Bool {
        guard listener.distribution == .reusePort else { return !isDraining }
        return await withCheckedContinuation { continuation in
            requestAcceptTurn(on: listener) { continuation.resume(returning: $0) }
        }
    }

    /// Tells the primary this worker has stopped accepting on `listener`'s socket (its last
    /// server on it closed, or it gives up waiting for its turn): the slot's next worker
    /// may accept. Call once for each ``acceptTurn(on:)``.
    public func stoppedAccepting(on listener: Listener) {
        guard listener.distribution == .reusePort else { return }
        let last = turns.withLock { turns -> Bool in
            guard var turn = turns.byListener[listener.id] else { return false }
            turn.users -= 1
            turns.byListener[listener.id] = turn.users > 0 ? turn : nil
            return turn.users <= 0
        }
        if last { try? channel.sendNow(Control.stopAccepting(listener: listener.id).frame, force: true) }
    }

    /// ``acceptTurn(on:)`` for the I/O thread: `granted` is called once, with true when the
    /// turn comes or false when the worker drains first.
    func requestAcceptTurn(on listener: Listener, granted: @escaping @Sendable (Bool) -> Void) {
        enum Next { case now(Bool), wait, ask }
        let next = turns.withLock { turns -> Next in
            var turn = turns.byListener[listener.id, default: WorkerTurns.Turn()]
            defer { turns.byListener[listener.id] = turn }
            turn.users += 1
            if turn.granted { return .now(true) }
            if isDraining { return .now(false) }
            turn.waiters.append(granted)
            return turn.users == 1 ? .ask : .wait
        }
        switch next {
        case .now(let value): granted(value)
        case .wait: break
        case .ask: try? channel.sendNow(Control.accepting(listener: listener.id).frame, force: true)
        }
    }

    /// The primary gave this worker its turn on listener `id`. I/O thread.
    func acceptTurnGranted(listener id: Int) {
        let waiters = turns.withLock { turns -> [@Sendable (Bool) -> Void]? in
            guard var turn = turns.byListener[id] else { return nil }
            defer { turns.byListener[id] = turn }
            turn.granted = true
            defer { turn.waiters = [] }
            return turn.waiters
        }
        guard let waiters else {
            // Nobody here wants it any more (it stopped while the grant was on its way).
            try? channel.sendNow(Control.stopAccepting(listener: id).frame, force: true)
            return
        }
        waiters.forEach { $0(true) }
    }

    /// The worker drains: whoever still waits for a turn stops waiting.
    func cancelAcceptTurnWaits() {
        let waiters = turns.withLock { turns -> [@Sendable (Bool) -> Void] in
            var all: [@Sendable (Bool) -> Void] = []
            for (id, turn) in turns.byListener where !turn.waiters.isEmpty {
                all += turn.waiters
                turns.byListener[id]?.waiters = []
            }
            return all
        }
        waiters.forEach { $0(false) }
    }
}
