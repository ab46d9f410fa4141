import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// Listening sockets: the primary binds them once; workers accept on what they inherit.
enum Socket {
    /// The backlog the primary keeps on its listeners (the kernel caps it at somaxconn).
    static let backlog: Int32 = 4096

    /// Binds and listens on `address`; returns the descriptor (close-on-exec, non-blocking:
    /// every worker shares its file status, and each must see EAGAIN when another process
    /// took the connection) and the address actually bound.
    /// With `reusePort`, the socket joins the `SO_REUSEPORT` group of every socket bound to
    /// the same TCP address (the kernel spreads connections over the group).
    static func listen(_ address: ListenAddress, reusePort: Bool = false) throws(ClusterError) -> (fd: Int32, bound: ListenAddress) {
        switch address.kind {
        case .tcp(let host, let port): return try listenTCP(host: host, port: port, address: address, reusePort: reusePort)
        case .unix(let path):
            guard !reusePort else {
                throw ClusterError(.invalidConfiguration, "reusePort needs a TCP listener, and \(address) is a Unix-domain socket; use shared or roundRobin for it")
            }
            return try listenUnix(path: path, address: address)
        }
    }

    /// The address bytes of `peer` without the port: the key sticky routing hashes. Empty
    /// for a Unix-domain client, which has no address.
    static func peerKey(_ peer: sockaddr_storage) -> [UInt8] {
        var peer = peer
        switch Int32(peer.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &peer) { raw in Array(raw[4..<8]) } // sin_addr
        case AF_INET6:
            return withUnsafeBytes(of: &peer) { raw in Array(raw[8..<24]) } // sin6_addr
        default:
            return []
        }
    }

    private static func listenTCP(host: String, port: Int, address: ListenAddress, reusePort: Bool) throws(ClusterError) -> (fd: Int32, bound: ListenAddress) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw ClusterError(.invalidAddress, "cannot resolve '\(host)' for \(address): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        let fd = try Syscall.retrying("socket") {
            socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(ClusterError) {
            var one: Int32 = 1
            _ = try Syscall.retrying("setsockopt(SO_REUSEADDR)") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if reusePort {
                _ = try Syscall.retrying("setsockopt(SO_REUSEPORT)") {
                    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
                }
            }
            let bound = bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if bound != 0 {
                let error = errno
                throw ClusterError(.invalidAddress, errno: error, "cannot bind \(address)" +
                    (error == EADDRINUSE ? "; another process listens there: stop it or choose another port" : ""))
            }
            try Syscall.listen(fd, backlog: backlog)
            try Syscall.setNonBlocking(fd)
            return (fd, .tcp(host: host, port: try boundPort(fd)))
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    private static func boundPort(_ fd: Int32) throws(ClusterError) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(ClusterError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(ClusterError) in
                try Syscall.retrying("getsockname") { getsockname(fd, address, &length) }
            }
        }
        let family = Int32(storage.ss_family)
        let port: UInt16 = withUnsafePointer(to: &storage) { pointer in
            if family == AF_INET6 {
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port }
            } else {
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port }
            }
        }
        return Int(UInt16(bigEndian: port))
    }

    private static func listenUnix(path: String, address: ListenAddress) throws(ClusterError) -> (fd: Int32, bound: ListenAddress) {
        var unixAddress = sockaddr_un()
        unixAddress.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: unixAddress.sun_path)
        guard path.utf8.count < capacity else {
            throw ClusterError(.invalidAddress, "the socket path '\(path)' is longer than \(capacity - 1) bytes; choose a shorter one")
        }
        withUnsafeMutableBytes(of: &unixAddress.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        // A socket file left by an earlier run would make bind fail; anything else is kept.
        var info = stat()
        if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let fd = try Syscall.retrying("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(ClusterError) {
            let bound = withUnsafePointer(to: &unixAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if bound != 0 { throw ClusterError(.invalidAddress, errno: errno, "cannot bind \(address)") }
            try Syscall.listen(fd, backlog: backlog)
            try Syscall.setNonBlocking(fd)
            return (fd, address)
        } catch {
            Syscall.close(fd)
            throw error
        }
    }
}
