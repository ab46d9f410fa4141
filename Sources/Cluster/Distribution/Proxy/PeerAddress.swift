#if canImport(Glibc)
import Glibc
#endif

/// The address of the other end of a connection: the client a PROXY protocol header
/// names, or the socket's own peer.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        /// 4 bytes, network order.
        case ipv4([UInt8], port: Int)
        /// 16 bytes, network order.
        case ipv6([UInt8], port: Int)
        case unix(path: String)
    }
    let kind: Kind

    init(kind: Kind) { self.kind = kind }

    /// The IP address as text (`192.0.2.1`, `2001:db8::1`), or nil for a Unix-domain peer.
    public var ipAddress: String? {
        switch kind {
        case .ipv4(let bytes, _): PeerAddress.text(bytes, family: AF_INET)
        case .ipv6(let bytes, _): PeerAddress.text(bytes, family: AF_INET6)
        case .unix: nil
        }
    }

    /// The TCP port, or nil for a Unix-domain peer.
    public var port: Int? {
        switch kind {
        case .ipv4(_, let port), .ipv6(_, let port): port
        case .unix: nil
        }
    }

    /// The socket path of a Unix-domain peer (often empty: clients rarely bind one).
    public var path: String? { if case .unix(let path) = kind { path } else { nil } }

    /// `192.0.2.1:56324`, `[2001:db8::1]:443` or `unix:PATH`.
    public var description: String {
        switch kind {
        case .ipv4: "\(ipAddress ?? ""):\(port ?? 0)"
        case .ipv6: "[\(ipAddress ?? "")]:\(port ?? 0)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// The bytes sticky routing hashes: the IP address without the port (a client's
    /// connections come from many ports), or a Unix-domain peer's path.
    var routingKey: [UInt8] {
        switch kind {
        case .ipv4(let bytes, _), .ipv6(let bytes, _): bytes
        case .unix(let path): Array(path.utf8)
        }
    }

    /// The address in `storage`, as `accept` or `getpeername` wrote it.
    init?(_ storage: sockaddr_storage) {
        var storage = storage
        let family = Int32(storage.ss_family)
        let kind: Kind? = withUnsafeBytes(of: &storage) { raw in
            switch family {
            case AF_INET:
                .ipv4(Array(raw[4..<8]), port: Int(raw[2]) << 8 | Int(raw[3]))
            case AF_INET6:
                .ipv6(Array(raw[8..<24]), port: Int(raw[2]) << 8 | Int(raw[3]))
            case AF_UNIX:
                .unix(path: String(decoding: raw[2..<MemoryLayout<sockaddr_un>.size].prefix { $0 != 0 }, as: UTF8.self))
            default:
                nil
            }
        }
        guard let kind else { return nil }
        self.kind = kind
    }

    /// The peer of the connected socket `fd`; nil when it has none the kernel can say.
    static func peer(of fd: Int32) -> PeerAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return status == 0 ? PeerAddress(storage) : nil
    }

    private static func text(_ bytes: [UInt8], family: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let written = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard written != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
