/// How the connections accepted on a listener reach the workers.
///
/// | strategy | who accepts | balance | when a worker dies |
/// |---|---|---|---|
/// | `shared` | every worker, on the primary's socket | whoever wakes first | its queue is the shared one: nothing lost |
/// | `reusePort` | each worker, on its slot's `SO_REUSEPORT` socket | the kernel's hash | the primary keeps the slot's socket, and its queue, for the replacement |
/// | `roundRobin` | the primary, handing each connection to the next worker | exact | unacknowledged handoffs go to another worker |
/// | `leastConnections` | the primary, to the worker with the fewest open connections | by load | as roundRobin |
/// | `sticky` | the primary, by the client's address (rendezvous hashing over slots) | by clients | only its clients move |
public struct Distribution: Hashable, Sendable, CustomStringConvertible {
    package enum Kind: String, Hashable, Sendable, CaseIterable {
        case shared, reusePort, roundRobin, leastConnections, sticky
    }
    package let kind: Kind

    /// Every worker accepts on the primary's listening socket.
    public static let shared = Distribution(kind: .shared)
    /// Each worker accepts on its own `SO_REUSEPORT` socket, which the primary keeps per slot.
    public static let reusePort = Distribution(kind: .reusePort)
    /// The primary accepts and hands each connection to the next worker in turn.
    public static let roundRobin = Distribution(kind: .roundRobin)
    /// The primary accepts and hands each connection to the worker with the fewest open.
    public static let leastConnections = Distribution(kind: .leastConnections)
    /// The primary accepts and hands each client address to the same worker while it lives.
    public static let sticky = Distribution(kind: .sticky)

    /// Every strategy, by name.
    public static let all: [Distribution] = Kind.allCases.map(Distribution.init(kind:))

    /// True when the primary accepts and hands connections over.
    var primaryAccepts: Bool { kind == .roundRobin || kind == .leastConnections || kind == .sticky }

    /// A strategy by its name: `shared`, `reusePort`, `roundRobin`, `leastConnections`, `sticky`.
    public init(parsing name: String) throws(ClusterError) {
        guard let kind = Kind(rawValue: name) else {
            throw ClusterError(.invalidConfiguration, "'\(name)' is not a distribution; use one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
    }

    init(kind: Kind) { self.kind = kind }

    public var description: String { kind.rawValue }
}
