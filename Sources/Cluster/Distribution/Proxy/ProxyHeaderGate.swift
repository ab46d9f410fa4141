import CClusterShims
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Holds a listener's new connections until their PROXY protocol header has arrived
/// whole, then passes each on with its header. A connection whose header is malformed,
/// that ends or stalls for ``ProxyProtocol/headerTimeout`` first, or that comes while
/// ``ProxyProtocol/waitingLimit`` others wait, is closed; the listener and every other
/// connection go on. What is closed is logged at most once a minute.
///
/// It reads with `MSG_PEEK`, so an incomplete header stays in the socket. With `consumes`
/// it then reads exactly the header's bytes (a worker accepting itself: the handler's
/// first read is the client's); without, the header stays for whoever the connection goes
/// to (the primary: the worker skips the header's length, which the handoff carries).
/// Waits are edge-triggered: a peek leaves the bytes readable, and a level-triggered wait
/// would wake again at once. A header normally comes in the connection's first packet,
/// so most connections pass at once, without a wait. Loop thread only.
final class ProxyHeaderGate: @unchecked Sendable {
    private let expected: ProxyProtocol
    private let consumes: Bool
    private let loop: IOLoop
    private let logger: Logger
    private let listener: String
    private let ready: (Int32, ProxyHeader) -> Void
    private let dropped: () -> Void
    private var waiting: [Int32: HeaderWait] = [:]
    private var rejections = LogThrottle()
    private var overflows = LogThrottle()

    /// `ready`: a connection whose header is complete (read, with `consumes`); `dropped`:
    /// one closed here. `listener` names it in the log.
    init(expecting expected: ProxyProtocol, consumes: Bool, loop: IOLoop, logger: Logger, listener: String,
         ready: @escaping (Int32, ProxyHeader) -> Void, dropped: @escaping () -> Void = {}) {
        self.expected = expected
        self.consumes = consumes
        self.loop = loop
        self.logger = logger
        self.listener = listener
        self.ready = ready
        self.dropped = dropped
    }

    /// Connections waiting for the rest of their header.
    var waitingCount: Int { waiting.count }

    /// A connection just accepted, which the gate owns until it passes it on or closes it.
    func admit(_ fd: Int32) {
        loop.assertInLoop()
        switch step(fd) {
        case .ready(let header): ready(fd, header)
        case .close(let reason): reject(fd, reason)
        case .wait: wait(for: fd)
        }
    }

    /// Closes every connection still waiting (the listener stops serving here).
    func closeAll() {
        loop.assertInLoop()
        for (fd, wait) in waiting {
            loop.deregister(fd)
            loop.cancelTimer(wait.timer)
            Syscall.close(fd)
            dropped()
        }
        waiting.removeAll()
    }

    private enum Step {
        case ready(ProxyHeader), wait, close(String)
    }

    private func step(_ fd: Int32) -> Step {
        var buffer = [UInt8](repeating: 0, count: ProxyHeader.maximumLength)
        let count: Int?
        do {
            count = try buffer.withUnsafeMutableBytes { raw in try Syscall.receive(fd, into: raw, peek: true) }
        } catch {
            return .close("reading it failed (\(error))")
        }
        guard let count else { return .wait }
        guard count > 0 else { return .close("it ended before its PROXY \(expected) header was complete") }
        switch ProxyHeader.parse(buffer[..<count], expecting: expected) {
        case .needMore: return .wait
        case .invalid(let reason): return .close(reason)
        case .header(let header):
            guard !consumes || ProxyHeaderGate.skipHeader(length: header.length, of: fd) else {
                return .close("its PROXY header could not be read past")
            }
            return .ready(header)
        }
    }

    /// Reads and discards the first `length` bytes of `fd`, which a peek has seen there:
    /// false if they are not all there to read at once.
    static func skipHeader(length: Int, of fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: length)
        let count = try? buffer.withUnsafeMutableBytes { raw in try Syscall.receive(fd, into: raw, peek: false) }
        return count == length
    }

    private func wait(for fd: Int32) {
        guard waiting.count < ProxyProtocol.waitingLimit else {
            if let held = overflows.admit() {
                logger.warning("listener \(listener): \(ProxyProtocol.waitingLimit) connections already wait for their PROXY header; closing new ones until fewer wait (\(held) closed so since the last warning)")
            }
            Syscall.close(fd)
            dropped()
            return
        }
        let wait = HeaderWait(fd: fd, gate: self)
        do {
            try loop.register(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue, handler: wait)
        } catch {
            return reject(fd, "it cannot be watched (\(error))")
        }
        wait.timer = loop.schedule(after: ProxyProtocol.headerTimeout, target: wait, token: 0)
        waiting[fd] = wait
    }

    fileprivate func readable(_ wait: HeaderWait, events: UInt32) {
        guard waiting[wait.fd] === wait else { return }
        var step = step(wait.fd)
        if case .wait = step {
            // Half the header and then the end of the stream: no more will come.
            guard events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 else { return }
            step = .close("it ended before its PROXY \(expected) header was complete")
        }
        finishWaiting(wait)
        switch step {
        case .ready(let header): ready(wait.fd, header)
        case .close(let reason): reject(wait.fd, reason)
        case .wait: break
        }
    }

    fileprivate func timedOut(_ wait: HeaderWait) {
        guard waiting[wait.fd] === wait else { return }
        finishWaiting(wait)
        reject(wait.fd, "its PROXY \(expected) header was not complete within \(ProxyProtocol.headerTimeout.rounded)")
    }

    private func finishWaiting(_ wait: HeaderWait) {
        waiting.removeValue(forKey: wait.fd)
        loop.deregister(wait.fd)
        loop.cancelTimer(wait.timer)
    }

    private func reject(_ fd: Int32, _ reason: String) {
        if let held = rejections.admit() {
            let peer = PeerAddress.peer(of: fd).map { " from \($0)" } ?? ""
            logger.notice("listener \(listener): closed a connection\(peer): \(reason) (\(held) more closed for their PROXY header since the last such message; at most one a minute is logged)")
        }
        Syscall.close(fd)
        dropped()
    }
}

/// One connection waiting for its header: what the loop wakes when it is readable or its
/// time is up.
private final class HeaderWait: IOHandler, TimerTarget, @unchecked Sendable {
    let fd: Int32
    weak var gate: ProxyHeaderGate?
    var timer: UInt64 = 0

    init(fd: Int32, gate: ProxyHeaderGate) {
        self.fd = fd
        self.gate = gate
    }

    func handle(events: UInt32) { gate?.readable(self, events: events) }
    func timerFired(_ token: UInt64) { gate?.timedOut(self) }
}
