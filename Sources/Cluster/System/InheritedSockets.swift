import CClusterShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The listening sockets a service manager passed to the primary (sd_listen_fds(3)): a
/// systemd `.socket` unit, `systemd-socket-activate`, or any parent that sets `LISTEN_FDS`
/// (the count, descriptors from 3), `LISTEN_PID` (this process, or the variables are
/// someone else's) and `LISTEN_FDNAMES` (colon-separated names, `unknown` when unnamed).
///
/// `--listen fd://3` or `--listen fd:NAME` (``ListenAddress/inherited(descriptor:)``,
/// ``ListenAddress/inherited(named:)``) takes one; each is taken once. The variables are
/// read at startup and removed (see `cluster_startup_env`), and every passed descriptor is
/// made close-on-exec at once, so no worker inherits one it was not granted.
final class InheritedSockets: Sendable {
    /// This process's, from its startup environment.
    static let shared = InheritedSockets(
        pid: getpid(),
        listenPID: startupValue("LISTEN_PID"),
        count: startupValue("LISTEN_FDS"),
        names: startupValue("LISTEN_FDNAMES"))

    /// The first passed descriptor, by the protocol.
    static let first: Int32 = 3
    /// More than this many is taken for a malformed `LISTEN_FDS` (systemd allows a few
    /// hundred per unit).
    static let maximum = 1024

    /// The passed descriptors and their names; nil when none were passed to this process.
    let passed: [(descriptor: Int32, name: String)]
    /// Why `LISTEN_FDS` was ignored, when it was set but not for this process or malformed.
    let ignored: String?
    private let taken = Mutex<Set<Int32>>([])

    init(pid: Int32, listenPID: String?, count: String?, names: String?) {
        guard let count else {
            (passed, ignored) = ([], nil)
            return
        }
        guard let listenPID, Int32(listenPID) == pid else {
            (passed, ignored) = ([], "LISTEN_FDS is set, but LISTEN_PID (\(listenPID ?? "unset")) is not this process (\(pid))")
            return
        }
        guard let number = Int(count), (0...Self.maximum).contains(number) else {
            (passed, ignored) = ([], "LISTEN_FDS is '\(count)', not a count of descriptors (0-\(Self.maximum))")
            return
        }
        let given = names.map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        passed = (0..<number).map { index in
            (Self.first + Int32(index), index < given.count && !given[index].isEmpty ? given[index] : "unknown")
        }
        ignored = nil
    }

    /// Marks every passed descriptor close-on-exec. Called once when the primary starts,
    /// before it spawns anything.
    func protect() {
        for (descriptor, _) in passed { try? Syscall.setCloseOnExec(descriptor) }
    }

    /// Takes the passed socket `socket` names: checks it is a listening stream socket and
    /// makes it non-blocking. Returns it with the address it is bound to.
    func take(_ socket: ListenAddress.InheritedSocket, for address: ListenAddress) throws(ClusterError) -> (fd: Int32, bound: ListenAddress) {
        let descriptor = try find(socket, for: address)
        try taken.withLock { taken throws(ClusterError) in
            guard taken.insert(descriptor).inserted else {
                throw ClusterError(.invalidConfiguration, "\(address) is descriptor \(descriptor), which another listener already uses; list each inherited socket once")
            }
        }
        do throws(ClusterError) {
            var bound = try Socket.describeListening(descriptor, for: address)
            bound.proxyProtocol = address.proxyProtocol
            try Syscall.setNonBlocking(descriptor)
            return (descriptor, bound)
        } catch {
            _ = taken.withLock { $0.remove(descriptor) }
            throw error
        }
    }

    private func find(_ socket: ListenAddress.InheritedSocket, for address: ListenAddress) throws(ClusterError) -> Int32 {
        guard !passed.isEmpty else {
            throw ClusterError(.invalidAddress, "\(address): no sockets were passed to this process" +
                (ignored.map { " (\($0))" } ?? " (LISTEN_FDS is not set)") +
                "; start it from a systemd .socket unit or systemd-socket-activate, or listen on tcp://HOST:PORT")
        }
        switch socket {
        case .descriptor(let descriptor):
            guard passed.contains(where: { $0.descriptor == descriptor }) else {
                throw ClusterError(.invalidAddress, "\(address): the service manager passed descriptors \(Self.first) to \(Self.first + Int32(passed.count) - 1), not \(descriptor)")
            }
            return descriptor
        case .name(let name):
            let matches = passed.filter { $0.name == name }
            guard let match = matches.first else {
                throw ClusterError(.invalidAddress, "\(address): no passed socket is named '\(name)' (LISTEN_FDNAMES: \(passed.map(\.name).joined(separator: ":"))); set FileDescriptorName=\(name) in the .socket unit, or use fd://N")
            }
            guard matches.count == 1 else {
                throw ClusterError(.invalidAddress, "\(address): \(matches.count) passed sockets are named '\(name)' (descriptors \(matches.map { String($0.descriptor) }.joined(separator: ", "))); use fd://N for each")
            }
            return match.descriptor
        }
    }

    private static func startupValue(_ name: String) -> String? {
        cluster_startup_env(name).map { String(cString: $0) }
    }
}
