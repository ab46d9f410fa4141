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
/// subscription that sees every event from then on; messages that arrive while no one is
/// subscribed wait for the first subscriber. A subscriber that falls behind by more than
/// ``limit`` messages pauses reading from the workers that send them (nothing is dropped).
public struct ClusterEvents: AsyncSequence, Sendable {
    public typealias Element = ClusterEvent
    /// Messages a subscriber may have unread before reading from workers pauses.
    public static let limit = 4096

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

/// Fans events out to every subscriber.
final class EventHub: Sendable {
    private struct State {
        var subscribers: [UInt64: Mailbox<ClusterEvent>] = [:] {
            didSet { mailboxes = Array(subscribers.values) }
        }
        /// The same mailboxes as an array, so publishing copies a reference, not a list.
        var mailboxes: [Mailbox<ClusterEvent>] = []
        var nextID: UInt64 = 1
        var held: [ClusterEvent] = []
        var paused: [ObjectIdentifier: Channel] = [:]

        /// Whether some subscriber, or the hold when there is none, is full.
        var anyFull: Bool {
            subscribers.isEmpty ? held.count >= ClusterEvents.limit : mailboxes.contains { $0.isFull }
        }
    }
    private let state = Mutex(State())

    func subscribe() -> ClusterEvents {
        let (id, mailbox, held) = state.withLock { state -> (UInt64, Mailbox<ClusterEvent>, [ClusterEvent]) in
            let id = state.nextID
            state.nextID += 1
            let mailbox = Mailbox<ClusterEvent>(limit: ClusterEvents.limit) { [weak self] in self?.relieve() }
            state.subscribers[id] = mailbox
            defer { state.held.removeAll() }
            return (id, mailbox, state.held)
        }
        held.forEach { mailbox.post($0) }
        if !held.isEmpty { relieve() }
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
            if state.subscribers.isEmpty {
                guard channel != nil else { return ([], false) } // lifecycle events need a listener
                state.held.append(copy event)
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
