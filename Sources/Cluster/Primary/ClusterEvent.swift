import Synchronization

/// Something that happened to a worker, in Node's vocabulary.
public enum ClusterEvent: Sendable {
    /// The primary started the worker (Node's 'fork').
    case fork(Worker)
    /// The worker's runtime is up (Node's 'online').
    case online(Worker)
    /// The worker accepts on `address` (Node's 'listening').
    case listening(Worker, ListenAddress)
    /// The worker said it is ready for traffic (``ClusterWorker/ready()``).
    case ready(Worker)
    /// The worker sent a message (Node's 'message').
    case message(Worker, ClusterMessage)
    /// The worker's channel closed (Node's 'disconnect').
    case disconnect(Worker)
    /// The worker exited (Node's 'exit'): its code, or the signal that ended it.
    case exit(Worker, ExitStatus)

    /// The worker the event is about.
    public var worker: Worker {
        switch self {
        case .fork(let worker), .online(let worker), .listening(let worker, _), .ready(let worker), .message(let worker, _),
             .disconnect(let worker), .exit(let worker, _):
            worker
        }
    }
}

/// The events of a primary as an async sequence. Each access to ``Primary/events`` is a new
/// subscription. It first sees the lifecycle so far of every live worker (`fork`, `online`,
/// `listening`, `ready`, `disconnect`, in the order they happened, at most
/// ``replayedPerWorker`` per worker; not messages, and nothing of a worker that has
/// exited), then every event from then on. So `let worker = try await primary.fork()`
/// followed by `for await event in primary.events` sees that worker's `fork`, as Node's
/// handlers added right after `cluster.fork()` do. Messages that arrive while no one is
/// subscribed wait for the first subscriber. A subscriber that falls behind by more than
/// ``limit`` messages pauses reading from the workers that send them (nothing is dropped).
public struct ClusterEvents: AsyncSequence, Sendable {
    public typealias Element = ClusterEvent
    /// Messages a subscriber may have unread before reading from workers pauses.
    public static let limit = 4096
    /// The most lifecycle events of one live worker a new subscriber is shown first (a
    /// worker listening on many listeners reports `listening` for each; the ones past this
    /// are delivered only to those subscribed then).
    public static let replayedPerWorker = 16

    final class Subscription: Sendable {
        let id: UInt64
        let mailbox: Mailbox<ClusterEvent>
        let hub: EventHub
        init(id: UInt64, mailbox: Mailbox<ClusterEvent>, hub: EventHub) {
            self.id = id
            self.mailbox = mailbox
            self.hub = hub
        }
        deinit { hub.unsubscribe(id) }
    }

    let subscription: Subscription

    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: Subscription
        var batch = Batch<ClusterEvent>()
        public mutating func next() async -> ClusterEvent? { await batch.next(from: subscription.mailbox) }
        public mutating func next(isolation actor: isolated (any Actor)?) async -> ClusterEvent? {
            await batch.next(from: subscription.mailbox)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: subscription) }
}

/// Fans events out to every subscriber, and keeps each live worker's lifecycle events (a
/// handful each, dropped at its exit) to show a new subscriber first.
final class EventHub: Sendable {
    private struct State {
        var subscribers: [UInt64: Mailbox<ClusterEvent>] = [:] {
            didSet { mailboxes = Array(subscribers.values) }
        }
        /// The same mailboxes as an array, so publishing copies a reference, not a list.
        var mailboxes: [Mailbox<ClusterEvent>] = []
        var nextID: UInt64 = 1
        /// Every event's place in the order of publication, to merge what is replayed.
        var sequence: UInt64 = 0
        /// Messages published while no one was subscribed, for the first subscriber.
        var held: [(sequence: UInt64, event: ClusterEvent)] = []
        /// Each live worker's lifecycle events, from its `fork` to its `exit`.
        var lifecycles = Lifecycles()
        var paused: [ObjectIdentifier: Channel] = [:]

        /// Whether some subscriber, or the hold when there is none, is full.
        var anyFull: Bool {
            subscribers.isEmpty ? held.count >= ClusterEvents.limit : mailboxes.contains { $0.isFull }
        }
    }
    private let state = Mutex(State())

    func subscribe() -> ClusterEvents {
        let (id, mailbox) = state.withLock { state -> (UInt64, Mailbox<ClusterEvent>) in
            let id = state.nextID
            state.nextID += 1
            let mailbox = Mailbox<ClusterEvent>(limit: ClusterEvents.limit) { [weak self] in self?.relieve() }
            state.subscribers[id] = mailbox
            // Posted under the lock: whatever is published next comes after these.
            var past = state.lifecycles.replay + state.held
            past.sort { $0.sequence < $1.sequence }
            state.held.removeAll()
            past.forEach { mailbox.post($0.event) }
            return (id, mailbox)
        }
        relieve()
        return ClusterEvents(subscription: .init(id: id, mailbox: mailbox, hub: self))
    }

    func unsubscribe(_ id: UInt64) {
        let mailbox = state.withLock { $0.subscribers.removeValue(forKey: id) }
        mailbox?.finish()
        relieve()
    }

    /// Delivers `event` to every subscriber. A message from `channel` that finds a
    /// subscriber full, or no subscriber and a full hold, pauses that channel.
    func publish(_ event: consuming ClusterEvent, from channel: Channel? = nil) {
        let (mailboxes, holdFull) = state.withLock { state -> ([Mailbox<ClusterEvent>], Bool) in
            state.sequence += 1
            state.lifecycles.record(copy event, sequence: state.sequence)
            if state.subscribers.isEmpty {
                guard channel != nil else { return ([], false) } // lifecycle events wait in `lifecycles`
                state.held.append((state.sequence, copy event))
                return ([], state.held.count >= ClusterEvents.limit)
            }
            return (state.mailboxes, false)
        }
        var full = holdFull
        if let last = mailboxes.last {
            for mailbox in mailboxes.dropLast() where !mailbox.post(copy event) { full = true }
            if !last.post(event) { full = true }
        }
        guard full, let channel else { return }
        // Decided and done under the hub's lock, as relieve() is: a consumer that made
        // room after the post has either relieved already (then nothing is full now and
        // the channel is not paused) or relieves after this (and resumes it).
        state.withLock { state in
            guard state.anyFull else { return }
            state.paused[ObjectIdentifier(channel)] = channel
            channel.pauseReading()
        }
    }

    /// Finishes every subscription: the primary is gone.
    func finish() {
        let mailboxes = state.withLock { Array($0.subscribers.values) }
        mailboxes.forEach { $0.finish() }
    }

    private func relieve() {
        state.withLock { state in
            guard !state.anyFull else { return }
            state.paused.values.forEach { $0.resumeReading() }
            state.paused.removeAll()
        }
    }
}

/// Each live worker's lifecycle events in order (`fork`, `online`, `listening`, `ready`,
/// `disconnect`): recorded from its `fork`, at most ``ClusterEvents/replayedPerWorker``,
/// forgotten at its `exit`. Messages are not recorded. Pure, for the event hub.
struct Lifecycles {
    private var byWorker: [Int: [(sequence: UInt64, event: ClusterEvent)]] = [:]

    /// Records `event` if it is a live worker's lifecycle event; forgets the worker at its exit.
    mutating func record(_ event: ClusterEvent, sequence: UInt64) {
        switch event {
        case .fork(let worker):
            byWorker[worker.id] = [(sequence, event)]
        case .exit(let worker, _):
            byWorker.removeValue(forKey: worker.id)
        case .message:
            break
        case .online(let worker), .listening(let worker, _), .ready(let worker), .disconnect(let worker):
            // Only from a `fork` on: an event after the exit must not bring a worker back.
            guard var events = byWorker[worker.id], events.count < ClusterEvents.replayedPerWorker else { return }
            byWorker[worker.id] = nil
            events.append((sequence, event))
            byWorker[worker.id] = events
        }
    }

    /// What a new subscriber is shown first, in the order it happened.
    var replay: [(sequence: UInt64, event: ClusterEvent)] {
        byWorker.values.joined().sorted { $0.sequence < $1.sequence }
    }

    /// The workers whose events are kept.
    var workers: Set<Int> { Set(byWorker.keys) }
}
