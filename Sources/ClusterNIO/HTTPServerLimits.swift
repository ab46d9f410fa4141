public import Cluster

/// What one HTTP/1.1 connection may cost a worker: how long a client may take to send a
/// request or to come back with the next one, and how large a request may be.
///
/// A client that goes past a limit gets an error response, when one still makes sense, and
/// the connection is closed at once: `431` for a head larger than ``maxHeaderBytes``, `413`
/// for a body larger than ``maxBodyBytes``, `408` when the head or the whole request is too
/// slow. An idle connection is closed without a response. `Sources/ClusterNIO/ClusterNIO.docc/HTTPLimits.md` lists every limit
/// with its default and what the server rejects.
public struct HTTPServerLimits: Sendable, Hashable {
    /// The longest a request's head (request line and header fields) may take to arrive,
    /// from its first byte. A slow client sending a byte at a time (slowloris) is answered
    /// `408` and closed. Default: 30 seconds.
    public var headerTimeout: Duration
    /// The longest an open connection may wait without a request: before the first one and
    /// between keep-alive requests. Closed without a response. Default: 60 seconds.
    public var idleTimeout: Duration
    /// The longest a whole request (head and body) may take to arrive, from its first byte.
    /// The responder's own time does not count. Default: 300 seconds.
    public var requestTimeout: Duration
    /// The largest request head, in bytes: request line and header lines, line ends
    /// included. Default: 16 KiB (as Node's `--max-http-header-size`).
    public var maxHeaderBytes: Int
    /// The largest request body, in bytes; the responder gets the body whole, so this is also
    /// what one request may make the worker buffer. Default: 1 MiB.
    public var maxBodyBytes: Int

    /// Limits with the defaults unless given.
    public init(
        headerTimeout: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(60),
        requestTimeout: Duration = .seconds(300),
        maxHeaderBytes: Int = 16 << 10,
        maxBodyBytes: Int = 1 << 20
    ) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }

    /// The defaults.
    public static let `default` = HTTPServerLimits()

    /// The defaults, each replaced by its environment variable when set:
    /// `HTTP_HEADER_TIMEOUT_MS`, `HTTP_IDLE_TIMEOUT_MS`, `HTTP_REQUEST_TIMEOUT_MS` (milliseconds),
    /// `HTTP_MAX_HEADER_BYTES` and `HTTP_MAX_BODY_BYTES`.
    ///
    /// - Throws: `ClusterError` (`invalidConfiguration`) naming the variable whose value
    ///   is not a whole number in range.
    public static func fromEnvironment() throws(ClusterError) -> HTTPServerLimits {
        let defaults = HTTPServerLimits.default
        func milliseconds(_ name: String, _ value: Duration) throws(ClusterError) -> Duration {
            let fallback = Int(value.components.seconds) * 1000
            return .milliseconds(try Cluster.environmentInteger(name, default: fallback, in: 1...86_400_000))
        }
        return HTTPServerLimits(
            headerTimeout: try milliseconds("HTTP_HEADER_TIMEOUT_MS", defaults.headerTimeout),
            idleTimeout: try milliseconds("HTTP_IDLE_TIMEOUT_MS", defaults.idleTimeout),
            requestTimeout: try milliseconds("HTTP_REQUEST_TIMEOUT_MS", defaults.requestTimeout),
            maxHeaderBytes: try Cluster.environmentInteger("HTTP_MAX_HEADER_BYTES", default: defaults.maxHeaderBytes, in: 256...(1 << 24)),
            maxBodyBytes: try Cluster.environmentInteger("HTTP_MAX_BODY_BYTES", default: defaults.maxBodyBytes, in: 0...(1 << 40))
        )
    }
}
