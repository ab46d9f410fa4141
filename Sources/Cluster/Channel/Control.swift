/// The runtime's own messages between a primary and its workers, kind `.control`.
enum Control: Codable, Sendable, Equatable {
    /// Worker → primary: the runtime is up (Node's 'online').
    case online
    /// Worker → primary: it accepts on this listener now (Node's 'listening').
    case listening(address: String)
    /// Worker → primary, a request: the descriptor of this listener, bound if needed.
    case listen(address: String)
    /// Primary → worker: stop accepting, finish in-flight work, exit 0.
    case disconnect
    /// Worker → primary: it leaves of its own will (Node's `exitedAfterDisconnect`); its
    /// exit is intended.
    case exitedAfterDisconnect
    /// Worker → primary: hand it connections accepted on listener `id` (primary-accept
    /// strategies); it counts as listening. With two descriptors attached, the primary's
    /// ends of a handoff link (socket, doorbell pipe) to send them over (`HandoffLink`).
    /// On a reusePort listener: it asks for its turn to accept on its slot's socket
    /// (`AcceptTurns`), answered by ``acceptTurn(listener:)``.
    case accepting(listener: Int)
    /// Worker → primary: hand it no more connections from listener `id` (it drains); on a
    /// reusePort listener, it has stopped accepting on its slot's socket.
    case stopAccepting(listener: Int)
    /// Primary → worker: accept on your slot's socket of reusePort listener `id` now; no
    /// other worker does.
    case acceptTurn(listener: Int)

    /// Primary → worker: close `fraction` of your long-lived connections gracefully, so
    /// their clients reconnect and spread over the workers (one has just joined, or this
    /// one holds well over its share: `ConnectionBalancer`).
    case rebalance(fraction: Double)
    /// Worker → primary: it is ready for traffic (``ClusterWorker/ready()``).
    case ready
    /// Worker → primary, every heartbeat: what it served, its connections, CPU, memory and
    /// event-loop lag.
    case heartbeat(HeartbeatReport)
    /// Worker → primary, about once a second: what the app recorded through swift-metrics
    /// since the last batch (``WorkerMetricsFactory``).
    case metrics(MetricsBatch)

    /// Whether descriptors may come with it: only `accepting`'s handoff link.
    var carriesDescriptors: Bool {
        if case .accepting = self { true } else { false }
    }

    /// The message's name, for logs (without a heartbeat's figures).
    var name: String {
        switch self {
        case .online: "online"
        case .listening: "listening"
        case .listen: "listen"
        case .disconnect: "disconnect"
        case .exitedAfterDisconnect: "exitedAfterDisconnect"
        case .accepting: "accepting"
        case .stopAccepting: "stopAccepting"
        case .acceptTurn: "acceptTurn"
        case .rebalance: "rebalance"
        case .ready: "ready"
        case .heartbeat: "heartbeat"
        case .metrics: "metrics"
        }
    }

    var frame: Frame { frame(descriptors: []) }

    func frame(descriptors: [Int32]) -> Frame {
        // Encoding this enum cannot fail.
        Frame(kind: .control, payload: (try? MessageCodec.encode(self)) ?? [], descriptors: descriptors)
    }

    init(_ frame: Frame) throws(ClusterError) {
        self = try MessageCodec.decode(Control.self, from: frame.payload)
    }
}

/// The payload of a `.failure` frame that answers a runtime request (a worker's `listen`):
/// the ``ClusterError`` the primary met, with its errno, system call and address, so the
/// worker throws the same error (Node's `err.code`, `err.errno`, `err.syscall`,
/// `err.address`, `err.port`) instead of text.
///
/// Every field but `clusterError` (the text) is optional, so peers of different versions
/// understand each other: a peer that sends plain text (an older primary, or an
/// application's `fail(_:)`) is read as text, and a field this runtime does not know is
/// ignored. An older worker shows this JSON as its error's text, which still says it all.
struct RemoteFailure: Codable, Sendable, Equatable {
    /// The error's context: what happened and what to do about it.
    var clusterError: String
    /// ``ClusterError/Code``'s name ("invalidAddress").
    var code: String?
    var errno: Int32?
    /// The system call that failed ("bind").
    var syscall: String?
    /// The listen address the failure concerns, as ``ListenAddress`` prints it.
    var address: String?

    init(clusterError: String, code: String? = nil, errno: Int32? = nil, syscall: String? = nil, address: String? = nil) {
        self.clusterError = clusterError
        self.code = code
        self.errno = errno
        self.syscall = syscall
        self.address = address
    }

    init(_ error: ClusterError) {
        self.init(clusterError: error.context, code: error.code.name, errno: error.errno, syscall: error.systemCall,
                  address: error.address?.description)
    }

    /// The payload: JSON (encoding these fields cannot fail).
    var payload: [UInt8] { (try? MessageCodec.encode(self)) ?? Array(clusterError.utf8) }

    /// The error a `.failure` frame's payload stands for: the sender's own error when it is
    /// a `RemoteFailure`, else ``ClusterError/Code/remoteError`` with the payload as text.
    /// Never throws: a peer's bytes are only ever text or these fields.
    static func error(from payload: [UInt8]) -> ClusterError {
        let prefix = "the peer failed the request: "
        guard payload.first == UInt8(ascii: "{"), let failure = try? MessageCodec.decode(RemoteFailure.self, from: payload) else {
            return ClusterError(.remoteError, prefix + String(decoding: payload, as: UTF8.self))
        }
        let code = failure.code.flatMap { ClusterError.Code(name: $0, systemCall: failure.syscall) } ?? .remoteError
        // An errno the kernel could not have given is dropped, not trusted.
        let errno = failure.errno.flatMap { $0 > 0 && $0 < 4096 ? $0 : nil }
        let address = failure.address.flatMap { try? ListenAddress(parsing: $0) }
        return ClusterError(code, errno: errno, systemCall: failure.syscall, address: address, prefix + failure.clusterError)
    }
}
