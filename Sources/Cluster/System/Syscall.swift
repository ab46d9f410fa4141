import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// Every system call swift-cluster makes, in one place: each retries EINTR and throws a
/// ``ClusterError`` carrying errno and the call's name. Calls that may say "not now"
/// (EAGAIN) return `nil` instead of throwing.
enum Syscall {
    @inline(__always)
    static func retrying<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(ClusterError) -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            throw ClusterError(.systemCall(name()), errno: error, "the operating system refused")
        }
    }

    @inline(__always)
    static func retryingUnlessBlocked<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(ClusterError) -> T? {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return nil }
            throw ClusterError(.systemCall(name()), errno: error, "the operating system refused")
        }
    }

    /// Closes a descriptor this process owns. EBADF means it owned no such descriptor: a
    /// double close or a stale number, which could as well have closed another owner's
    /// file. That is a bug here, never input, so it stops the process (as SwiftNIO's
    /// `close` does) instead of going on with a descriptor table nobody can trust.
    static func close(_ fd: Int32) {
        // Linux closes the descriptor even when close reports EINTR: never retry.
        if Glibc.close(fd) != 0, errno == EBADF {
            preconditionFailure("close(\(fd)) failed with EBADF: a descriptor closed twice or never owned")
        }
    }

    static func socketPair() throws(ClusterError) -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        _ = try retrying("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        }
        // Larger buffers let a burst of messages flow without stalling the sender; the
        // kernel caps the request at net.core.wmem_max.
        var size: Int32 = 1 << 20
        for fd in fds { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        return (fds[0], fds[1])
    }

    static func setNonBlocking(_ fd: Int32) throws(ClusterError) {
        let flags = try retrying("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        _ = try retrying("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    static func setCloseOnExec(_ fd: Int32) throws(ClusterError) {
        _ = try retrying("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }

    static func duplicate(_ fd: Int32) throws(ClusterError) -> Int32 {
        try retrying("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, 3) }
    }

    static func pipe() throws(ClusterError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        _ = try retrying("pipe2") { cluster_pipe(&fds) }
        return (fds[0], fds[1])
    }

    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, fds: [Int32]) throws(ClusterError) -> Int? {
        try retryingUnlessBlocked("sendmsg") {
            fds.withUnsafeBufferPointer { cluster_sendmsg(fd, bytes.baseAddress, bytes.count, $0.baseAddress, Int32($0.count)) }
        }.map { Int($0) }
    }

    /// Receives into `buffer`; returns the byte count (0 at end of file) and any descriptors,
    /// or nil when nothing is there yet.
    /// Receives bytes and any descriptors (close-on-exec) into `fds`. `truncated` is set
    /// when the kernel dropped descriptors: more than 64 were attached, or this process's
    /// table is full (EMFILE); those received are the first of the message's.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, fds: inout [Int32],
                        truncated dropped: inout Bool) throws(ClusterError) -> Int? {
        var count: Int32 = 0
        var truncated: Int32 = 0
        let n = try withUnsafeTemporaryAllocation(of: Int32.self, capacity: 64) { received throws(ClusterError) in
            let n = try retryingUnlessBlocked("recvmsg") {
                cluster_recvmsg(fd, buffer.baseAddress, buffer.count, received.baseAddress, 64, &count, &truncated)
            }
            if count > 0 { fds.append(contentsOf: received.prefix(Int(count))) }
            return n
        }
        dropped = truncated != 0
        return n.map { Int($0) }
    }

    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(ClusterError) -> Int? {
        try retryingUnlessBlocked("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }.map { Int($0) }
    }

    /// `recv` that never blocks; with `peek` the bytes stay in the socket for the next reader.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, peek: Bool) throws(ClusterError) -> Int? {
        let flags = MSG_DONTWAIT | (peek ? MSG_PEEK : 0)
        return try retryingUnlessBlocked("recv") { Glibc.recv(fd, buffer.baseAddress, buffer.count, Int32(flags)) }.map { Int($0) }
    }

    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(ClusterError) -> Int? {
        try retryingUnlessBlocked("write") { Glibc.write(fd, bytes.baseAddress, bytes.count) }.map { Int($0) }
    }

    static func poll(_ fd: Int32, events: Int16, milliseconds: Int32) throws(ClusterError) -> Int16 {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        _ = try retrying("poll") { Glibc.poll(&entry, 1, milliseconds) }
        return entry.revents
    }

    /// How many bytes have been read from the TCP connection `fd` (by any process holding
    /// it); nil when the kernel cannot say.
    static func bytesRead(from fd: Int32) -> Int? {
        let read = cluster_tcp_bytes_read(fd)
        return read < 0 ? nil : Int(read)
    }

    static func accept(_ fd: Int32) throws(ClusterError) -> Int32? {
        try retryingUnlessBlocked("accept4") { cluster_accept(fd) }
    }

    /// `accept` that also writes the client's address into `peer`.
    static func accept(_ fd: Int32, peer: inout sockaddr_storage) throws(ClusterError) -> Int32? {
        try retryingUnlessBlocked("accept4") { cluster_accept_peer(fd, &peer) }
    }

    static func pidfdOpen(_ pid: pid_t) throws(ClusterError) -> Int32 {
        try retrying("pidfd_open(\(pid))") { cluster_pidfd_open(pid) }
    }

    /// Signals the process behind `pidfd`; false when it has already exited.
    static func pidfdSignal(_ pidfd: Int32, _ signal: Int32) throws(ClusterError) -> Bool {
        while true {
            if cluster_pidfd_send_signal(pidfd, signal) == 0 { return true }
            switch Glibc.errno {
            case EINTR: continue
            case ESRCH: return false
            case let error: throw ClusterError(.systemCall("pidfd_send_signal"), errno: error, "could not signal a worker")
            }
        }
    }

    /// Reaps the exited process behind `pidfd`, or returns nil while it runs.
    static func pidfdReap(_ pidfd: Int32) throws(ClusterError) -> ExitStatus? {
        var code: Int32 = 0
        var status: Int32 = 0
        let reaped = try retrying("waitid(P_PIDFD)") { cluster_pidfd_reap(pidfd, &code, &status) }
        guard reaped == 1 else { return nil }
        return code == CLD_EXITED ? .exited(status) : .signaled(Signal(rawValue: status))
    }

    static func epollCreate() throws(ClusterError) -> Int32 {
        try retrying("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    static func epollControl(_ epoll: Int32, _ operation: Int32, _ fd: Int32, events: UInt32) throws(ClusterError) {
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        _ = try retrying("epoll_ctl") { epoll_ctl(epoll, operation, fd, &event) }
    }

    static func epollWait(_ epoll: Int32, _ events: UnsafeMutableBufferPointer<epoll_event>, milliseconds: Int32) throws(ClusterError) -> Int {
        while true {
            let n = epoll_wait(epoll, events.baseAddress, Int32(events.count), milliseconds)
            if n >= 0 { return Int(n) }
            if Glibc.errno == EINTR { return 0 }
            throw ClusterError(.systemCall("epoll_wait"), errno: Glibc.errno, "the event loop cannot wait")
        }
    }

    static func eventFD() throws(ClusterError) -> Int32 {
        try retrying("eventfd") { eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK)) }
    }

    static func timerFD() throws(ClusterError) -> Int32 {
        try retrying("timerfd_create") { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC) | Int32(TFD_NONBLOCK)) }
    }

    /// Arms `timerFD` to fire once at `deadline`, monotonic nanoseconds.
    static func armTimer(_ timerFD: Int32, at deadline: UInt64) {
        var spec = itimerspec()
        // A zero it_value would disarm: the earliest time that is still a time.
        let when = max(deadline, 1)
        spec.it_value.tv_sec = Int(when / 1_000_000_000)
        spec.it_value.tv_nsec = Int(when % 1_000_000_000)
        _ = timerfd_settime(timerFD, Int32(TFD_TIMER_ABSTIME), &spec, nil)
    }

    static func listen(_ fd: Int32, backlog: Int32) throws(ClusterError) {
        _ = try retrying("listen") { Glibc.listen(fd, backlog) }
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
