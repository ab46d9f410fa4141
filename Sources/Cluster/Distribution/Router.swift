/// Chooses the worker for each connection the primary accepts. Pure: no I/O, no clock;
/// the dispatcher feeds it workers, connections and their ends.
struct Router {
    private let kind: Distribution.Kind
    /// Workers that accept handoffs, by id, with their slot and open connections.
    private var workers: [Int: (slot: Int, open: Int)] = [:]
    private var order: [Int] = []
    private var next = 0

    init(_ distribution: Distribution) {
        precondition(distribution.primaryAccepts, "\(distribution) does not route in the primary")
        kind = distribution.kind
    }

    var workerIDs: [Int] { order }

    mutating func add(worker: Int, slot: Int) {
        guard workers[worker] == nil else { return }
        workers[worker] = (slot, 0)
        order.append(worker)
        order.sort()
    }

    mutating func remove(worker: Int) {
        guard workers.removeValue(forKey: worker) != nil else { return }
        order.removeAll { $0 == worker }
    }

    /// A connection to `worker` opened (its handoff was acknowledged). Counted for
    /// leastConnections only: the other strategies' workers report no closes.
    mutating func opened(on worker: Int) {
        if kind == .leastConnections { workers[worker]?.open += 1 }
    }

    /// `count` connections on `worker` closed.
    mutating func closed(on worker: Int, count: Int = 1) {
        if let open = workers[worker]?.open { workers[worker]?.open = max(0, open - count) }
    }

    /// The worker for a connection from `key` (the client's address), skipping `excluded`
    /// (workers that declined it); nil when no worker can take it.
    mutating func route(key: [UInt8], excluding excluded: Set<Int> = []) -> Int? {
        let candidates = order.filter { !excluded.contains($0) }
        guard !candidates.isEmpty else { return nil }
        switch kind {
        case .roundRobin:
            return nextInTurn(candidates)
        case .leastConnections:
            let fewest = candidates.map { workers[$0]!.open }.min()!
            return nextInTurn(candidates.filter { workers[$0]!.open == fewest })
        case .sticky:
            // Rendezvous hashing over slots: a client keeps its slot while the slot has a
            // worker, and when a worker leaves only its own clients move.
            return candidates.max { Router.score(key, slot: workers[$0]!.slot) < Router.score(key, slot: workers[$1]!.slot) }
        case .shared, .reusePort:
            return nil
        }
    }

    private mutating func nextInTurn(_ candidates: [Int]) -> Int {
        // The first candidate at or after the turn, by id, so turns survive joins and leaves.
        let chosen = candidates.first { $0 >= next } ?? candidates[0]
        next = chosen + 1
        return chosen
    }

    /// FNV-1a over the key and the slot, then a 64-bit finalizer to spread it.
    static func score(_ key: [UInt8], slot: Int) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        hash ^= UInt64(truncatingIfNeeded: slot) &* 0x9E37_79B9_7F4A_7C15
        hash ^= hash >> 33
        hash &*= 0xFF51_AFD7_ED55_8CCD
        hash ^= hash >> 33
        hash &*= 0xC4CE_B9FE_1A85_EC53
        hash ^= hash >> 33
        return hash
    }
}
