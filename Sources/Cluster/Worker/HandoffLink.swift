import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A worker's end of a listener's handoff link: a socketpair that carries only that
/// listener's handoffs and their answers, read by the event loop that serves the
/// connections. The primary writes a byte into a pipe (the doorbell) after each write;
/// the event loop watches the pipe and then calls ``receive(listener:take:)``. A handed-off
/// connection so reaches the thread that serves it without first waking the runtime's I/O
/// thread: one wake-up per batch instead of two.
///
/// Everything the worker says about the listener's handoffs goes over the link, in order
/// (answers, closes, stop), so the primary never mistakes an answered handoff for an
/// unanswered one.
final class HandoffLink: IOHandler, @unchecked Sendable {
    private struct State {
        var reader = FrameReader(maximumPayload: Handoff.maximumPayloadSize)
        /// Answers, closes and the stop, in order; what the socket could not take yet
        /// goes out when it is writable again (EPOLLOUT on the runtime's I/O thread).
        var writer = FrameWriter()
        var watchingWritable = false
        var closed = false
    }

    private let socket: Int32
    /// The doorbell's read end, for the event loop to watch (and own).
    let doorbell: Int32
    private let loop: IOLoop
    private let state = Mutex(State())
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 16)
    private let logger = Logger(label: "cluster.handoff")

    /// Creates a link; `primaryEnds` (the socket's other end, the doorbell's write end) go
    /// to the primary with the `accepting` message, after which the caller closes them.
    static func make(loop: IOLoop) throws(ClusterError) -> (link: HandoffLink, primaryEnds: [Int32]) {
        let (mine, theirs) = try Syscall.socketPair()
        let bell: (read: Int32, write: Int32)
        do {
            bell = try Syscall.pipe()
        } catch {
            Syscall.close(mine)
            Syscall.close(theirs)
            throw error
        }
        return (HandoffLink(socket: mine, doorbell: bell.read, loop: loop), [theirs, bell.write])
    }

    private init(socket: Int32, doorbell: Int32, loop: IOLoop) {
        self.socket = socket
        self.doorbell = doorbell
        self.loop = loop
    }

    deinit {
        Syscall.close(socket)
        buffer.deallocate()
    }

    /// Takes every handoff waiting on the link and answers those answered at once; `take`
    /// adopts a connection or declines it (the link closes it, the primary routes it
    /// elsewhere). Call on one thread at a time, when the doorbell rang.
    func receive(listener: Int, take: (Int32, HandedClient?, UInt64) -> HandoffDecision) {
        state.withLock { state in
            guard !state.closed else { return }
            defer { flush(&state) }
            // Until the socket is empty: the doorbell rang for all of it, and rings no more.
            while true {
                let count: Int?
                do {
                    count = try state.reader.read(from: socket, into: buffer)
                } catch {
                    return fail(&state, "reading handoffs failed: \(error)")
                }
                guard let count else { return }
                // End of file: the primary is gone; the main channel says so too.
                if count == 0 { return fail(&state, nil) }
                do {
                    while let frame = try state.reader.next() {
                        guard case .connection(_, let first)? = try? Handoff(frame) else {
                            frame.descriptors.forEach(Syscall.close)
                            return fail(&state, "the primary sent a \(frame.kind) frame on a handoff link")
                        }
                        Handoff.answerConnections(in: frame, listener: listener, first: first, take: take) {
                            state.writer.append($0, descriptors: [])
                        }
                    }
                } catch {
                    return fail(&state, "the handoff link broke: \(error)")
                }
            }
        }
    }

    /// Says this worker takes no more handoffs, after taking those already on the link:
    /// they were handed to it before the primary reads the stop, and bounced back now they
    /// could find every other worker stopping too (a drain of the whole cluster, a hot
    /// upgrade's handover), with nobody left to serve them. What arrives after this is
    /// declined and routed elsewhere. The connections taken and not yet read are answered
    /// first (`unanswered`): this worker serves them, so the primary must not re-route
    /// them when it reads the stop. Same threading as ``receive(listener:take:)``.
    func stop(listener: Int, take: (Int32, HandedClient?, UInt64) -> HandoffDecision, unanswered: () -> [UInt64]) {
        receive(listener: listener, take: take)
        send(unanswered().map { Handoff.answer(listener: listener, number: $0, taken: true) } + [.stop(listener: listener)])
    }

    /// Sends `messages` (answers, closes, stop) after the answers before them, in one
    /// write. Any thread.
    func send(_ messages: [Handoff]) {
        state.withLock { state in
            guard !state.closed else { return }
            for message in messages { state.writer.append(message.frame(), descriptors: []) }
            flush(&state)
        }
    }

    /// Writes what waits; if the socket is full, the I/O thread writes the rest once it
    /// is writable (the primary reads its links at once, so this is rare).
    private func flush(_ state: inout State) {
        guard !state.closed, !state.writer.isEmpty else { return }
        let blocked: Bool
        do {
            blocked = try state.writer.flush(to: socket).blocked
        } catch {
            return fail(&state, nil) // The primary is gone.
        }
        guard blocked != state.watchingWritable else { return }
        state.watchingWritable = blocked
        if blocked {
            do throws(ClusterError) {
                try loop.register(socket, events: EPOLLOUT.rawValue, handler: self)
            } catch {
                fail(&state, "cannot wait for the handoff link to take its answers: \(error)")
            }
        } else {
            loop.deregister(socket)
        }
    }

    /// The socket is writable again (I/O thread).
    func handle(events: UInt32) {
        loop.assertInLoop()
        state.withLock { flush(&$0) }
    }

    private func fail(_ state: inout State, _ reason: String?) {
        if let reason { logger.error("\(reason); this worker takes no more handed-off connections") }
        state.closed = true
        state.writer.discard()
        if state.watchingWritable {
            state.watchingWritable = false
            loop.deregister(socket)
        }
        state.reader.takeUnclaimedDescriptors().forEach(Syscall.close)
        shutdown(socket, Int32(SHUT_RDWR))
    }
}
