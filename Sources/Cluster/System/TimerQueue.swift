/// Deadlines in a min-heap, cancelled lazily: cancelling forgets the id, and the entry is
/// dropped when it reaches the top or when dead entries outnumber live ones. Pure: the
/// owner supplies the time. Cancelling must be cheap because every request arms a
/// timeout that its reply almost always cancels.
struct TimerQueue<Action> {
    private struct Entry {
        var deadline: UInt64
        var id: UInt64
        var action: Action
    }

    private var heap: [Entry] = []
    private var live: Set<UInt64> = []
    private var nextID: UInt64 = 1

    /// Live timers.
    var count: Int { live.count }

    /// The earliest deadline among live timers, in the owner's nanoseconds.
    mutating func soonest() -> UInt64? {
        dropDeadTop()
        return heap.first?.deadline
    }

    /// Adds a timer; returns its id.
    mutating func insert(deadline: UInt64, _ action: Action) -> UInt64 {
        let id = nextID
        nextID += 1
        live.insert(id)
        heap.append(Entry(deadline: deadline, id: id, action: action))
        siftUp(heap.count - 1)
        return id
    }

    /// Forgets timer `id`; a no-op when it has fired or was cancelled.
    mutating func cancel(_ id: UInt64) {
        guard live.remove(id) != nil else { return }
        if heap.count > 64 && heap.count > 2 * live.count { compact() }
    }

    /// Removes and returns the actions of live timers due at `now`, soonest first.
    mutating func popExpired(now: UInt64) -> [Action] {
        var due: [Action] = []
        while let top = heap.first, top.deadline <= now {
            let entry = removeTop()
            if live.remove(entry.id) != nil { due.append(entry.action) }
        }
        return due
    }

    private mutating func dropDeadTop() {
        while let top = heap.first, !live.contains(top.id) { _ = removeTop() }
    }

    private mutating func compact() {
        heap.removeAll { !live.contains($0.id) }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    private mutating func removeTop() -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return top
    }

    private mutating func siftUp(_ index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
