/// Who accepts on each `reusePort` slot socket: one worker at a time.
///
/// A slot's socket outlives its workers (its queue waits for the next one), so during a
/// reload, a recycle or a hot upgrade the slot's old worker and its replacement both hold
/// it. If both waited on it, the kernel would wake both for each connection and one would
/// find nothing: harmless for the runtime's accept, but SwiftNIO asserts on such a wake-up
/// in debug builds. Here the slot's workers take turns: a worker that wants to accept asks
/// for the turn once it is listening (it counts as ready, and connections queue on the
/// socket for it), and gets it when nobody else has it; the holder gives it up when it
/// stops accepting or exits, and the next one in line gets it.
///
/// A listener a hot upgrade inherited is held by the old primary's workers until that
/// primary says they have all stopped (``predecessorReleased()``).
///
/// A pure value: events in, the workers to tell out. The primary keeps one.
struct AcceptTurns: Sendable, Equatable {
    /// One slot socket: a reusePort listener and a slot.
    struct Socket: Hashable, Sendable, Comparable {
        let listener: Int
        let slot: Int

        static func < (a: Socket, b: Socket) -> Bool { (a.listener, a.slot) < (b.listener, b.slot) }
    }

    /// A worker to tell that it may accept on a listener's socket now.
    struct Grant: Equatable, Sendable {
        let worker: Int
        let listener: Int
    }

    /// Why a request was refused: the worker broke the protocol.
    enum Refusal: Error, Equatable {
        case alreadyAsked
    }

    private struct Turn: Equatable {
        var holder: Int?
        var waiting: [Int] = []
    }

    private var turns: [Socket: Turn] = [:]
    /// Listeners whose sockets the previous primary's workers may still accept on.
    private var inherited: Set<Int> = []

    /// Marks `listener` as inherited from a previous primary: no turn is given on its
    /// sockets until ``predecessorReleased()``.
    mutating func inherit(listener: Int) {
        inherited.insert(listener)
    }

    /// `worker` asks to accept on `socket`: granted now when nobody holds it, else later.
    mutating func request(_ worker: Int, on socket: Socket) throws(Refusal) -> Grant? {
        var turn = turns[socket, default: Turn()]
        guard turn.holder != worker, !turn.waiting.contains(worker) else { throw .alreadyAsked }
        defer { turns[socket] = turn }
        guard turn.holder == nil, turn.waiting.isEmpty, !inherited.contains(socket.listener) else {
            turn.waiting.append(worker)
            return nil
        }
        turn.holder = worker
        return Grant(worker: worker, listener: socket.listener)
    }

    /// `worker` stopped accepting on `socket` (or never will): the next in line gets it.
    mutating func release(_ worker: Int, on socket: Socket) -> Grant? {
        guard var turn = turns[socket] else { return nil }
        turn.waiting.removeAll { $0 == worker }
        var grant: Grant?
        if turn.holder == worker {
            turn.holder = nil
            grant = passOn(&turn, socket)
        }
        turns[socket] = turn.holder == nil && turn.waiting.isEmpty ? nil : turn
        return grant
    }

    /// `worker` exited: every turn it held or waited for goes on.
    mutating func releaseAll(_ worker: Int) -> [Grant] {
        turns.keys.sorted().compactMap { release(worker, on: $0) }
    }

    /// The previous primary's workers have all stopped accepting: the first in line on
    /// each inherited socket gets its turn.
    mutating func predecessorReleased() -> [Grant] {
        inherited.removeAll()
        var grants: [Grant] = []
        for socket in turns.keys.sorted() {
            guard var turn = turns[socket], turn.holder == nil else { continue }
            if let grant = passOn(&turn, socket) { grants.append(grant) }
            turns[socket] = turn
        }
        return grants
    }

    /// Whether no worker holds or waits for a turn on any socket.
    var isIdle: Bool { turns.isEmpty }

    /// The worker holding `socket`'s turn, if any.
    func holder(of socket: Socket) -> Int? { turns[socket]?.holder }

    private func passOn(_ turn: inout Turn, _ socket: Socket) -> Grant? {
        guard !inherited.contains(socket.listener), !turn.waiting.isEmpty else { return nil }
        let next = turn.waiting.removeFirst()
        turn.holder = next
        return Grant(worker: next, listener: socket.listener)
    }
}
