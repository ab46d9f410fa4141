import Synchronization

/// A bounded single-consumer queue between the I/O thread and one async consumer.
///
/// The producer never waits: `post` reports whether the mailbox is full so the producer can
/// stop reading from its socket (back-pressure reaches the sender through the kernel's
/// socket buffer). When the consumer has taken the queue below half its limit, `onRelief`
/// runs so reading resumes. Nothing is ever dropped.
final class Mailbox<Element: Sendable>: Sendable {
    fileprivate struct State {
        var items: [Element] = []
        var head = 0
        var waiter: UnsafeContinuation<Element?, Never>?
        var finished = false
        var full = false
        var count: Int { items.count - head }
    }

    let limit: Int
    private let state = Mutex(State())
    private let onRelief: @Sendable () -> Void

    init(limit: Int, onRelief: @escaping @Sendable () -> Void = {}) {
        self.limit = limit
        self.onRelief = onRelief
    }

    /// Queues `element` or hands it to a waiting consumer. Returns false when the mailbox is
    /// now full and the producer should pause.
    @discardableResult
    func post(_ element: consuming Element) -> Bool {
        // Moved, not copied, into the queue: a message carries several references and
        // each copy would retain and later release every one of them.
        var element: Element? = consume element
        let (waiter, hasRoom) = state.withLock { state -> (UnsafeContinuation<Element?, Never>?, Bool) in
            if state.finished { return (nil, true) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, true)
            }
            state.items.append(element.take()!)
            if state.count >= limit { state.full = true }
            return (nil, !state.full)
        }
        waiter?.resume(returning: element.take())
        return hasRoom
    }

    /// Ends the sequence after what is queued.
    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    var isFull: Bool { state.withLock { $0.full } }

    /// The next element, or nil once finished and empty or when the task is cancelled.
    func next() async -> Element? {
        if let (element, relieved) = take() {
            if relieved { onRelief() }
            return element
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let ready: (Element?, Bool)? = state.withLock { state in
                    if let taken = state.takeFirst(limit: limit) { return (taken.0, taken.1) }
                    if state.finished || Task.isCancelled { return (nil, false) }
                    state.waiter = continuation
                    return nil
                }
                if let (element, relieved) = ready {
                    continuation.resume(returning: element)
                    if relieved { onRelief() }
                }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Everything queued, at least one element, waiting for one if none is; empty once
    /// finished (or when the task is cancelled). A consumer that takes batches pays for
    /// the lock once per batch rather than once per element.
    func nextBatch() async -> [Element] {
        let (batch, relieved) = state.withLock { $0.takeAll(limit: limit) }
        if relieved { onRelief() }
        if !batch.isEmpty { return batch }
        guard let first = await next() else { return [] }
        let (rest, relievedLater) = state.withLock { $0.takeAll(limit: limit) }
        if relievedLater { onRelief() }
        return [first] + rest
    }

    /// The next element if one is queued now, without waiting.
    func tryNext() -> Element? {
        guard let (element, relieved) = take() else { return nil }
        if relieved { onRelief() }
        return element
    }

    private func take() -> (Element, Bool)? {
        state.withLock { $0.takeFirst(limit: limit) }
    }
}

extension Mailbox.State {
    /// Every queued element and whether taking them relieved a full mailbox.
    fileprivate mutating func takeAll(limit: Int) -> ([Element], Bool) {
        guard head < items.count else { return ([], false) }
        var taken: [Element] = []
        if head == 0 {
            swap(&taken, &items) // moves the elements: no copy, no reference counting
        } else {
            taken = Array(items[head...])
            items.removeAll(keepingCapacity: true)
        }
        head = 0
        defer { full = false }
        return (taken, full)
    }

    /// The first element and whether taking it relieved a full mailbox.
    fileprivate mutating func takeFirst(limit: Int) -> (Element, Bool)? {
        guard head < items.count else { return nil }
        let element = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= items.count {
            items.removeSubrange(0..<head)
            head = 0
        }
        if full && count <= limit / 2 {
            full = false
            return (element, true)
        }
        return (element, false)
    }
}

/// An iterator's local share of a mailbox: refilled with everything queued at once,
/// kept in reverse so each element is moved out (`popLast`) rather than copied.
struct Batch<Element: Sendable> {
    private var reversed: [Element] = []

    mutating func next(from mailbox: Mailbox<Element>) async -> Element? {
        if reversed.isEmpty {
            reversed = await mailbox.nextBatch()
            reversed.reverse()
        }
        return reversed.popLast()
    }
}
