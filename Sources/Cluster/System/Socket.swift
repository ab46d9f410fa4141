import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// Listening sockets: the primary binds them once; workers accept on what they inherit.
package enum Socket {
    /// The backlog the primary keeps on its listeners (the kernel caps it at somaxconn).
    static let backlog: Int32 = 4096

    /// Binds and listens on `address`; returns the descriptor (close-on-exec, non-blocking:
    /// every worker shares its file status, and each must see EAGAIN when another process
    /// took the connection) and the address actually bound.
    /// With `reusePort`, the socket joins the `SO_REUSEPORT` group of every socket bound to
    /// the same TCP address (the kernel spreads connections over the group).
    static func listen(_ address: ListenAddress, reusePort: Bool = false) throws(ClusterError) -> (fd: Int32, bound: ListenAddress) {
        // Every failure names the address (Node's err.address and err.port).
        do throws(ClusterError) {
            switch address.kind {
            case .tcp(let host, let port): return try listenTCP(host: host, port: port, address: address, reusePort: reusePort)
            case .unix(let path):
                guard !reusePort else {
                    throw ClusterError(.invalidConfiguration, "reusePort needs a TCP listener, and \(address) is a Unix-domain socket; use shared or roundRobin for it")
                }
                return try listenUnix(path: path, address: address)
            case .inherited:
                throw ClusterError(.invalidConfiguration, "\(address) is a socket the service manager passed; it is taken, not bound")
            }
        } catch {
            throw error.about(address)
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
            throw ClusterError(.invalidAddress, systemCall: "getaddrinfo", "cannot resolve '\(host)' for \(address): \(String(cString: gai_strerror(status)))")
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
                throw ClusterError(.invalidAddress, errno: error, systemCall: "bind", address: address, "cannot bind \(address)" +
                    (error == EADDRINUSE ? "; another process listens there: stop it or choose another port" : ""))
            }
            try Syscall.listen(fd, backlog: backlog)
            try Syscall.setNonBlocking(fd)
            return (fd, .tcp(host: host, port: try boundPort(fd), proxyProtocol: address.proxyProtocol))
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
        var unixAddress = try socketAddress(path)
        try removeStaleSocket(at: path, for: "the listener \(address)")
        let fd = try Syscall.retrying("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(ClusterError) {
            let bound = withUnsafePointer(to: &unixAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if bound != 0 {
                let error = errno
                throw ClusterError(.invalidAddress, errno: error, systemCall: "bind", address: address, "cannot bind \(address)" +
                    (error == EADDRINUSE ? "; something was created at \(path) meanwhile: remove it or choose another path" : ""))
            }
            try Syscall.listen(fd, backlog: backlog)
            try Syscall.setNonBlocking(fd)
            return (fd, address)
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    private static func socketAddress(_ path: String) throws(ClusterError) -> sockaddr_un {
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
        return unixAddress
    }

    /// Makes `path` free for a Unix-domain socket to bind, removing only a stale socket: a
    /// socket file nobody accepts on (connect is refused), left by a process that is gone.
    /// Nothing at `path` is fine. A live socket (another service's), a regular file, a
    /// directory, a symbolic link or anything else is left as it is and is an error that
    /// says what is there; `purpose` names what the path was asked for, in that error.
    package static func removeStaleSocket(at path: String, for purpose: String) throws(ClusterError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let error = errno
            if error == ENOENT { return }
            throw ClusterError(.invalidAddress, errno: error, "cannot look at \(path) for \(purpose); choose a path in a directory you can search and write")
        }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK:
            break
        case S_IFREG:
            throw ClusterError(.invalidAddress, "\(path) is a regular file, not a socket; it is left as it is, so \(purpose) cannot use that path: remove the file yourself or choose another path")
        case S_IFDIR:
            throw ClusterError(.invalidAddress, "\(path) is a directory; \(purpose) needs the path of a socket file in it, such as \(path)/cluster.sock")
        case S_IFLNK:
            throw ClusterError(.invalidAddress, "\(path) is a symbolic link; it is left as it is, so \(purpose) cannot use that path: give the path it points to or another one")
        default:
            throw ClusterError(.invalidAddress, "\(path) is a special file (a FIFO or a device), not a socket; it is left as it is: choose another path for \(purpose)")
        }
        var unixAddress = try socketAddress(path)
        // Non-blocking: a live server with a full backlog answers EAGAIN at once, not later.
        let probe = try Syscall.retrying("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        var connected: Int32
        repeat {
            connected = withUnsafePointer(to: &unixAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        } while connected != 0 && errno == EINTR
        let error = connected == 0 ? 0 : errno
        Syscall.close(probe)
        switch error {
        case ECONNREFUSED:
            // Stale: whoever bound it is gone. Removing it is what lets a restart bind again.
            if unlink(path) != 0 && errno != ENOENT {
                let error = errno
                throw ClusterError(.invalidAddress, errno: error, "cannot remove the stale socket \(path) for \(purpose); remove it yourself or choose another path")
            }
        case ENOENT:
            return // removed meanwhile: the path is free
        case 0, EAGAIN, EINPROGRESS:
            throw ClusterError(.invalidAddress, "a process is listening on the socket \(path); it is left as it is, so \(purpose) cannot take that path: stop that process or choose another path")
        default:
            throw ClusterError(.invalidAddress, errno: error, "cannot tell whether a process listens on the socket \(path), so it is left as it is; remove it yourself if it is stale, or choose another path for \(purpose)")
        }
    }
}
