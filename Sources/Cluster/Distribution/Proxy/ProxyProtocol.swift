/// The PROXY protocol a listener expects at the start of each connection, as a load
/// balancer in front sends it (HAProxy's `send-proxy` for ``v1``, `send-proxy-v2` for
/// ``v2``): a header that names the client the balancer accepted, before the client's
/// own bytes. Written `?proxy=v1` or `?proxy=v2` after a ``ListenAddress``.
///
/// A connection whose header is missing, malformed, or not complete within
/// ``headerTimeout`` is closed; the listener goes on. Each version accepts only its own
/// header. See `Sources/Cluster/Cluster.docc/ProxyProtocolHeaders.md`.
public struct ProxyProtocol: Hashable, Sendable, CustomStringConvertible {
    enum Version: String, Hashable, Sendable {
        case v1, v2
    }
    let version: Version

    /// The text header: `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, at most 107 bytes.
    public static let v1 = ProxyProtocol(version: .v1)
    /// The binary header: a 12-byte signature, 4 bytes of command, family and length,
    /// the addresses and TLVs; at most ``ProxyHeader/maximumLength`` bytes in all.
    public static let v2 = ProxyProtocol(version: .v2)

    /// How long a connection may take to send its whole header before it is closed: 5 s.
    /// A balancer sends the header in its first packet, so only a stalled or hostile
    /// sender waits this long.
    public static let headerTimeout: Duration = .seconds(5)

    /// How many connections of one listener may wait for their header at once, in one
    /// process; beyond it a new connection is closed at once (a warning says so, once a
    /// minute at most).
    public static let waitingLimit = 256

    /// Reads `v1` or `v2`.
    public init(parsing name: some StringProtocol) throws(ClusterError) {
        guard let version = Version(rawValue: String(name)) else {
            throw ClusterError(.invalidAddress, "'\(name)' is no PROXY protocol version; write proxy=v1 or proxy=v2")
        }
        self.version = version
    }

    private init(version: Version) { self.version = version }

    public var description: String { version.rawValue }
}
