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

    var frame: Frame {
        // Encoding this enum cannot fail.
        Frame(kind: .control, payload: (try? MessageCodec.encode(self)) ?? [])
    }

    init(_ frame: Frame) throws(ClusterError) {
        self = try MessageCodec.decode(Control.self, from: frame.payload)
    }
}
