import CClusterShims
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The primary's side of the primary-accept strategies (roundRobin, leastConnections,
/// sticky) for one listener: it accepts on the I/O thread, asks the router for a worker,
/// hands the descriptor over the worker's channel, and keeps its own copy until the
/// worker acknowledges, which a worker that declares reads does once it has read from the
/// connection (or closed it). A connection declined, or handed to a worker that dies
/// before acknowledging, goes to another worker: none is leaked or reset, and a crash
/// loses only connections their worker had begun to read. The copies held are bounded
/// (``holdLimit``, ``holdTime``).
///
/// On a PROXY protocol listener each connection first waits for its header
/// (``ProxyHeaderGate``, which peeks and leaves it in the socket); sticky routing hashes
/// the client the header names, and the handoff tells the worker the header's length and
/// that client. Loop thread only.
final class Dispatcher: IOHandler, @unchecked Sendable {
    private struct Accepted {
        var fd: Int32
        var key: [UInt8]
        var declined: Set<Int> = []
        var worker = 0
        /// From a PROXY protocol listener: what the worker learns of its header.
        var client: HandedClient?
        /// When it was handed to `worker` (``IOLoop/now()``).
        var handedAt: UInt64 = 0
    }

    let id: Int
    let distribution: Distribution
    private let fd: Int32
    private let loop: IOLoop
    let logger: Logger
    private var router: Router
    /// On a PROXY protocol listener: connections wait here for their header.
    private var headers: ProxyHeaderGate?
    /// Where each worker's handoffs go: its channel, or its handoff link.
    private var channels: [Int: Channel] = [:]
    /// Workers' handoff links, read here (answers, closes, stop), by worker.
    private var links: [Int: LinkReader] = [:]
    private var pending: [UInt64: Accepted] = [:]
    /// Connections accepted while no worker could take them, in arrival order.
    private var waiting: [Accepted] = []
    private var nextHandoff: UInt64 = 1
    private var acceptPaused = false
    private var stopped = false
    /// Closed for good: a connection no worker is left to take is closed, not held.
    private var closed = false
    /// Above this many waiting connections, the rest wait in the kernel's backlog: 256, or
    /// a quarter of the descriptor limit when that is lower.
    let waitingLimit = Dispatcher.waitingLimit(openFiles: Host.openFileLimit)
    /// Set while the process is out of descriptors (EMFILE): accepting waits, with a
    /// backoff, and the episode is logged once at its start and once at its end.
    private var exhaustion: Exhaustion?
    /// Connections wait when every worker declined them (at its limit, or out of
    /// descriptors). A close may never come to retry them (roundRobin workers report
    /// none), so they are retried on a timer too: 10 ms, doubling to 1 s while they wait.
    private var retryScheduled = false
    private var retryDelay = Dispatcher.firstRetry
    private static let firstRetry: Duration = .milliseconds(10)
    private static let longestRetry: Duration = .seconds(1)
    /// The most handed-off connections whose copy the primary holds until their worker
    /// answers (has read them): 1024, or a quarter of the descriptor limit when that is
    /// lower. Past it, the oldest copies are closed: those connections are their worker's
    /// alone, as they are once read.
    let holdLimit: Int
    /// The longest the primary holds a copy for a worker that has not answered (a client
    /// that connects and sends nothing, a worker stuck): then it is closed.
    static let holdTime: Duration = .seconds(30)
    private var sweepScheduled = false
    private var sweepSoon = false

    private struct Exhaustion {
        let since: ContinuousClock.Instant
        var lastFailure: ContinuousClock.Instant
        var failures = 1
        var shed = 0
        /// The first accept since the last failure.
        var acceptingSince: ContinuousClock.Instant?
        var backoff: Duration = .milliseconds(25)
        static let longestBackoff: Duration = .seconds(1)
        /// An episode ends once accepting has worked this long without a failure.
        static let quiet: Duration = .seconds(1)
    }

    static func waitingLimit(openFiles: Int?) -> Int {
        guard let openFiles else { return 256 }
        return min(256, max(16, openFiles / 4))
    }

    static func holdLimit(openFiles: Int?) -> Int {
        guard let openFiles else { return 1024 }
        return min(1024, max(16, openFiles / 4))
    }

    init(id: Int, fd: Int32, distribution: Distribution, proxyProtocol: ProxyProtocol? = nil,
         loop: IOLoop, logger: Logger, holdLimit: Int = Dispatcher.holdLimit(openFiles: Host.openFileLimit)) throws(ClusterError) {
        self.id = id
        self.holdLimit = holdLimit
        self.fd = fd
        self.distribution = distribution
        self.loop = loop
        self.logger = logger
        router = Router(distribution)
        if let proxyProtocol {
            headers = ProxyHeaderGate(expecting: proxyProtocol, consumes: false, loop: loop, logger: logger, listener: "\(id)",
                                      ready: { [unowned self] connection, header in headerArrived(connection, header) })
        }
        try loop.register(fd, events: EPOLLIN.rawValue, handler: self)
    }

    func handle(events: UInt32) {
        loop.assertInLoop()
        var accepted: [Accepted] = []
        defer { dispatch(accepted) }
        let sticky = distribution.kind == .sticky
        var peer = sockaddr_storage()
        for _ in 0..<64 {
            let connection: Int32
            do {
                guard let fd = try sticky ? Syscall.accept(fd, peer: &peer) : Syscall.accept(fd) else { return }
                connection = fd
            } catch {
                switch error.errno {
                case ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    outOfDescriptors(error)
                    return
                default:
                    logger.error("accept failed on listener \(id): \(error); pausing accepts for 100 ms")
                    pauseAccepting()
                    _ = loop.schedule(after: .milliseconds(100)) { [self] in loop.execute { self.resumeAccepting() } }
                    return
                }
            }
            if exhaustion != nil, exhaustion?.acceptingSince == nil { acceptingAgain() }
            if let headers {
                headers.admit(connection)
                continue
            }
            let key = sticky ? Socket.peerKey(peer) : []
            accepted.append(Accepted(fd: connection, key: key))
            if waiting.count + accepted.count >= waitingLimit { return }
        }
    }

    /// A connection from a PROXY protocol listener whose header has come: routed by the
    /// client it names (the socket's peer when it names none).
    private func headerArrived(_ connection: Int32, _ header: ProxyHeader) {
        let key = distribution.kind != .sticky ? [] : header.source?.routingKey ?? PeerAddress.peer(of: connection)?.routingKey ?? []
        dispatch([Accepted(fd: connection, key: key, client: HandedClient(headerLength: header.length, client: header.source))])
    }

    /// The process has no descriptor left for a connection. What waits longest for a
    /// worker is closed (its client can retry; holding it would keep the table full for
    /// good), and accepting pauses, longer each time, until descriptors free up. One log
    /// line per episode, not one per attempt.
    private func outOfDescriptors(_ error: ClusterError) {
        let shed = min(waiting.count, max(1, waiting.count / 2))
        for connection in waiting.prefix(shed) { Syscall.close(connection.fd) }
        waiting.removeFirst(shed)
        // Copies of connections the workers hold are the cheapest to give up.
        releaseHeld(excess: pending.count / 2)
        var episode = exhaustion ?? Exhaustion(since: .now, lastFailure: .now)
        if exhaustion == nil {
            logger.error("listener \(id) is out of descriptors (\(error)); closing the connections that waited longest for a worker and pausing accepts until descriptors free up (logged again when it is over). Raise the limit (ulimit -n, LimitNOFILE=) if this is load, not an attack")
        } else {
            episode.lastFailure = .now
            episode.acceptingSince = nil
            episode.failures += 1
            episode.backoff = min(episode.backoff * 2, Exhaustion.longestBackoff)
        }
        episode.shed += shed
        exhaustion = episode
        pauseAccepting()
        _ = loop.schedule(after: episode.backoff) { [self] in loop.execute { self.resumeAccepting() } }
    }

    /// The first accept after running out: the episode ends if none fails for a while.
    private func acceptingAgain() {
        let now = ContinuousClock.now
        exhaustion?.acceptingSince = now
        _ = loop.schedule(after: Exhaustion.quiet) { [self] in
            loop.execute {
                guard let episode = self.exhaustion, episode.acceptingSince == now else { return }
                self.exhaustion = nil
                let seconds = Int((episode.lastFailure - episode.since).inSeconds.rounded(.up))
                self.logger.notice("listener \(self.id) has descriptors again: out of them \(episode.failures) times in \(seconds) s; \(episode.shed) connections that waited for a worker were closed")
            }
        }
    }

    // MARK: Workers

    /// `worker` accepts handoffs from this listener now.
    func join(worker: Int, slot: Int, channel: Channel) {
        loop.assertInLoop()
        channels[worker] = channel
        router.add(worker: worker, slot: slot)
        retryWaiting()
    }

    /// Whether `worker` takes handoffs from this listener now.
    func contains(worker: Int) -> Bool { channels[worker] != nil }

    /// `worker` accepts handoffs over `link`, a handoff link its event loop reads
    /// (`HandoffLink`): the link carries the handoffs, the answers, closes and its stop.
    /// A link that breaks with an error (a frame the protocol does not allow) means a worker
    /// that is alive and holds connections it may yet read: `brokeProtocol` kills it before
    /// its unread connections go elsewhere, so no connection is served by two workers.
    func join(worker: Int, slot: Int, link: Channel,
              brokeProtocol: @escaping (ClusterError) -> Void = { _ in }) throws(ClusterError) {
        loop.assertInLoop()
        let reader = LinkReader(dispatcher: self, worker: worker, link: link, brokeProtocol: brokeProtocol)
        link.delegate = reader
        try link.start()
        links[worker] = reader
        join(worker: worker, slot: slot, channel: link)
    }

    /// `worker` takes no more handoffs (it drains, or it is gone); what it did not
    /// acknowledge goes elsewhere.
    func leave(worker: Int) {
        loop.assertInLoop()
        if let reader = links.removeValue(forKey: worker) {
            // Answers still unread on the link come first: a handoff it took stays taken.
            // (Not from within the link's own reading, where a stop lands: that read is
            // in progress, and the link closes once it is over.)
            if !reader.reading { reader.link.readAvailable() }
            loop.execute { reader.link.close(error: nil) }
        }
        router.remove(worker: worker)
        channels.removeValue(forKey: worker)
        var orphans = pending.filter { $0.value.worker == worker }
        for (number, _) in orphans { pending.removeValue(forKey: number) }
        // One it had begun to read (and died before its answer left) cannot be served
        // elsewhere: its request is gone. Closed, so its client hears at once instead of
        // waiting for a worker that waits for that request.
        let read = orphans.filter { (Syscall.bytesRead(from: $0.value.fd) ?? 0) > 0 }
        for (number, connection) in read {
            orphans.removeValue(forKey: number)
            Syscall.close(connection.fd)
        }
        if !read.isEmpty { logger.debug("listener \(id): worker \(worker) had begun to read \(read.count) connections it left unanswered; closed them") }
        dispatch(orphans.sorted { $0.key < $1.key }.map { _, orphan in
            var orphan = orphan
            orphan.declined.insert(worker)
            return orphan
        })
    }

    /// The worker's answer to a handoff.
    func acknowledge(_ handoff: UInt64, accepted: Bool, by worker: Int) {
        guard var entry = pending[handoff], entry.worker == worker else { return }
        pending.removeValue(forKey: handoff)
        if accepted {
            router.opened(on: worker)
            Syscall.close(entry.fd)
        } else {
            entry.declined.insert(worker)
            dispatch([entry])
        }
    }

    /// What `worker` said about its handoffs, on its channel or its link: answers, closes,
    /// stop. Throws for a message only the primary sends.
    func received(_ message: Handoff, from worker: Int) throws(ClusterError) {
        loop.assertInLoop()
        switch message {
        case .answer(_, let number, let taken): acknowledge(number, accepted: taken, by: worker)
        case .closed(_, let count): closed(on: worker, count: count)
        case .stop: leave(worker: worker)
        case .connection: throw ClusterError(.malformedFrame, "worker \(worker) sent a connection handoff, which only the primary sends")
        }
    }

    // MARK: Copies held

    /// Closes the primary's copies of the oldest unanswered handoffs: `excess` of them,
    /// and any held longer than ``holdTime``. Only those whose frame has been written (a
    /// lent descriptor is the kernel's then); each counts as taken, its connection its
    /// worker's alone.
    private func releaseHeld(excess: Int) {
        let now = IOLoop.now(), hold = UInt64(Dispatcher.holdTime.components.seconds) * 1_000_000_000
        let cutoff = now > hold ? now - hold : 0
        var released = 0
        // Numbers grow with the time of handing: by number is oldest first.
        for number in pending.keys.sorted() {
            guard let entry = pending[number] else { continue }
            guard released < excess || entry.handedAt <= cutoff else { break }
            guard channels[entry.worker]?.hasWrittenAll ?? true else { continue }
            pending.removeValue(forKey: number)
            router.opened(on: entry.worker)
            Syscall.close(entry.fd)
            released += 1
        }
        if released > 0 {
            logger.debug("listener \(id): closed the primary's copies of \(released) connections their workers had not read (held at most \(holdLimit), for at most \(Dispatcher.holdTime)); a crash of their worker may lose them")
        }
    }

    /// Checks the copies held once a second while there are any, and `soon` (past the
    /// limit: once the loop has written this iteration's handoffs, which lend their
    /// descriptors until then).
    private func scheduleSweep(soon: Bool = false) {
        if soon, !sweepSoon {
            sweepSoon = true
            _ = loop.schedule(after: .milliseconds(1)) { [self] in
                loop.execute {
                    self.sweepSoon = false
                    self.releaseHeld(excess: self.pending.count - self.holdLimit)
                }
            }
        }
        guard !sweepScheduled, !pending.isEmpty else { return }
        sweepScheduled = true
        _ = loop.schedule(after: .seconds(1)) { [self] in
            loop.execute {
                self.sweepScheduled = false
                self.releaseHeld(excess: self.pending.count - self.holdLimit)
                self.scheduleSweep()
            }
        }
    }

    func closed(on worker: Int, count: Int) {
        router.closed(on: worker, count: count)
        // Workers at their limit may have room now.
        retryWaiting()
    }

    // MARK: Routing

    private func scheduleRetry() {
        guard !retryScheduled, !stopped || closed, !router.workerIDs.isEmpty else { return }
        retryScheduled = true
        _ = loop.schedule(after: retryDelay) { [self] in
            loop.execute {
                self.retryScheduled = false
                self.retryDelay = min(self.retryDelay * 2, Dispatcher.longestRetry)
                self.retryWaiting()
            }
        }
    }

    private func retryWaiting() {
        guard !waiting.isEmpty else { return resumeAccepting() }
        let queued = waiting
        waiting.removeAll()
        dispatch(queued)
        resumeAccepting()
    }

    /// Routes `handoffs` and sends each worker its share in one message: one `sendmsg`
    /// and one wake-up of the worker for all the connections of an accept batch.
    private func dispatch(_ handoffs: [Accepted]) {
        var routed: [Int: [Accepted]] = [:]
        var unrouted = handoffs[...]
        while !unrouted.isEmpty || !routed.isEmpty {
            while var handoff = unrouted.popFirst() {
                guard let worker = router.route(key: handoff.key, excluding: handoff.declined), channels[worker] != nil else {
                    if !router.workerIDs.isEmpty && router.workerIDs.allSatisfy(handoff.declined.contains) {
                        // Every worker is at its limit: let the next ones try again.
                        handoff.declined.removeAll()
                    }
                    waiting.append(handoff)
                    continue
                }
                handoff.worker = worker
                routed[worker, default: []].append(handoff)
            }
            guard let (worker, batch) = routed.popFirst() else { break }
            for start in stride(from: 0, to: batch.count, by: Frame.maximumDescriptors) {
                let part = batch[start..<min(start + Frame.maximumDescriptors, batch.count)]
                if !send(part, to: worker) {
                    // Its channel is closing; the exit will re-route what it held.
                    unrouted.append(contentsOf: part.map { handoff in
                        var handoff = handoff
                        handoff.declined.insert(worker)
                        return handoff
                    })
                }
            }
        }
        if waiting.count >= waitingLimit { pauseAccepting() }
        dropUnservable()
        if waiting.isEmpty { retryDelay = Dispatcher.firstRetry } else { scheduleRetry() }
    }

    /// Hands `batch` to `worker`, numbered in order from one number in the message; false
    /// when its channel cannot take it.
    private func send(_ batch: ArraySlice<Accepted>, to worker: Int) -> Bool {
        guard let channel = channels[worker] else { return false }
        let first = nextHandoff, now = IOLoop.now()
        nextHandoff += UInt64(batch.count)
        for (offset, handoff) in batch.enumerated() {
            var handoff = handoff
            handoff.handedAt = now
            pending[first + UInt64(offset)] = handoff
        }
        do {
            // Lent, not copied: the dispatcher keeps each descriptor until the worker answers.
            let frame = Handoff.connection(listener: id, number: first).frame(descriptors: batch.map(\.fd),
                                                                               clients: batch.compactMap(\.client))
            try channel.sendNow(frame, force: true, lending: true)
            scheduleSweep(soon: pending.count > holdLimit)
            return true
        } catch {
            for offset in 0..<UInt64(batch.count) { pending.removeValue(forKey: first + offset) }
            return false
        }
    }

    private func pauseAccepting() {
        guard !acceptPaused, !stopped else { return }
        acceptPaused = true
        try? loop.modify(fd, events: 0)
    }

    /// Connections accepted and waiting for a worker to take them.
    var waitingCount: Int { waiting.count }

    /// Accepts no more, for good: the primary is stopping or handing over. Connections not
    /// yet accepted stay in the socket's queue, for a new primary that shares the socket.
    func stopAccepting() {
        loop.assertInLoop()
        guard !stopped else { return }
        stopped = true
        loop.deregister(fd)
    }

    /// Closes for good: the primary's listener closes (`Primary.disconnect`) and no worker
    /// accepts on it again. Accepts no more; connections waiting or handed back go to the
    /// workers still taking them, and once none is left, each is closed (its client sees
    /// the connection end) rather than held with nobody to serve it.
    func close() {
        loop.assertInLoop()
        stopAccepting()
        closed = true
        dropUnservable()
    }

    /// Closes the waiting connections if the listener is closed and no worker takes them.
    private func dropUnservable() {
        guard closed, router.workerIDs.isEmpty, !waiting.isEmpty else { return }
        // Their clients see the connection end without an answer: an operator hears of it.
        logger.warning("listener \(id) closed with \(waiting.count) accepted connections no worker was left to take; they were closed unanswered")
        waiting.forEach { Syscall.close($0.fd) }
        waiting.removeAll()
    }

    private func resumeAccepting() {
        guard acceptPaused, !stopped, waiting.count < waitingLimit else { return }
        acceptPaused = false
        try? loop.modify(fd, events: EPOLLIN.rawValue)
    }
}

/// The primary's reader of one worker's handoff link: routes what the worker says on it to
/// the dispatcher. A worker that breaks the link's protocol gets no more connections over
/// it; its channel and process are the primary's business.
final class LinkReader: ChannelDelegate, @unchecked Sendable {
    private weak var dispatcher: Dispatcher?
    private let worker: Int
    let link: Channel
    /// True while the link dispatches what it read (loop thread).
    private(set) var reading = false

    private let brokeProtocol: (ClusterError) -> Void

    init(dispatcher: Dispatcher, worker: Int, link: Channel, brokeProtocol: @escaping (ClusterError) -> Void) {
        self.dispatcher = dispatcher
        self.worker = worker
        self.link = link
        self.brokeProtocol = brokeProtocol
    }

    func channel(_ channel: Channel, received frame: Frame) {
        reading = true
        defer { reading = false }
        frame.descriptors.forEach(Syscall.close)
        guard let dispatcher else { return }
        guard frame.kind == .handoff else {
            return channel.close(error: ClusterError(.malformedFrame, "worker \(worker) sent a \(frame.kind) frame on a handoff link"))
        }
        do {
            try dispatcher.received(Handoff(frame), from: worker)
        } catch {
            channel.close(error: error)
        }
    }

    func channelClosed(_ channel: Channel, error: ClusterError?) {
        if let error { brokeProtocol(error) }
        dispatcher?.leave(worker: worker)
    }
}
