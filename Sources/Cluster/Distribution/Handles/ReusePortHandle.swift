import Synchronization

/// `reusePort`: one `SO_REUSEPORT` socket per slot, bound on a slot's first worker and
/// kept across that slot's restarts, so the queue survives its worker. A slot's workers
/// take turns on its socket (`AcceptTurns`, kept by the primary): `accepting` asks for the
/// turn, `stopAccepting` and exit give it up.
final class ReusePortHandle: ListenerHandle {
    let id: Int
    let bound: ListenAddress
    let distribution = Distribution.reusePort
    /// By slot. Never empty: the last socket stays while the listener lives.
    private let slots: Mutex<[Int: Int32]>

    /// Takes `fd` as slot 0's socket.
    init(id: Int, fd: Int32, bound: ListenAddress) {
        self.id = id
        self.bound = bound
        slots = Mutex([0: fd])
    }

    /// A socket a previous primary handed over for `slot`.
    func adopt(_ fd: Int32, slot: Int) {
        let replaced = slots.withLock { slots in
            defer { slots[slot] = fd }
            return slots[slot]
        }
        if let replaced, replaced != fd { Syscall.close(replaced) }
    }

    func socket(forSlot slot: Int) throws(ClusterError) -> Int32? {
        if let existing = slots.withLock({ $0[slot] }) { return existing }
        let (fd, _) = try Socket.listen(bound, reusePort: true)
        slots.withLock { $0[slot] = fd }
        return fd
    }

    func add(_ worker: Worker, descriptors: [Int32], primary: Primary) throws(ClusterError) -> Bool {
        guard descriptors.isEmpty else {
            descriptors.forEach(Syscall.close)
            throw ClusterError(.malformedFrame, "it asked for its turn on listener \(id) with \(descriptors.count) descriptors attached, which carries none")
        }
        primary.requestTurn(for: worker, listener: id)
        return false // it reported listening already
    }

    func remove(_ worker: Worker, primary: Primary) {
        primary.releaseTurn(of: worker, listener: id)
    }

    /// A worker whose channel closed may still accept until it exits: its turn ends then.
    func disconnected(_ worker: Worker, primary: Primary) {}

    func restoreBacklog(slot: Int) {
        guard let fd = slots.withLock({ $0[slot] }) else { return }
        try? Syscall.listen(fd, backlog: Socket.backlog)
    }

    func close() {
        slots.withLock { $0.values }.forEach(Syscall.close)
    }

    /// The kernel would go on giving a slot's socket its share of connections with nobody
    /// to accept them: connections already queued on it are reset. A later worker in that
    /// slot gets a new socket.
    func releaseSlots(keeping kept: Set<Int>) {
        let closed = slots.withLock { slots -> [Int32] in
            var closed: [Int32] = []
            for (slot, fd) in slots.sorted(by: { $0.key < $1.key }) where !kept.contains(slot) && slots.count > 1 {
                closed.append(fd)
                slots.removeValue(forKey: slot)
            }
            return closed
        }
        closed.forEach(Syscall.close)
    }

    /// The lowest slot's socket stands for the listener (slot -1); the others follow.
    var sockets: [(slot: Int, fd: Int32)] {
        let sorted = slots.withLock { $0.sorted { $0.key < $1.key } }
        guard let first = sorted.first else { return [] }
        return [(-1, first.value)] + sorted.dropFirst().map { ($0.key, $0.value) }
    }
}
