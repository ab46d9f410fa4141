import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A connection a listener brought: its descriptor, which the receiver owns, and the
/// calls to make when it is first read and when it ends (it counts toward
/// `maxConnections` and, for leastConnections, toward the primary's choice).
///
/// From an acceptor that declares reads (``ClusterWorker/accept(on:maxConnections:declaresReads:_:)``),
/// a connection is not this worker's alone until it calls ``startedReading()`` (or
/// ``closed()``): where the primary accepts, it keeps its copy until then and hands the
/// connection to another worker if this one dies, so a crash loses no request it had not
/// begun to read; where the workers accept, the worker takes few connections ahead of its
/// reads, and the kernel's queue, which outlives it, keeps the rest.
public struct AcceptedConnection: Sendable {
    /// The connection: non-blocking, close-on-exec, yours to adopt or close. On a listener
    /// with a ``ListenAddress/proxyProtocol`` its PROXY header has been read already: the
    /// first byte to read is the client's.
    public let descriptor: Int32
    let acceptor: Acceptor
    /// The client a PROXY protocol header named.
    let proxiedClient: PeerAddress?
    /// Set when the acceptor declares reads: whether this connection has.
    let read: ReadDeclaration?

    /// The client's address: on a listener with a ``ListenAddress/proxyProtocol``, the
    /// client its header named (the balancer's own address when the header names none, a
    /// v2 `LOCAL` health check say); otherwise the socket's peer. Nil when the kernel
    /// cannot say (the connection has been reset). Read it before the descriptor is closed.
    public var clientAddress: PeerAddress? { proxiedClient ?? PeerAddress.peer(of: descriptor) }

    /// Tells the runtime this worker has begun to read the connection: from now on it is
    /// this worker's alone, and a crash of the worker loses it. Call it right after the
    /// first read that returned bytes (a read that finds none yet need not count), before
    /// anything else. Only the first call counts; a no-op unless the acceptor declares reads.
    public func startedReading() { read.map(acceptor.declareRead) }

    /// Tells the runtime the connection has closed (and, if it was never read, that it is
    /// done with it). Call once.
    public func closed() {
        read.map(acceptor.declareRead)
        acceptor.connectionClosed()
    }
}

/// Whether one connection from an acceptor that declares reads has been read yet; the
/// first declaration wins. For a handed-off connection, the handoff's number, answered
/// `taken` then.
final class ReadDeclaration: Sendable {
    let handoff: UInt64?
    private let declared = Atomic(false)

    init(handoff: UInt64?) { self.handoff = handoff }

    /// True the first time only.
    func declare() -> Bool { !declared.exchange(true, ordering: .relaxed) }
}

/// Brings a listener's connections to a handler in this worker, whichever the strategy:
/// it accepts on the worker's socket (shared, reusePort) from the I/O thread, or takes the
/// connections the primary hands over (roundRobin, leastConnections, sticky). Each
/// connection reaches the handler as a non-blocking, close-on-exec descriptor, which the
/// handler owns; the handler's owner calls ``AcceptedConnection/closed()`` when it ends.
///
/// On a shared socket the kernel wakes every worker for each connection and all but one
/// find nothing: here an empty accept is simply EAGAIN. `EPOLLEXCLUSIVE` is not used: it
/// wakes the first idle waiter, and since this thread is idle almost always, the first
/// worker would take every connection. On a reusePort slot socket it accepts only while
/// this worker holds the slot's turn (``ClusterWorker/acceptTurn(on:)``).
///
/// At `maxConnections` open connections it stops accepting (socket strategies: the
/// connections wait for another worker) or declines handoffs (the primary routes them
/// to another worker). When it declares reads, it also stops accepting while
/// ``unreadLimit`` connections it accepted have not been read: a worker whose event loop
/// is busy leaves the rest in the kernel's queue, where they outlive it.
public final class Acceptor: IOHandler, @unchecked Sendable {
    private struct State {
        var open = 0
        /// Accepted from the socket and not yet read (declared reads only).
        var unread = 0
        /// Handoffs taken and not yet answered: not yet read (declared reads only).
        var unanswered: Set<UInt64> = []
        /// The handoff whose handler runs now: a read it declares meanwhile is answered
        /// with the take.
        var taking: UInt64?
        var stopped = false
        /// Not accepting for now: at `maxConnections`, or at the unread limit.
        var paused = false
        var unreportedCloses = 0
        var reportScheduled = false
        /// A handoff was declined since closes were last reported: the primary may hold
        /// connections waiting for room.
        var declined = false
    }

    /// The listener served.
    public let listener: Listener
    private let limit: Int
    /// Whether the handler declares each connection's first read
    /// (``AcceptedConnection/startedReading()``).
    private let declaresReads: Bool
    /// With declared reads, a socket's acceptor holds at most this many connections it
    /// has accepted and not yet read; the rest wait in the kernel's queue.
    public static let unreadLimit = 3
    /// Whether the primary counts this worker's open connections (leastConnections): then
    /// every close is reported; otherwise only after a declined handoff.
    private let primaryCountsConnections: Bool
    private let fd: Int32
    private let loop: IOLoop
    private let channel: Channel
    /// The handoff link an event loop reads (``ClusterWorker/acceptOnEventLoop(on:maxConnections:declaresReads:_:)``);
    /// nil: handoffs come over the channel to the runtime's I/O thread.
    private let link: HandoffLink?
    private let handler: @Sendable (AcceptedConnection) -> Void
    private let logger = Logger(label: "cluster.acceptor")
    /// On a socket of a PROXY protocol listener: holds each connection until its header
    /// has come and been read. I/O thread.
    private var headers: ProxyHeaderGate?
    private let state = Mutex(State())
    /// Held while a read's answer is queued, and while the answers before a stop and the
    /// stop are: an answer never follows the stop, after which the primary would re-route
    /// a connection this worker serves.
    private let answering = Mutex(())

    /// Called on the I/O thread once the acceptor has stopped and told the primary.
    private let whenStopped: (@Sendable () -> Void)?

    init(listener: Listener, maxConnections: Int?, declaresReads: Bool = false, channel: Channel, loop: IOLoop,
         link: HandoffLink? = nil, waitsForTurn: Bool = false, whenStopped: (@Sendable () -> Void)? = nil,
         handler: @escaping @Sendable (AcceptedConnection) -> Void) throws(ClusterError) {
        self.listener = listener
        self.declaresReads = declaresReads
        self.whenStopped = whenStopped
        self.link = link
        self.limit = maxConnections ?? .max
        self.primaryCountsConnections = listener.distribution == .leastConnections
        self.channel = channel
        self.loop = loop
        self.handler = handler
        guard listener.descriptor != nil else {
            fd = -1
            return
        }
        fd = try listener.duplicateDescriptor()
        if let expected = listener.proxyProtocol {
            headers = ProxyHeaderGate(expecting: expected, consumes: true, loop: loop, logger: logger, listener: "\(listener.boundAddress)",
                                      // Its header read, it is this worker's: the unread
                                      // limit counts none of these (a slow header would
                                      // hold accepting up).
                                      ready: { [unowned self] connection, header in
                                          handler(AcceptedConnection(descriptor: connection, acceptor: self, proxiedClient: header.source, read: nil))
                                      },
                                      dropped: { [unowned self] in connectionClosed() })
        }
        do {
            try Syscall.setNonBlocking(fd)
            // A reusePort slot socket is watched only once this worker has its turn.
            try loop.register(fd, events: waitsForTurn ? 0 : EPOLLIN.rawValue, handler: self)
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Open connections handed to the handler and not yet reported closed.
    public var openConnections: Int { state.withLock { $0.open } }

    /// For ``ClusterWorker/acceptOnEventLoop(on:maxConnections:declaresReads:_:)`` on a listener the primary
    /// hands connections over for: a pipe's read end that becomes readable when handoffs
    /// wait. Watch it on the event loop that serves the connections (which then owns it:
    /// read and discard its bytes) and call ``receiveHandoffs()`` after each read. Nil when
    /// the runtime delivers connections itself.
    public var doorbell: Int32? { link?.doorbell }

    /// Takes the handoffs waiting on the link and passes each to the handler, on the
    /// calling thread (the event loop watching ``doorbell``); one thread at a time.
    public func receiveHandoffs() {
        link?.receive(listener: listener.id) { connection, client, number in takeHandoff(connection, client: client, number: number) }
    }

    /// Stops accepting; connections already handed over are the handler's. Idempotent.
    public func stop() {
        guard state.withLock({ state in defer { state.stopped = true }; return !state.stopped }) else { return }
        loop.execute { [self] in
            if fd >= 0 {
                loop.deregister(fd)
                Syscall.close(fd)
                headers?.closeAll()
            } else if let link {
                // Runs the adopting handler on this thread, one at a time with the event
                // loop's reads: the link's lock serializes every `take`.
                answering.withLock { _ in
                    link.stop(listener: listener.id,
                              take: { connection, client, number in takeHandoff(connection, client: client, number: number, stopping: true) },
                              unanswered: takeUnanswered)
                }
            } else {
                // Answers before the stop, which makes the primary re-route what is unanswered.
                answering.withLock { _ in
                    sendAnswers(takeUnanswered())
                    try? channel.sendNow(Control.stopAccepting(listener: listener.id).frame, force: true)
                }
            }
            whenStopped?()
        }
    }

    /// True once ``stop()`` was called.
    var isStopped: Bool { state.withLock { $0.stopped } }

    /// Stops accepting on its socket for `duration`, so that connections queued on a
    /// shared socket go to the other workers meanwhile. No-op where the primary hands
    /// connections over.
    public func holdAccepting(for duration: Duration) {
        loop.execute { [self] in
            guard fd >= 0, !state.withLock({ $0.stopped || $0.paused }) else { return }
            try? loop.modify(fd, events: 0)
            _ = loop.schedule(after: duration) { [self] in startAccepting() }
        }
    }

    /// Starts accepting on a socket it was made to wait for (its turn came).
    func startAccepting() {
        loop.execute { [self] in
            guard fd >= 0, !state.withLock({ $0.stopped || $0.paused }) else { return }
            try? loop.modify(fd, events: EPOLLIN.rawValue)
        }
    }

    /// Stops accepting and returns once the I/O thread has finished any accept it was in:
    /// after this, the handler is not called again.
    public func stopAndWait() async {
        stop()
        _ = try? await loop.submit { () throws(ClusterError) in }
    }

    /// The handoffs taken and not yet answered, now due: this worker stops, and serves them.
    private func takeUnanswered() -> [UInt64] {
        state.withLock { state in
            defer { state.unanswered.removeAll() }
            return state.unanswered.sorted()
        }
    }

    /// Answers handoffs `taken`, on the link or the channel they came by.
    private func sendAnswers(_ numbers: [UInt64]) {
        guard !numbers.isEmpty else { return }
        let answers = numbers.map { Handoff.answer(listener: listener.id, number: $0, taken: true) }
        if let link {
            link.send(answers)
        } else {
            for answer in answers { try? channel.sendNow(answer.frame(), force: true) }
        }
    }

    /// A connection's first read, or its close before any (the first call counts): a
    /// handoff is answered `taken` now, so the primary closes its copy; a connection from
    /// the socket no longer counts toward the unread limit.
    func declareRead(_ read: ReadDeclaration) {
        guard read.declare() else { return }
        if let handoff = read.handoff {
            // Declared by its handler during the take (which holds the link): answered with it.
            if state.withLock({ $0.taking == handoff && $0.unanswered.remove(handoff) != nil }) { return }
            // At once, not batched: the answer closes the primary's copy, and should the
            // worker close the connection first, the primary's close would be the last
            // one, tearing the socket down on the primary's thread (batching answers by
            // 1 ms cost roundRobin 9% and leastConnections 17% of their requests/s).
            answering.withLock { _ in
                if state.withLock({ $0.unanswered.remove(handoff) != nil }) { sendAnswers([handoff]) }
            }
            return
        }
        let resume = state.withLock { state -> Bool in
            state.unread = max(0, state.unread - 1)
            return resumes(&state)
        }
        if resume { loop.execute { [self] in try? loop.modify(fd, events: EPOLLIN.rawValue) } }
    }

    /// Whether accepting, paused at a limit, may go on now; unpauses if so.
    private func resumes(_ state: inout State) -> Bool {
        guard state.paused, !state.stopped, !isFull(state) else { return false }
        state.paused = false
        return true
    }

    /// At `maxConnections`, or (declared reads) at the unread limit.
    private func isFull(_ state: State) -> Bool {
        state.open >= limit || (declaresReads && state.unread >= Acceptor.unreadLimit)
    }

    /// One connection the handler took has closed (``AcceptedConnection/closed()``).
    func connectionClosed() {
        let (resume, report) = state.withLock { state -> (Bool, Bool) in
            state.open = max(0, state.open - 1)
            let resume = resumes(&state)
            guard fd < 0 else { return (resume, false) }
            state.unreportedCloses += 1
            // Closes are news to the primary only when it counts connections or
            // waits for room here; otherwise the message and the wake-up are saved.
            guard primaryCountsConnections || state.declined, !state.reportScheduled else { return (resume, false) }
            state.reportScheduled = true
            return (resume, true)
        }
        if resume { loop.execute { [self] in try? loop.modify(fd, events: EPOLLIN.rawValue) } }
        // Closes are reported in batches: one message for all that closed meanwhile.
        if report {
            loop.execute { [self] in
                let count = state.withLock { state in
                    defer { state.unreportedCloses = 0; state.reportScheduled = false; state.declined = false }
                    return state.unreportedCloses
                }
                guard count > 0 else { return }
                if let link {
                    // After the answers on the same link: the primary counts in order.
                    link.send([.closed(listener: listener.id, count: count)])
                } else {
                    try? channel.sendNow(Handoff.closed(listener: listener.id, count: count).frame(), force: true)
                }
            }
        }
    }

    /// A connection the primary handed over, handoff `number`: declined when this worker
    /// is stopped or at its limit. Taken unread (answered once the handler declares its
    /// first read) when the handler declares reads, unless `stopping` (the acceptor is
    /// stopping and takes what was handed over before it said so: it answers now) or the
    /// connection comes with a PROXY header (`client`: what the primary read in it; its
    /// bytes are skipped here, so the handler reads the client's first, and no other
    /// worker could skip them again). I/O thread, or the event loop receiving from a link.
    func takeHandoff(_ connection: Int32, client: HandedClient? = nil, number: UInt64, stopping: Bool = false) -> HandoffDecision {
        let decision = state.withLock { state -> HandoffDecision in
            guard !state.stopped || stopping, state.open < limit else {
                state.declined = true
                return .declined
            }
            state.open += 1
            guard declaresReads, !stopping, client == nil else { return .taken }
            // Before the handler runs: it may read, and declare it, at once.
            state.unanswered.insert(number)
            state.taking = number
            return .takenUnread
        }
        guard decision != .declined else { return decision }
        if let client, !ProxyHeaderGate.skipHeader(length: client.headerLength, of: connection) {
            // The primary saw the whole header in the socket; it is gone only if the
            // connection was reset meanwhile. Taken, so the primary forgets it.
            Syscall.close(connection)
            connectionClosed()
            return .taken
        }
        guard decision == .takenUnread else {
            handler(AcceptedConnection(descriptor: connection, acceptor: self, proxiedClient: client?.client, read: nil))
            return decision
        }
        handler(AcceptedConnection(descriptor: connection, acceptor: self, proxiedClient: nil, read: ReadDeclaration(handoff: number)))
        return state.withLock { state in
            state.taking = nil
            // Read already, by its handler: answered with the take.
            return state.unanswered.contains(number) ? .takenUnread : .taken
        }
    }

    func handle(events: UInt32) {
        loop.assertInLoop()
        // A bounded batch per wake-up keeps one busy listener from starving the channel.
        for _ in 0..<64 {
            let admitted = state.withLock { state -> Bool in
                guard !state.stopped else { return false }
                guard !isFull(state) else {
                    state.paused = true
                    return false
                }
                return true
            }
            guard admitted else {
                if state.withLock({ $0.paused }) { try? loop.modify(fd, events: 0) }
                return
            }
            do {
                guard let connection = try Syscall.accept(fd) else { return }
                state.withLock { state in
                    state.open += 1
                    if declaresReads && headers == nil { state.unread += 1 }
                }
                if let headers {
                    headers.admit(connection)
                } else {
                    handler(AcceptedConnection(descriptor: connection, acceptor: self, proxiedClient: nil,
                                               read: declaresReads ? ReadDeclaration(handoff: nil) : nil))
                }
            } catch {
                switch error.errno {
                case ECONNABORTED, EPROTO:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: pause instead of spinning on a ready socket.
                    logger.error("cannot accept on \(listener.boundAddress): \(error); pausing accepts for 100 ms")
                    try? loop.modify(fd, events: 0)
                    _ = loop.schedule(after: .milliseconds(100)) { [self] in
                        if !state.withLock({ $0.stopped }) { try? loop.modify(fd, events: EPOLLIN.rawValue) }
                    }
                    return
                default:
                    logger.error("accept failed on \(listener.boundAddress): \(error)")
                    return
                }
            }
        }
    }
}

extension ClusterWorker {
    /// Serves `listener`: passes each of its connections to `handler` (called on the
    /// runtime's I/O thread: adopt and return), and tells the primary this worker is
    /// listening. At `maxConnections` open connections (those not yet reported
    /// ``AcceptedConnection/closed()``) it takes no more until one closes. On a reusePort
    /// listener it accepts once this worker has its slot's turn, and gives the turn up
    /// when stopped.
    ///
    /// With `declaresReads`, the handler calls ``AcceptedConnection/startedReading()``
    /// after each connection's first read (or ``AcceptedConnection/closed()`` first), and
    /// a crash of this worker loses only the connections it had begun to read: one the
    /// primary handed over stays the primary's too until then, and goes to another worker
    /// if this one dies; on a socket this worker accepts (shared, reusePort), it holds at
    /// most ``Acceptor/unreadLimit`` unread connections and leaves the rest queued in the
    /// kernel. Without it, a connection is this worker's alone once handed over.
    public func accept(on listener: Listener, maxConnections: Int? = nil, declaresReads: Bool = false,
                       _ handler: @escaping @Sendable (AcceptedConnection) -> Void) throws(ClusterError) -> Acceptor {
        let takesTurns = listener.distribution == .reusePort
        let acceptor = try Acceptor(listener: listener, maxConnections: maxConnections, declaresReads: declaresReads,
                                    channel: channel, loop: loop, waitsForTurn: takesTurns,
                                    whenStopped: { [weak self] in
                                        if takesTurns { self?.stoppedAccepting(on: listener) }
                                        self?.closeChannelWhenIdle()
                                    }, handler: handler)
        if listener.descriptor != nil {
            reportListening(listener)
            if takesTurns {
                requestAcceptTurn(on: listener) { [weak acceptor] granted in
                    if granted { acceptor?.startAccepting() }
                }
            }
        } else {
            register(acceptor)
            try channel.sendNow(Control.accepting(listener: listener.id).frame, force: true)
        }
        return acceptor
    }

    /// ``accept(on:maxConnections:declaresReads:_:)`` for an event loop that receives the primary's
    /// handoffs itself: on a listener the primary accepts for (roundRobin,
    /// leastConnections, sticky) the returned acceptor's ``Acceptor/doorbell`` is set, and
    /// the handler runs on the thread that calls ``Acceptor/receiveHandoffs()``, so a
    /// connection reaches its event loop with one wake-up instead of two. On other
    /// listeners this is `accept(on:)`. `declaresReads`: as for
    /// ``accept(on:maxConnections:declaresReads:_:)``.
    public func acceptOnEventLoop(on listener: Listener, maxConnections: Int? = nil, declaresReads: Bool = false,
                                  _ handler: @escaping @Sendable (AcceptedConnection) -> Void) throws(ClusterError) -> Acceptor {
        guard listener.descriptor == nil else {
            return try accept(on: listener, maxConnections: maxConnections, declaresReads: declaresReads, handler)
        }
        let (link, primaryEnds) = try HandoffLink.make(loop: loop)
        // The channel sends copies; these go when the message has been queued.
        defer { primaryEnds.forEach(Syscall.close) }
        let acceptor = try Acceptor(listener: listener, maxConnections: maxConnections, declaresReads: declaresReads,
                                    channel: channel, loop: loop, link: link, whenStopped: { [weak self] in self?.closeChannelWhenIdle() }, handler: handler)
        register(acceptor)
        try channel.sendNow(Control.accepting(listener: listener.id).frame(descriptors: primaryEnds), force: true)
        return acceptor
    }
}
