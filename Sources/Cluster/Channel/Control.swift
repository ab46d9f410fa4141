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
    case accepting(listener: Int)
    /// Worker → primary: hand it no more connections from listener `id` (it drains).
    case stopAccepting(listener: Int)

    /// Primary → worker: close `fraction` of your long-lived connections gracefully, so
    /// their clients reconnect and spread over the workers (one has just joined, or this
    /// one holds well over its share: `ConnectionBalancer`).
    case rebalance(fraction: Double)
    /// Worker → primary: it is ready for traffic (``ClusterWorker/ready()``).
    case ready
    /// Worker → primary, every heartbeat: what it served, its connections, CPU, memory and
    /// event-loop lag.
    case heartbeat(HeartbeatReport)

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
        case .rebalance: "rebalance"
        case .ready: "ready"
        case .heartbeat: "heartbeat"
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
