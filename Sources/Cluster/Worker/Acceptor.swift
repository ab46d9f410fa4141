import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on a shared listener from the worker's I/O thread and hands each
/// one, as a non-blocking close-on-exec descriptor, to a handler (an adapter that adopts it).
///
/// Why not let an event loop library accept by itself: every worker waits on the same
/// socket, the kernel wakes all of them for each connection and all but one find nothing,
/// and SwiftNIO asserts on that in debug builds. Here an empty accept is simply EAGAIN.
///
/// Why not `EPOLLEXCLUSIVE`, which would wake one worker per connection: the kernel then
/// wakes the first idle waiter, and since this thread is idle almost always, the first
/// worker would take every connection. Waking all lets whichever worker is quickest win,
/// which spreads connections as Node's `SCHED_NONE` policy does; the strategies of the
/// distribution layer balance exactly.
public final class Acceptor: IOHandler, @unchecked Sendable {
    private let fd: Int32
    private let loop: IOLoop
    private let handler: @Sendable (Int32) -> Void
    private let logger = Logger(label: "cluster.acceptor")
    private let stopped = Atomic(false)

    init(listener: Listener, loop: IOLoop, handler: @escaping @Sendable (Int32) -> Void) throws(ClusterError) {
        fd = try listener.duplicateDescriptor()
        self.loop = loop
        self.handler = handler
        do {
            try Syscall.setNonBlocking(fd)
            try loop.register(fd, events: EPOLLIN.rawValue, handler: self)
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Stops accepting; connections already handed over are the handler's. Idempotent.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        loop.execute { [self] in
            loop.deregister(fd)
            Syscall.close(fd)
        }
    }

    func handle(events: UInt32) {
        guard !stopped.load(ordering: .relaxed) else { return }
        // A bounded batch per wake-up keeps one busy listener from starving the channel.
        for _ in 0..<64 {
            do {
                guard let connection = try Syscall.accept(fd) else { return }
                handler(connection)
            } catch {
                switch error.errno {
                case ECONNABORTED, EPROTO:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: pause instead of spinning on a ready socket.
                    logger.error("cannot accept on fd \(fd): \(error); pausing accepts for 100 ms")
                    try? loop.modify(fd, events: 0)
                    _ = loop.schedule(after: .milliseconds(100)) { [self] in
                        if !stopped.load(ordering: .relaxed) { try? loop.modify(fd, events: EPOLLIN.rawValue) }
                    }
                    return
                default:
                    logger.error("accept failed on fd \(fd): \(error)")
                    return
                }
            }
        }
    }
}

extension ClusterWorker {
    /// Accepts connections on `listener` and passes each descriptor to `handler`, which owns
    /// it from then on, then tells the primary this worker is listening.
    public func accept(on listener: Listener, _ handler: @escaping @Sendable (Int32) -> Void) throws(ClusterError) -> Acceptor {
        let acceptor = try Acceptor(listener: listener, loop: loop, handler: handler)
        reportListening(listener)
        return acceptor
    }
}
