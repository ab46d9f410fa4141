import CClusterShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Tells the service manager how the primary is doing (sd_notify(3)): one datagram of
/// `KEY=VALUE` lines to the Unix-domain socket named in `NOTIFY_SOCKET` (a path, or an
/// abstract name written with a leading `@`). Without the variable it sends nothing.
///
/// Best effort, never blocking: a full or missing socket loses that message, and the first
/// failure is logged once. The variable is read at startup and removed from the
/// environment (`cluster_startup_env`), so workers and their programs do not speak for
/// the service; a hot upgrade's new primary is given it back (it says `MAINPID=`).
package final class ServiceNotifier: Sendable {
    /// This process's, from `NOTIFY_SOCKET` at startup.
    package static let shared = ServiceNotifier(socketPath: cluster_startup_env("NOTIFY_SOCKET").map { String(cString: $0) })

    /// The socket's address as `NOTIFY_SOCKET` gives it, or nil.
    let socketPath: String?
    private let failed = Mutex(false)
    private let logger = Logger(label: "cluster.notify")

    init(socketPath: String?) {
        self.socketPath = socketPath.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Sends `lines` as one message; returns whether the socket took it.
    @discardableResult
    func send(_ lines: [String]) -> Bool {
        guard let socketPath, !lines.isEmpty else { return false }
        let message = lines.joined(separator: "\n") + "\n"
        let error = Self.sendDatagram(Array(message.utf8), to: socketPath)
        if let error, !failed.withLock({ (failed: inout Bool) -> Bool in
            defer { failed = true }
            return failed
        }) {
            logger.warning("cannot notify the service manager at \(socketPath): \(String(cString: strerror(error))); its view of this service may lag (later failures are not logged)")
        }
        return error == nil
    }

    /// Sends `bytes` to the datagram socket at `path`; the errno on failure.
    private static func sendDatagram(_ bytes: [UInt8], to path: String) -> Int32? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name = Array(path.utf8)
        guard name.count < MemoryLayout.size(ofValue: address.sun_path) else { return ENAMETOOLONG }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: name)
            if name.first == UInt8(ascii: "@") { raw[0] = 0 } // abstract namespace
        }
        // An abstract name's length counts exactly its bytes; a path's, its terminating NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count + (name.first == UInt8(ascii: "@") ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { Syscall.close(fd) }
        let sent = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL), $0, length)
                }
            }
        }
        return sent == bytes.count ? nil : (sent < 0 ? errno : EMSGSIZE)
    }
}
