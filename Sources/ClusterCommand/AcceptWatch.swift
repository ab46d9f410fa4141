import Foundation

/// Tells from /proc whether a program waits for connections on its listening sockets:
/// readiness "by accepting" for a program that says nothing. It is waiting when one of its
/// threads is blocked in accept on one of the sockets, or in epoll_wait on an epoll set
/// that holds one (Node, Go, Rust, nginx, SwiftNIO), or in poll or select (Python's
/// socketserver; the descriptors are not visible, so this counts as waiting).
///
/// /proc/PID/task/TID/syscall needs ptrace access, which a parent has unless the kernel
/// forbids ptrace outright; `isReadable` says whether it works here.
struct AcceptWatch {
    let pid: Int32
    /// The listening sockets' inodes ("socket:[INODE]").
    let sockets: Set<String>

    /// Watches `pid`, whose listening sockets are this process's `descriptors` too.
    init(pid: Int32, descriptors: [Int32]) {
        self.pid = pid
        sockets = Set(descriptors.compactMap { Self.link(getpid(), $0) })
    }

    #if arch(x86_64)
    static let accepts: Set<Int> = [43, 288] // accept, accept4
    static let epollWaits: Set<Int> = [232, 281, 441] // epoll_wait, epoll_pwait, epoll_pwait2
    static let polls: Set<Int> = [7, 23, 270, 271] // poll, select, pselect6, ppoll
    #elseif arch(arm64)
    static let accepts: Set<Int> = [202, 242]
    static let epollWaits: Set<Int> = [22, 441]
    static let polls: Set<Int> = [72, 73]
    #else
    static let accepts: Set<Int> = []
    static let epollWaits: Set<Int> = []
    static let polls: Set<Int> = []
    #endif

    /// Whether this process can read the program's blocked system calls.
    var isReadable: Bool {
        !sockets.isEmpty && !Self.accepts.isEmpty && (try? String(contentsOfFile: "/proc/\(pid)/syscall", encoding: .utf8)) != nil
    }

    /// True when a thread of the program waits for connections on a listening socket.
    func isAccepting() -> Bool {
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return false }
        for thread in threads {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(thread)/syscall", encoding: .utf8) else { continue }
            let fields = text.split(separator: " ")
            // "NUMBER ARG1 ...": the first argument is a descriptor or, for poll, a pointer.
            guard fields.count >= 2, let number = Int(fields[0]) else { continue }
            if Self.polls.contains(number) { return true }
            guard let first = UInt64(fields[1].dropFirst(2), radix: 16), let fd = Int32(exactly: first) else { continue }
            if Self.accepts.contains(number), let socket = Self.link(pid, fd), sockets.contains(socket) { return true }
            if Self.epollWaits.contains(number), watches(epoll: fd) { return true }
        }
        return false
    }

    /// Whether the epoll set at descriptor `epoll` holds a listening socket.
    private func watches(epoll: Int32) -> Bool {
        guard let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(epoll)", encoding: .utf8) else { return false }
        for line in info.split(separator: "\n") where line.hasPrefix("tfd:") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if fields.count >= 2, let fd = Int32(fields[1]), let socket = Self.link(pid, fd), sockets.contains(socket) { return true }
        }
        return false
    }

    private static func link(_ pid: Int32, _ fd: Int32) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")
    }
}
