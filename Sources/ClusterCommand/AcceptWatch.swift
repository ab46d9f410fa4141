import Cluster
import Foundation

/// Tells from /proc whether a program waits for connections on its listening sockets:
/// readiness "by accepting" for a program that says nothing.
///
/// It looks at every process below the worker (the program, the workers a master process
/// forks, and anything they left behind), and at every thread of each. The program is
/// accepting when one of them:
/// - is blocked in `accept` on one of the sockets;
/// - is blocked in `epoll_wait` on an epoll set that holds one (Node, Go, nginx, uvicorn,
///   SwiftNIO);
/// - is blocked in `poll` or `select` with one of the sockets among the descriptors it
///   waits to read (gunicorn's sync workers, Puma, Python's socketserver): the descriptor
///   set is read from the process's memory, so a master waiting on its own pipe does not
///   count;
/// - or holds a connection accepted from one (it is busy serving, so it is never seen
///   waiting while the queue is full).
///
/// The blocked calls come from `/proc/PID/task/TID/syscall` and the descriptor sets from
/// `/proc/PID/mem`; both need ptrace access, which a process has to its descendants unless
/// the kernel forbids ptrace outright; ``isReadable`` says whether it works here.
struct AcceptWatch {
    /// The process whose descendants are watched (this worker).
    let root: Int32
    /// The listening sockets' inodes.
    let sockets: Set<UInt64>
    /// The listening sockets' TCP ports, for connections accepted from them.
    let ports: Set<Int>
    /// The listening sockets' paths, for Unix connections accepted from them.
    let paths: Set<String>

    /// Watches the processes below this one, whose listening sockets are this process's
    /// `listeners` too.
    init(listeners: [Listener]) {
        root = getpid()
        sockets = Set(listeners.compactMap { $0.descriptor.flatMap { Proc.socketInode(getpid(), $0) } })
        ports = Set(listeners.compactMap(\.boundAddress.port))
        paths = Set(listeners.compactMap(\.boundAddress.path))
    }

    /// Whether this process can read the program's blocked system calls.
    func isReadable(program: Int32) -> Bool {
        !sockets.isEmpty && !Syscalls.accepts.isEmpty && Proc.read("/proc/\(program)/syscall") != nil
    }

    /// True when a process below this one waits for connections on a listening socket,
    /// or has accepted one.
    func isAccepting() -> Bool {
        let processes = ProcessTree.descendants(of: root)
        var held: Set<UInt64> = []
        for pid in processes {
            let descriptors = ourDescriptors(pid)
            guard !descriptors.ours.isEmpty || !descriptors.others.isEmpty else { continue }
            if !descriptors.ours.isEmpty, threadWaits(pid, on: descriptors.ours) { return true }
            held.formUnion(descriptors.others)
        }
        return holdsAcceptedConnection(held)
    }

    /// Which of `pid`'s descriptors are the listening sockets, and the inodes of its
    /// other sockets.
    private func ourDescriptors(_ pid: Int32) -> (ours: Set<Int32>, others: Set<UInt64>) {
        var ours: Set<Int32> = []
        var others: Set<UInt64> = []
        for entry in Proc.entries("/proc/\(pid)/fd").prefix(65_536) {
            guard let fd = Int32(entry), let inode = Proc.socketInode(pid, fd) else { continue }
            if sockets.contains(inode) { ours.insert(fd) } else { others.insert(inode) }
        }
        return (ours, others)
    }

    /// Whether a thread of `pid` is blocked waiting to accept on one of `descriptors`.
    private func threadWaits(_ pid: Int32, on descriptors: Set<Int32>) -> Bool {
        for thread in Proc.entries("/proc/\(pid)/task") {
            guard let text = Proc.read("/proc/\(pid)/task/\(thread)/syscall", limit: 512) else { continue }
            // "NUMBER ARG1 ARG2 ... SP PC" while blocked; "running" or "-1 ..." otherwise.
            let fields = text.split(separator: " ")
            guard fields.count >= 4, let number = Int(fields[0]) else { continue }
            let arguments = fields[1...3].map { UInt64($0.dropFirst(2), radix: 16) ?? 0 }
            switch Syscalls.kind(of: number) {
            case .accept:
                if let fd = Int32(exactly: arguments[0]), descriptors.contains(fd) { return true }
            case .epollWait:
                if let fd = Int32(exactly: arguments[0]), epoll(pid, fd, holdsAnyOf: descriptors) { return true }
            case .poll:
                if poll(pid, fds: arguments[0], count: arguments[1], readsAnyOf: descriptors) { return true }
            case .select:
                if select(pid, count: arguments[0], readSet: arguments[1], holdsAnyOf: descriptors) { return true }
            case nil:
                continue
            }
        }
        return false
    }

    /// Whether the epoll set at `pid`'s descriptor `epoll` watches one of the sockets.
    private func epoll(_ pid: Int32, _ epoll: Int32, holdsAnyOf descriptors: Set<Int32>) -> Bool {
        guard let info = Proc.read("/proc/\(pid)/fdinfo/\(epoll)") else { return false }
        // "tfd:        4 events:       19 data: ... pos:0 ino:2f6a sdev:9"
        for line in info.split(separator: "\n") where line.hasPrefix("tfd:") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if let inode = fields.first(where: { $0.hasPrefix("ino:") }).flatMap({ UInt64($0.dropFirst(4), radix: 16) }) {
                if sockets.contains(inode) { return true }
            } else if fields.count >= 2, let fd = Int32(fields[1]), descriptors.contains(fd) {
                return true
            }
        }
        return false
    }

    /// Whether the `count` `struct pollfd` at `fds` in `pid`'s memory ask to read one of
    /// `descriptors`.
    private func poll(_ pid: Int32, fds address: UInt64, count: UInt64, readsAnyOf descriptors: Set<Int32>) -> Bool {
        guard address != 0, count > 0 else { return false }
        guard let bytes = memory(pid, at: address, count: Int(min(count, 4096)) * 8) else { return false }
        for offset in stride(from: 0, to: bytes.count - 7, by: 8) {
            // struct pollfd { int fd; short events; short revents; }, little- or big-endian as we are.
            let fd = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Int32.self) }
            let events = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: Int16.self) }
            if descriptors.contains(fd), events & Int16(POLLIN) != 0 { return true }
        }
        return false
    }

    /// Whether the `fd_set` at `readSet` in `pid`'s memory, of `count` descriptors, holds
    /// one of `descriptors`.
    private func select(_ pid: Int32, count: UInt64, readSet address: UInt64, holdsAnyOf descriptors: Set<Int32>) -> Bool {
        guard address != 0, count > 0 else { return false }
        let wanted = descriptors.filter { UInt64($0) < count }
        guard let highest = wanted.max() else { return false }
        // An fd_set is an array of longs, bit N of the set in long N / 64 at bit N % 64.
        guard let bytes = memory(pid, at: address, count: (Int(highest) / 64 + 1) * 8) else { return false }
        return wanted.contains { fd in
            let word = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Int(fd) / 64 * 8, as: UInt64.self) }
            return word & (1 << UInt64(fd % 64)) != 0
        }
    }

    /// `count` bytes of `pid`'s memory at `address`, or nil when they cannot be read.
    private func memory(_ pid: Int32, at address: UInt64, count: Int) -> [UInt8]? {
        guard let offset = off_t(exactly: address) else { return nil }
        let fd = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, offset) }
        return read == count ? bytes : nil
    }

    /// Whether one of the sockets `held` (inodes) is a connection accepted from a
    /// listening socket: a TCP connection whose local port is one of ours, or a Unix
    /// connection under one of our paths.
    private func holdsAcceptedConnection(_ held: Set<UInt64>) -> Bool {
        guard !held.isEmpty else { return false }
        if !ports.isEmpty {
            for table in ["tcp", "tcp6"] {
                guard let text = Proc.read("/proc/\(root)/net/\(table)", limit: 4 << 20) else { continue }
                // "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode"
                for line in text.split(separator: "\n").dropFirst() {
                    let fields = line.split(separator: " ", maxSplits: 10)
                    guard fields.count >= 10, fields[3] == "01", let inode = UInt64(fields[9]), held.contains(inode),
                          let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) else { continue }
                    if ports.contains(port) { return true }
                }
            }
        }
        if !paths.isEmpty, let text = Proc.read("/proc/\(root)/net/unix", limit: 4 << 20) {
            // "Num RefCount Protocol Flags Type St Inode Path": an accepted socket bears the listener's path.
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", maxSplits: 7)
                guard fields.count == 8, fields[5] == "03", let inode = UInt64(fields[6]), held.contains(inode) else { continue }
                if paths.contains(String(fields[7].trimmingCharacters(in: .whitespaces))) { return true }
            }
        }
        return false
    }
}

/// The system calls a program waits for connections in, by number.
enum Syscalls {
    enum Kind { case accept, epollWait, poll, select }

    #if arch(x86_64)
    static let accepts: Set<Int> = [43, 288] // accept, accept4
    static let epollWaits: Set<Int> = [232, 281, 441] // epoll_wait, epoll_pwait, epoll_pwait2
    static let polls: Set<Int> = [7, 271] // poll, ppoll: (fds, nfds, ...)
    static let selects: Set<Int> = [23, 270] // select, pselect6: (nfds, readfds, ...)
    #elseif arch(arm64)
    static let accepts: Set<Int> = [202, 242]
    static let epollWaits: Set<Int> = [22, 441]
    static let polls: Set<Int> = [73]
    static let selects: Set<Int> = [72]
    #else
    static let accepts: Set<Int> = []
    static let epollWaits: Set<Int> = []
    static let polls: Set<Int> = []
    static let selects: Set<Int> = []
    #endif

    static func kind(of number: Int) -> Kind? {
        if accepts.contains(number) { return .accept }
        if epollWaits.contains(number) { return .epollWait }
        if polls.contains(number) { return .poll }
        if selects.contains(number) { return .select }
        return nil
    }
}
