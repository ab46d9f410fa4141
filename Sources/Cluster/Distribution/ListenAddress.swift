/// Where a listener accepts connections: a TCP host and port, a Unix-domain socket path,
/// or a listening socket the primary inherited from its service manager.
///
/// Written as `tcp://HOST:PORT` (`tcp://[::1]:8000` for IPv6), `unix:PATH`, `fd://N` (the
/// inherited descriptor N) or `fd:NAME` (the inherited socket systemd names NAME).
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        case tcp(host: String, port: Int)
        case unix(path: String)
        case inherited(InheritedSocket)
    }

    /// A socket passed by a service manager (sd_listen_fds(3)): by its descriptor or by the
    /// name `LISTEN_FDNAMES` gives it.
    enum InheritedSocket: Hashable, Sendable {
        case descriptor(Int32)
        case name(String)
    }
    let kind: Kind

    init(kind: Kind) { self.kind = kind }

    /// A TCP listener; the default host accepts on every IPv4 address. Port 0 lets the
    /// primary choose one port that every worker then shares.
    public static func tcp(host: String = "0.0.0.0", port: Int) -> ListenAddress {
        ListenAddress(kind: .tcp(host: host, port: port))
    }

    /// A Unix-domain stream listener at `path`.
    public static func unix(_ path: String) -> ListenAddress {
        ListenAddress(kind: .unix(path: path))
    }

    /// The listening socket the primary inherited as `descriptor` from its service manager
    /// (a systemd `.socket` unit or `systemd-socket-activate`: `LISTEN_FDS`, from 3).
    public static func inherited(descriptor: Int32) -> ListenAddress {
        ListenAddress(kind: .inherited(.descriptor(descriptor)))
    }

    /// The listening socket the primary inherited from its service manager under `name`
    /// (`FileDescriptorName=` in a systemd `.socket` unit, listed in `LISTEN_FDNAMES`).
    public static func inherited(named name: String) -> ListenAddress {
        ListenAddress(kind: .inherited(.name(name)))
    }

    /// Parses `tcp://HOST:PORT`, `HOST:PORT`, `:PORT`, `unix:PATH`, `fd://N` or `fd:NAME`.
    public init(parsing text: String) throws(ClusterError) {
        if text.hasPrefix("fd:") {
            self = try Self.inherited(parsing: text)
            return
        }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else {
                throw ClusterError(.invalidAddress, "'\(text)' has no path; write unix:/path/to/socket")
            }
            self = .unix(path)
            return
        }
        var rest = Substring(text)
        if rest.hasPrefix("tcp://") { rest = rest.dropFirst(6) }
        guard let colon = rest.lastIndex(of: ":") else {
            throw ClusterError(.invalidAddress, "'\(text)' has no port; write tcp://HOST:PORT or unix:PATH")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(rest[rest.index(after: colon)...]), (0...65535).contains(port) else {
            throw ClusterError(.invalidAddress, "'\(text)' has no valid port (0-65535)")
        }
        self = .tcp(host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    private static func inherited(parsing text: String) throws(ClusterError) -> ListenAddress {
        if text.hasPrefix("fd://") {
            guard let descriptor = Int32(text.dropFirst(5)), descriptor >= 3 else {
                throw ClusterError(.invalidAddress, "'\(text)' names no inherited descriptor; write fd://3 (service managers pass sockets from descriptor 3) or fd:NAME")
            }
            return .inherited(descriptor: descriptor)
        }
        let name = text.dropFirst(3)
        // systemd's rule for FileDescriptorName=: up to 255 printable ASCII characters, no colon.
        guard !name.isEmpty, name.count <= 255, name.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != ":" && ($0.asciiValue ?? 0) >= 0x21 }) else {
            throw ClusterError(.invalidAddress, "'\(text)' has no valid socket name; write fd:NAME with the name of FileDescriptorName= in the .socket unit, or fd://3")
        }
        return .inherited(named: String(name))
    }

    /// The TCP host, or nil for a Unix-domain socket or an inherited one.
    public var host: String? { if case .tcp(let host, _) = kind { host } else { nil } }

    /// The Unix-domain socket's path, or nil for TCP or an inherited socket.
    public var path: String? { if case .unix(let path) = kind { path } else { nil } }

    /// The TCP port, or nil for a Unix-domain socket or an inherited one.
    public var port: Int? { if case .tcp(_, let port) = kind { port } else { nil } }

    public var description: String {
        switch kind {
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        case .inherited(.descriptor(let descriptor)): "fd://\(descriptor)"
        case .inherited(.name(let name)): "fd:\(name)"
        }
    }
}
