/// Where a listener accepts connections: a TCP host and port, or a Unix-domain socket path.
///
/// Written as `tcp://HOST:PORT` (`tcp://[::1]:8000` for IPv6) or `unix:PATH`.
public struct ListenAddress: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        case tcp(host: String, port: Int)
        case unix(path: String)
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

    /// Parses `tcp://HOST:PORT`, `HOST:PORT`, `:PORT` or `unix:PATH`.
    public init(parsing text: String) throws(ClusterError) {
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

    /// The TCP host, or nil for a Unix-domain socket.
    public var host: String? { if case .tcp(let host, _) = kind { host } else { nil } }

    /// The Unix-domain socket's path, or nil for TCP.
    public var path: String? { if case .unix(let path) = kind { path } else { nil } }

    /// The TCP port, or nil for a Unix-domain socket.
    public var port: Int? { if case .tcp(_, let port) = kind { port } else { nil } }

    public var description: String {
        switch kind {
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}
