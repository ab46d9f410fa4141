import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// The processes below one process, read from /proc: what a worker counts as itself (its
/// CPU time and memory) and what must end with it.
///
/// The tree is read from `/proc/PID/task/TID/children`, or, on a kernel built without
/// it, from every process's parent in `/proc/PID/stat`. It is a snapshot: a process may
/// start or end while it is read, so callers that must leave nothing behind repeat
/// (``killDescendants(of:within:)``).
package enum ProcessTree {
    /// The most processes one tree is read to: a fork bomb below a worker must not make
    /// the worker's heartbeat unbounded.
    package static let limit = 4096

    /// Every process below `root`, parents before their children, at most ``limit``.
    package static func descendants(of root: Int32) -> [Int32] {
        guard hasChildrenFiles else { return descendantsByScanning(root) }
        var found: [Int32] = []
        var seen: Set<Int32> = [root]
        var next = 0
        var parent = root
        while true {
            for child in children(of: parent) where found.count < limit && seen.insert(child).inserted {
                found.append(child)
            }
            guard next < found.count else { return found }
            parent = found[next]
            next += 1
        }
    }

    /// The direct children of `pid`, from each of its threads' `children` file.
    package static func children(of pid: Int32) -> [Int32] {
        var children: [Int32] = []
        for thread in Proc.entries("/proc/\(pid)/task") {
            let limit = 65_536
            guard let text = Proc.read("/proc/\(pid)/task/\(thread)/children", limit: limit) else { continue }
            var pids = text.split(separator: " ")
            if text.utf8.count == limit { pids = pids.dropLast() } // a cut number is no pid
            children += pids.compactMap { Int32($0.trimmingSpaces) }
        }
        return children
    }

    /// CPU time of `pid` in microseconds, its own and that of the children it has reaped
    /// (`utime + stime + cutime + cstime`), and its resident memory in bytes; nil when
    /// the process is gone. Summed over a tree, no process counts twice: a child's time
    /// joins its parent's only once the parent reaps it, and then the child is no longer
    /// in the tree.
    package static func usage(of pid: Int32) -> (cpuMicroseconds: Int, residentBytes: Int)? {
        guard let stat = Proc.read("/proc/\(pid)/stat", limit: 1024), let fields = Proc.statFields(stat), fields.count > 21 else { return nil }
        // Fields after the command, from "state" (field 3): utime is field 14, cstime 17, rss 24.
        let ticks = fields[11...14].compactMap { Int($0) }.reduce(0) { $0.addingSaturated($1) }
        let hertz = max(1, sysconf(Int32(_SC_CLK_TCK)))
        let pages = Int(fields[21]) ?? 0
        let (cpu, overflow) = ticks.multipliedReportingOverflow(by: 1_000_000 / hertz)
        return (overflow ? .max : cpu, max(0, pages).multipliedReportingOverflow(by: Int(getpagesize())).partialValue)
    }

    /// Sends SIGKILL to every process below `root` and reaps those that become its
    /// children, until none is left or `within` has passed; returns how many it killed.
    /// `root` should be a child subreaper (`PR_SET_CHILD_SUBREAPER`): then every orphan
    /// below it becomes its child, and nothing escapes by its parent dying first.
    @discardableResult
    package static func killDescendants(of root: Int32, within: Duration = .seconds(5)) -> Int {
        let deadline = ContinuousClock.now + within
        var killed = Set<Int32>()
        while true {
            let below = descendants(of: root)
            for pid in below where kill(pid, SIGKILL) == 0 { killed.insert(pid) }
            if root == getpid() { reapChildren() }
            if below.isEmpty || ContinuousClock.now >= deadline { return killed.count }
            usleep(2_000)
        }
    }

    /// Reaps every child of this process that has ended, without waiting.
    package static func reapChildren() {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
    }

    /// Whether this kernel has `/proc/PID/task/TID/children` (CONFIG_PROC_CHILDREN).
    private static let hasChildrenFiles: Bool = access("/proc/self/task/\(getpid())/children", R_OK) == 0

    private static func descendantsByScanning(_ root: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for entry in Proc.entries("/proc") {
            guard let pid = Int32(entry), let stat = Proc.read("/proc/\(pid)/stat", limit: 1024),
                  let fields = Proc.statFields(stat), fields.count > 1, let parent = Int32(fields[1]) else { continue }
            children[parent, default: []].append(pid)
        }
        var found: [Int32] = []
        var next = 0
        var parent = root
        while true {
            for child in children[parent] ?? [] where found.count < limit && child != root { found.append(child) }
            guard next < found.count else { return found }
            parent = found[next]
            next += 1
        }
    }
}

/// Small readers of /proc files.
package enum Proc {
    /// A /proc file's text (at most `limit` bytes), or nil when it cannot be read.
    package static func read(_ path: String, limit: Int = 65_536) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var count = 0
        while count < limit {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, limit - count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            count += n
        }
        return String(decoding: bytes[0..<count], as: UTF8.self)
    }

    /// The names in a /proc directory, "." and ".." left out.
    package static func entries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The fields of a `/proc/PID/stat` line after the command name (which may hold
    /// spaces and parentheses): element 0 is the state, 1 the parent's pid, and so on.
    package static func statFields(_ line: String) -> [Substring]? {
        guard let end = line.lastIndex(of: ")") else { return nil }
        return line[line.index(after: end)...].split(separator: " ")
    }

    /// The inode of the socket that `/proc/PID/fd/FD` points to, or nil for anything else.
    package static func socketInode(_ pid: Int32, _ fd: Int32) -> UInt64? {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = readlink("/proc/\(pid)/fd/\(fd)", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let link = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard link.hasPrefix("socket:["), link.hasSuffix("]") else { return nil }
        return UInt64(link.dropFirst(8).dropLast())
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var text = self
        while text.last?.isWhitespace == true { text.removeLast() }
        while text.first?.isWhitespace == true { text.removeFirst() }
        return text
    }
}
