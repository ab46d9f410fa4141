import Foundation
import Glibc
import Synchronization

/// A service manager's end of sd_notify(3), as systemd keeps it: a Unix-domain datagram
/// socket that reads each message with its sender's pid (SO_PASSCRED), so a test can check
/// who said what, in which order.
final class NotifySocket: Sendable {
    struct Message: Sendable, CustomStringConvertible {
        let pid: Int32
        let lines: [String]
        func has(_ line: String) -> Bool { lines.contains(line) }
        func value(_ key: String) -> String? { lines.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) } }
        var description: String { "\(pid): \(lines.joined(separator: " "))" }
    }

    let path: String
    private let fd: Int32
    private final class Inbox: Sendable { let messages = Mutex<[Message]>([]) }
    private let inbox = Inbox()

    init() throws {
        path = NSTemporaryDirectory() + "notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        var one: Int32 = 1
        let ready = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, socklen_t(MemoryLayout<Int32>.size)) == 0
            && withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 } }
        guard ready else {
            close(fd)
            throw TestFailure.unexpected("cannot make a notify socket at \(path): errno \(errno)")
        }
        let (socket, inbox) = (fd, inbox)
        Thread.detachNewThread {
            while let message = Self.receive(socket) { inbox.messages.withLock { $0.append(message) } }
        }
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }

    /// Every message so far, in arrival order.
    var messages: [Message] { inbox.messages.withLock { $0 } }

    /// The first message after the first `after` ones that satisfies `matches`, waiting up to `timeout`.
    func wait(after: Int = 0, timeout: Duration = .seconds(30), for what: String,
              _ matches: @escaping (Message) -> Bool) async throws -> (index: Int, message: Message) {
        try await eventually(timeout: timeout) { () throws -> (Int, Message) in
            let all = messages
            guard let index = all.indices.dropFirst(after).first(where: { matches(all[$0]) }) else {
                throw TestFailure.unexpected("no \(what) among \(all)")
            }
            return (index, all[index])
        }
    }

    private static func receive(_ fd: Int32) -> Message? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var control = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &vector) { vector in
                    var header = msghdr()
                    header.msg_iov = vector
                    header.msg_iovlen = 1
                    header.msg_control = controlBytes.baseAddress
                    header.msg_controllen = controlBytes.count
                    let count = recvmsg(fd, &header, 0)
                    return (count, header.msg_controllen)
                }
            }
        }
        guard count.0 > 0 else { return nil }
        // struct cmsghdr { size_t len; int level; int type; } then struct ucred { pid, uid, gid }.
        let pid: Int32 = count.1 >= 16 + 4 ? control.withUnsafeBytes { $0.load(fromByteOffset: 16, as: Int32.self) } : 0
        let text = String(decoding: buffer[..<count.0], as: UTF8.self)
        return Message(pid: pid, lines: text.split(separator: "\n").map(String.init))
    }
}
