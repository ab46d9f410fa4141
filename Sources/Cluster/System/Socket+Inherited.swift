import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

extension Socket {
    /// The address `fd` listens on, after checking that it is a listening stream socket:
    /// what a service manager passed must be one (`ListenStream=` in a `.socket` unit, not
    /// `ListenDatagram=`, and without `Accept=yes`). `address` names it in errors.
    static func describeListening(_ fd: Int32, for address: ListenAddress) throws(ClusterError) -> ListenAddress {
        let kind = "\(address) (descriptor \(fd))"
        guard try option(SO_TYPE, of: fd, kind) == Int32(SOCK_STREAM.rawValue) else {
            throw ClusterError(.invalidAddress, "\(kind) is not a stream socket; pass a ListenStream= socket")
        }
        guard try option(SO_ACCEPTCONN, of: fd, kind) == 1 else {
            throw ClusterError(.invalidAddress, "\(kind) is not listening; pass the listening socket itself (Accept=no in the .socket unit)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard status == 0 else {
            throw ClusterError(.invalidAddress, errno: errno, systemCall: "getsockname", "cannot read the address of \(kind)")
        }
        switch Int32(storage.ss_family) {
        case AF_INET, AF_INET6:
            guard let (host, port) = numericHost(storage, length: length) else {
                throw ClusterError(.invalidAddress, "cannot print the address of \(kind)")
            }
            return .tcp(host: host, port: port)
        case AF_UNIX:
            let path = withUnsafeBytes(of: &storage) { raw in
                raw.withMemoryRebound(to: sockaddr_un.self) { $0[0].sun_path }
            }
            let text = withUnsafeBytes(of: path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard !text.isEmpty else {
                throw ClusterError(.invalidAddress, "\(kind) is an unnamed or abstract Unix-domain socket; pass one bound to a path")
            }
            return .unix(text)
        default:
            throw ClusterError(.invalidAddress, "\(kind) is neither a TCP nor a Unix-domain socket (family \(storage.ss_family))")
        }
    }

    private static func option(_ name: Int32, of fd: Int32, _ kind: String) throws(ClusterError) -> Int32 {
        var value: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, name, &value, &size) == 0 else {
            let error = errno
            throw ClusterError(.invalidAddress, errno: error, systemCall: "getsockopt",
                               error == ENOTSOCK || error == EBADF ? "\(kind) is not an open socket; check the .socket unit or the descriptor number" : "cannot inspect \(kind)")
        }
        return value
    }

    /// The numeric host and the port of an IPv4 or IPv6 address.
    private static func numericHost(_ storage: sockaddr_storage, length: socklen_t) -> (String, Int)? {
        var storage = storage
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        func text(_ characters: [CChar]) -> String {
            String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        guard status == 0, let port = Int(text(service)) else { return nil }
        return (text(host), port)
    }
}
