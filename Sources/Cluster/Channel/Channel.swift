import CClusterShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a channel's owner hears, on the I/O thread.
protocol ChannelDelegate: AnyObject, Sendable {
    /// A frame that is not a reply (replies go to their `request`).
    func channel(_ channel: Channel, received frame: Frame)
    /// The channel is closed: the peer hung up (`error` nil) or broke the protocol.
    func channelClosed(_ channel: Channel, error: ClusterError?)
}

/// Framed messages over one end of a Unix socketpair, both directions, descriptors attached.
///
/// Reads happen on the ``IOLoop`` thread. Writes come from any thread: a writer on the I/O
/// thread queues and the loop flushes the whole batch in one `sendmsg` before it sleeps; a
/// writer elsewhere writes at once without blocking. What the socket cannot take waits in a
/// bounded queue: `send` suspends above the high watermark until the peer has read enough.
final class Channel: IOHandler, Flushable, TimerTarget, @unchecked Sendable {
    /// The largest payload a message may carry: 64 MiB.
    static let maximumMessageSize = 64 << 20
    static let highWatermark = 4 << 20
    static let lowWatermark = 1 << 20

    /// Someone waiting for the queue to drain below the low watermark (or the channel to
    /// close): a suspended `send`, or an action such as resuming a sender's channel.
    private enum Waiter {
        case task(UnsafeContinuation<Void, Never>)
        case action(@Sendable () -> Void)

        func resume() {
            switch self {
            case .task(let continuation): continuation.resume()
            case .action(let action): action()
            }
        }
    }

    private struct State {
        var writer = FrameWriter()
        var writers: [Waiter] = []
        var flushScheduled = false
        var writeArmed = false
        var readPaused = false
        var detachedWhilePaused = false
        var closed = false
        var closeError: ClusterError?
        var requests: [UInt64: Request] = [:]
    }

    private struct Request {
        var continuation: UnsafeContinuation<Result<Frame, ClusterError>, Never>
        var timer: UInt64
        var timeout: Duration
    }

    let fd: Int32
    let loop: IOLoop
    /// Set once, before `start`.
    nonisolated(unsafe) weak var delegate: (any ChannelDelegate)?
    private let state = Mutex(State())
    private let nextCorrelation = Atomic<UInt64>(0)
    // Loop-thread only.
    private nonisolated(unsafe) var reader = FrameReader(maximumPayload: Channel.maximumMessageSize)
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)

    /// A pipe's write end, written after every write to the socket: the peer's event loop
    /// watches the pipe, not the socket (a handoff link, ``Handoff``). -1: none.
    private let doorbell: Int32

    /// Takes ownership of `fd`, a connected, non-blocking, close-on-exec stream socket, and
    /// of `doorbell` if any.
    init(fd: Int32, loop: IOLoop = .shared, doorbell: Int32 = -1) {
        self.fd = fd
        self.loop = loop
        self.doorbell = doorbell
    }

    deinit { readBuffer.deallocate() }

    func start() throws(ClusterError) {
        try loop.register(fd, events: Channel.readEvents, handler: self)
    }

    private static let readEvents = EPOLLIN.rawValue | EPOLLRDHUP.rawValue

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Whether every frame queued has been written (or dropped with the channel): the
    /// descriptors lent to them are in the kernel's hands, and their owner may close its own.
    var hasWrittenAll: Bool { state.withLock { $0.writer.isEmpty } }

    // MARK: Sending

    /// Queues `frame`; waits while the queue is above the high watermark.
    func send(_ frame: Frame) async throws(ClusterError) {
        try Channel.validate(frame)
        while try !enqueue(frame, onlyBelowWatermark: true) {
            await withUnsafeContinuation { continuation in
                let ready = state.withLock { state in
                    if state.closed || state.writer.pendingBytes <= Channel.highWatermark { return true }
                    state.writers.append(.task(continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }

    /// Queues `frame` without waiting; throws ``ClusterError/Code/channelFull`` above the
    /// high watermark unless `force` (the runtime's own control messages).
    ///
    /// With `lending`, the frame's descriptors are not copied: the caller keeps them open
    /// until the peer has answered for them (a handoff), which spares a descriptor per
    /// connection when the table is nearly full. An `urgent` frame (the runtime's drain
    /// request) goes ahead of every queued frame not yet begun, so it never waits behind
    /// megabytes of messages.
    func sendNow(_ frame: Frame, force: Bool = false, lending: Bool = false, urgent: Bool = false) throws(ClusterError) {
        try Channel.validate(frame)
        guard try enqueue(frame, onlyBelowWatermark: !force, lending: lending, urgent: urgent) else {
            throw ClusterError(.channelFull, "more than \(Channel.highWatermark) bytes wait to be read by the peer; use the async send to wait for room")
        }
    }

    /// Runs `action` once the queue is at or below the low watermark, or the channel has
    /// closed: at once if it is already. Any thread; `action` may run on the I/O thread.
    func whenDrained(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.closed || state.writer.pendingBytes <= Channel.lowWatermark { return true }
            state.writers.append(.action(action))
            return false
        }
        if now { action() }
    }

    /// Whether more than the high watermark waits for the peer to read it.
    var isFull: Bool { state.withLock { $0.writer.pendingBytes > Channel.highWatermark } }

    /// Sends `frame` as a request and waits for its reply.
    func request(_ frame: Frame, timeout: Duration) async throws(ClusterError) -> Frame {
        try Channel.validate(frame)
        var frame = frame
        let correlation = nextCorrelation.wrappingAdd(1, ordering: .relaxed).newValue
        frame.correlation = correlation
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Frame, ClusterError>, Never>) in
            let timer = loop.schedule(after: timeout, target: self, token: correlation)
            // Registered in the same critical section that queues it: a fast reply finds it.
            let request = Request(continuation: continuation, timer: timer, timeout: timeout)
            do throws(ClusterError) {
                _ = try enqueue(frame, onlyBelowWatermark: false, registering: (correlation, request))
            } catch {
                loop.cancelTimer(timer)
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    func timerFired(_ correlation: UInt64) {
        guard let request = state.withLock({ $0.requests.removeValue(forKey: correlation) }) else { return }
        request.continuation.resume(returning: .failure(ClusterError(.timeout, "no reply within \(request.timeout.rounded)")))
    }

    @discardableResult
    private func completeRequest(_ correlation: UInt64, with result: Result<Frame, ClusterError>) -> Bool {
        guard let request = state.withLock({ $0.requests.removeValue(forKey: correlation) }) else { return false }
        loop.cancelTimer(request.timer)
        request.continuation.resume(returning: result)
        return true
    }

    private static let closedError = ClusterError(.channelClosed, "the peer has exited or disconnected")

    private static func validate(_ frame: Frame) throws(ClusterError) {
        guard frame.payload.count <= maximumMessageSize else {
            throw ClusterError(.messageTooLarge, "a message of \(frame.payload.count) bytes exceeds the limit of \(maximumMessageSize) bytes (64 MiB); send large data through a file or a descriptor instead")
        }
        guard frame.descriptors.count <= Frame.maximumDescriptors else {
            throw ClusterError(.messageTooLarge, "a message carries \(frame.descriptors.count) descriptors; the limit is \(Frame.maximumDescriptors)")
        }
    }

    /// Queues `frame` (and registers `request`, if any); returns false without queueing
    /// when `onlyBelowWatermark` and the queue is above the high watermark.
    private func enqueue(_ frame: Frame, onlyBelowWatermark: Bool, lending: Bool = false, urgent: Bool = false,
                         registering request: (UInt64, Request)? = nil) throws(ClusterError) -> Bool {
        // Copies, so the caller may close its own descriptors as soon as send returns.
        var copies: [Int32] = []
        if lending {
            copies = frame.descriptors
        } else {
            do throws(ClusterError) {
                for descriptor in frame.descriptors { copies.append(try Syscall.duplicate(descriptor)) }
            } catch {
                copies.forEach(Syscall.close)
                throw error
            }
        }
        let owned = !lending
        let inLoop = loop.inLoop
        let (outcome, resumed) = state.withLock { state -> (Result<Bool, ClusterError>, [Waiter]) in
            if state.closed { return (.failure(state.closeError ?? Channel.closedError), []) }
            if onlyBelowWatermark && state.writer.pendingBytes > Channel.highWatermark { return (.success(false), []) }
            if let (correlation, request) = request { state.requests[correlation] = request }
            state.writer.append(frame, descriptors: copies, owned: owned, urgent: urgent)
            guard !state.flushScheduled, !state.writeArmed else { return (.success(true), []) }
            if inLoop {
                state.flushScheduled = true
                loop.flushBeforeSleep(self)
                return (.success(true), [])
            }
            return (.success(true), flushLocked(&state))
        }
        resumed.forEach { $0.resume() }
        switch outcome {
        case .success(true):
            return true
        case .success(false):
            if owned { copies.forEach(Syscall.close) }
            return false
        case .failure(let error):
            if owned { copies.forEach(Syscall.close) }
            throw error
        }
    }

    func flushBeforeSleep() {
        let resumed = state.withLock { state in
            state.flushScheduled = false
            return flushLocked(&state)
        }
        resumed.forEach { $0.resume() }
    }

    /// Writes what the socket takes; arms EPOLLOUT for the rest. Returns writers to resume.
    private func flushLocked(_ state: inout State) -> [Waiter] {
        let flushed: (wrote: Bool, blocked: Bool)
        do {
            flushed = try state.writer.flush(to: fd)
        } catch {
            // The peer is gone (EPIPE, ECONNRESET); the read side reports the close.
            loop.execute { [self] in close(error: nil) }
            return []
        }
        if flushed.wrote && doorbell >= 0 { Channel.ring(doorbell) }
        if flushed.blocked != state.writeArmed {
            state.writeArmed = flushed.blocked
            updateInterest(state)
        }
        guard state.writer.pendingBytes <= Channel.lowWatermark, !state.writers.isEmpty else { return [] }
        defer { state.writers.removeAll() }
        return state.writers
    }

    /// One byte into the doorbell pipe. A full pipe already rings; a closed one has no
    /// listener left: both are fine to ignore.
    private static func ring(_ doorbell: Int32) {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? Syscall.write(doorbell, $0) }
    }

    private func updateInterest(_ state: State) {
        guard !state.closed, !state.detachedWhilePaused else { return }
        let events = (state.readPaused ? 0 : Channel.readEvents) | (state.writeArmed ? EPOLLOUT.rawValue : 0)
        try? loop.modify(fd, events: events)
    }

    /// Writes everything queued, blocking up to `timeout`: a worker's last messages leave
    /// before it exits.
    func flushBlocking(timeout: Duration) {
        let deadline = ContinuousClock.now + timeout.asTimerDelay
        while true {
            let pending = state.withLock { state -> Bool in
                guard !state.closed else { return false }
                let resumed = flushLocked(&state)
                resumed.forEach { $0.resume() }
                return !state.writer.isEmpty
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard pending, remaining > .zero else { return }
            _ = try? Syscall.poll(fd, events: Int16(POLLOUT), milliseconds: remaining.saturatingMilliseconds)
        }
    }

    // MARK: Back-pressure on reading

    func pauseReading() {
        state.withLock { state in
            guard !state.readPaused else { return }
            state.readPaused = true
            updateInterest(state)
        }
    }

    func resumeReading() {
        let reattach = state.withLock { state -> Bool in
            guard state.readPaused else { return false }
            state.readPaused = false
            if state.detachedWhilePaused {
                state.detachedWhilePaused = false
                return true
            }
            updateInterest(state)
            return false
        }
        if reattach {
            let events = Channel.readEvents | (state.withLock { $0.writeArmed } ? EPOLLOUT.rawValue : 0)
            try? loop.register(fd, events: events, handler: self)
        } else {
            // Data that arrived while paused is waiting: read it now.
            loop.execute { [self] in readAvailable() }
        }
    }

    // MARK: Reading (I/O thread)

    func handle(events: UInt32) {
        loop.assertInLoop()
        if events & EPOLLOUT.rawValue != 0 {
            // flushLocked disarms EPOLLOUT once the queue is empty (level-triggered: left
            // armed, it would wake the loop again at once, and again).
            let resumed = state.withLock { flushLocked(&$0) }
            resumed.forEach { $0.resume() }
        }
        let hangup = events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
        if hangup && state.withLock({ $0.readPaused }) {
            // epoll reports a hang-up even when not asked; stop watching until resumed
            // so a paused channel does not spin the loop.
            loop.deregister(fd)
            state.withLock { $0.detachedWhilePaused = true }
            return
        }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 || hangup { readAvailable() }
    }

    /// Reads and dispatches what is available, up to `batches` reads (bounded per wake-up
    /// so one busy peer cannot starve the others), up to end of file.
    func readAvailable(batches: Int = 16) {
        loop.assertInLoop()
        guard !isClosed else { return }
        for _ in 0..<batches {
            // A delegate may have closed the channel (a protocol violation): its descriptor
            // is gone, and its number may already be another's.
            if state.withLock({ $0.readPaused || $0.closed }) { return }
            let count: Int?
            do {
                count = try reader.read(from: fd, into: readBuffer)
            } catch {
                close(error: error.errno == ECONNRESET ? nil : error)
                return
            }
            guard let count else { return }
            if count == 0 {
                close(error: nil)
                return
            }
            do {
                while !isClosed, let frame = try reader.next() { dispatch(frame) }
            } catch {
                close(error: error)
                return
            }
            loop.expectTraffic()
            // A short read emptied the socket: asking again would only return EAGAIN.
            // (End of file, if it follows, is reported by the next wake-up.)
            if count < readBuffer.count { return }
        }
    }

    private func dispatch(_ frame: Frame) {
        switch frame.kind {
        case .reply:
            // A late reply (its request timed out) or one to no request: its descriptors
            // are nobody's.
            if !completeRequest(frame.correlation, with: .success(frame)) { frame.descriptors.forEach(Syscall.close) }
        case .failure:
            frame.descriptors.forEach(Syscall.close)
            completeRequest(frame.correlation, with: .failure(RemoteFailure.error(from: frame.payload)))
        case .message, .request, .control, .handoff:
            delegate?.channel(self, received: frame)
        }
    }

    /// Closes the channel: waiting senders and requests fail, the delegate hears once.
    /// Runs on the I/O thread (where the reader lives); call from anywhere.
    func close(error: ClusterError?) {
        guard loop.inLoop else {
            loop.execute { [self] in close(error: error) }
            return
        }
        let taken = state.withLock { state -> ([Waiter], [Request], Bool)? in
            guard !state.closed else { return nil }
            state.closed = true
            state.closeError = error
            defer {
                state.writers.removeAll()
                state.requests.removeAll()
                state.writer.discard()
            }
            return (state.writers, Array(state.requests.values), state.detachedWhilePaused)
        }
        guard let (writers, requests, detached) = taken else { return }
        if !detached { loop.deregister(fd) }
        Syscall.close(fd)
        if doorbell >= 0 { Syscall.close(doorbell) }
        reader.takeUnclaimedDescriptors().forEach(Syscall.close)
        writers.forEach { $0.resume() }
        let failure = error ?? Channel.closedError
        for request in requests {
            loop.cancelTimer(request.timer)
            request.continuation.resume(returning: .failure(failure))
        }
        delegate?.channelClosed(self, error: error)
    }
}

