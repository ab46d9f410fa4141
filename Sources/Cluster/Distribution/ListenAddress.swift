/// Where a listener accepts connections: a TCP host and port, a Unix-domain socket path,
/// or a listening socket the primary inherited from its service manager.
///
/// Written as `tcp://HOST:PORT` (`tcp://[::1]:8000` for IPv6), `unix:PATH`, `fd://N` (the
/// inherited descriptor N) or `fd:NAME` (the inherited socket systemd names NAME), with
/// `?proxy=v1` or `?proxy=v2` after it when a load balancer in front sends the PROXY
/// protocol (``proxyProtocol``).
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

    /// The PROXY protocol header every connection starts with, or nil (the default) when
    /// clients connect directly. With it, each connection's header is read before the
    /// connection reaches a handler, ``AcceptedConnection/clientAddress`` is the client it
    /// names, and `sticky` routes by that client. A connection without a valid header is
    /// closed. Part of the address: a listener is found by address and proxy setting.
    public var proxyProtocol: ProxyProtocol?

    init(kind: Kind, proxyProtocol: ProxyProtocol? = nil) {
        self.kind = kind
        self.proxyProtocol = proxyProtocol
    }

    /// A TCP listener; the default host accepts on every IPv4 address. Port 0 lets the
    /// primary choose one port that every worker then shares. `proxyProtocol`: the
    /// header a load balancer in front sends first (``proxyProtocol``).
    public static func tcp(host: String = "0.0.0.0", port: Int, proxyProtocol: ProxyProtocol? = nil) -> ListenAddress {
        ListenAddress(kind: .tcp(host: host, port: port), proxyProtocol: proxyProtocol)
    }

    /// A Unix-domain stream listener at `path`; `proxyProtocol` as for ``tcp(host:port:proxyProtocol:)``.
    public static func unix(_ path: String, proxyProtocol: ProxyProtocol? = nil) -> ListenAddress {
        ListenAddress(kind: .unix(path: path), proxyProtocol: proxyProtocol)
    }

    /// The listening socket the primary inherited as `descriptor` from its service manager
    /// (a systemd `.socket` unit or `systemd-socket-activate`: `LISTEN_FDS`, from 3);
    /// `proxyProtocol` as for ``tcp(host:port:proxyProtocol:)``.
    public static func inherited(descriptor: Int32, proxyProtocol: ProxyProtocol? = nil) -> ListenAddress {
        ListenAddress(kind: .inherited(.descriptor(descriptor)), proxyProtocol: proxyProtocol)
    }

    /// The listening socket the primary inherited from its service manager under `name`
    /// (`FileDescriptorName=` in a systemd `.socket` unit, listed in `LISTEN_FDNAMES`);
    /// `proxyProtocol` as for ``tcp(host:port:proxyProtocol:)``.
    public static func inherited(named name: String, proxyProtocol: ProxyProtocol? = nil) -> ListenAddress {
        ListenAddress(kind: .inherited(.name(name)), proxyProtocol: proxyProtocol)
    }

    /// Parses `tcp://HOST:PORT`, `HOST:PORT`, `:PORT`, `unix:PATH`, `fd://N` or `fd:NAME`,
    /// each optionally followed by `?proxy=v1` or `?proxy=v2`. (A Unix-domain path or a
    /// socket name cannot itself contain `?`.)
    public init(parsing text: String) throws(ClusterError) {
        guard let question = text.firstIndex(of: "?") else {
            try self.init(parsingAddress: text, written: text)
            return
        }
        try self.init(parsingAddress: String(text[..<question]), written: text)
        for option in text[text.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false) {
            let pair = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2, pair[0] == "proxy" else {
                throw ClusterError(.invalidAddress, "'\(text)' has an option '\(option)' that is not proxy=v1 or proxy=v2")
            }
            do throws(ClusterError) {
                proxyProtocol = try ProxyProtocol(parsing: pair[1])
            } catch {
                throw ClusterError(.invalidAddress, "'\(text)': \(error.context)")
            }
        }
    }

    /// `text` without its options; `written`, as the user wrote it, for the errors.
    private init(parsingAddress text: String, written: String) throws(ClusterError) {
        if text.hasPrefix("fd:") {
            self = try Self.inherited(parsing: text)
            return
        }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else {
                throw ClusterError(.invalidAddress, "'\(written)' has no path; write unix:/path/to/socket")
            }
            self = .unix(path)
            return
        }
        var rest = Substring(text)
        if rest.hasPrefix("tcp://") { rest = rest.dropFirst(6) }
        guard let colon = rest.lastIndex(of: ":") else {
            throw ClusterError(.invalidAddress, "'\(written)' has no port; write tcp://HOST:PORT or unix:PATH")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(rest[rest.index(after: colon)...]), (0...65535).contains(port) else {
            throw ClusterError(.invalidAddress, "'\(written)' has no valid port (0-65535)")
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

    /// The address as ``init(parsing:)`` reads it, `?proxy=` included.
    public var description: String {
        let address = switch kind {
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        case .inherited(.descriptor(let descriptor)): "fd://\(descriptor)"
        case .inherited(.name(let name)): "fd:\(name)"
        }
        return proxyProtocol.map { "\(address)?proxy=\($0)" } ?? address
    }
}
