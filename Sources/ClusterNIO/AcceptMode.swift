public import Cluster

/// How a worker's SwiftNIO server takes connections from the primary's listener: on its
/// own event loop, or from the worker runtime's I/O thread.
///
/// | Distribution | ``eventLoop`` | ``runtime`` |
/// |---|---|---|
/// | `reusePort` | SwiftNIO's server channel accepts on the slot's socket, in turn with the slot's other workers | the runtime accepts |
/// | `roundRobin`, `leastConnections`, `sticky` | the event loop reads the primary's handoffs from a link of its own | the runtime receives them on the channel |
/// | `shared` | refused | the runtime accepts |
///
/// On a listener with a PROXY protocol (`Cluster.ListenAddress.proxyProtocol`) a
/// `reusePort` socket is accepted as with ``runtime``: the runtime reads each connection's
/// header before SwiftNIO sees the connection.
///
/// With ``eventLoop`` one thread wakes per connection; with ``runtime`` two (the
/// runtime's, then the event loop's), which costs a few microseconds and works on every
/// listener. ``automatic`` (the default) is ``eventLoop`` wherever it is allowed.
///
/// Why `shared` has no event-loop mode: every worker waits on that one socket, so the
/// kernel wakes all of them for each connection and all but one find nothing. The
/// runtime's accept takes that in its stride; SwiftNIO's server channel treats such a
/// wake-up as a bug (its debug builds assert). A `reusePort` slot socket, by contrast, is
/// waited on by one worker at a time: the primary hands the slot's turn from a worker to
/// its replacement only once the first has stopped accepting (`ClusterWorker.acceptTurn(on:)`).
public struct AcceptMode: Sendable, Hashable, CustomStringConvertible {
    enum Kind: String, Sendable, Hashable {
        case automatic, eventLoop, runtime
    }
    let kind: Kind

    /// ``eventLoop`` where the listener's distribution allows it, else ``runtime``.
    public static let automatic = AcceptMode(kind: .automatic)
    /// The serving event loop takes each connection itself: one thread wakes per
    /// connection. Not for `shared` listeners (`serve` throws).
    public static let eventLoop = AcceptMode(kind: .eventLoop)
    /// The worker runtime's I/O thread accepts, or receives the primary's handoffs, and
    /// gives each connection to an event loop: works on every listener.
    public static let runtime = AcceptMode(kind: .runtime)

    public var description: String { kind.rawValue }

    /// Reads a mode's name ("automatic", "eventLoop", "runtime"), as a configuration or
    /// an environment variable gives it.
    public init(parsing name: String) throws(ClusterError) {
        guard let kind = Kind(rawValue: name) else {
            throw ClusterError(.invalidConfiguration, "'\(name)' is no accept mode; use automatic, eventLoop or runtime")
        }
        self.kind = kind
    }

    private init(kind: Kind) { self.kind = kind }

    /// Where connections come from, concretely.
    enum Path: Equatable {
        /// SwiftNIO's server channel on the worker's own socket (its slot's turn held).
        case serverChannel
        /// The primary's handoffs, read by the event loop from a link.
        case handoffLink
        /// The runtime's I/O thread: it accepts, or receives handoffs on the channel.
        case runtime
    }

    /// The path this mode takes for a listener distributed by `distribution`.
    func path(for distribution: Distribution) throws(ClusterError) -> Path {
        switch (kind, distribution.kind) {
        case (.runtime, _): return .runtime
        case (.automatic, .shared): return .runtime
        case (.eventLoop, .shared):
            throw ClusterError(.invalidConfiguration, "accept mode eventLoop needs a socket one worker waits on at a time, and every worker of a shared listener waits on the same one; use AcceptMode.runtime or .automatic, or distribute by reusePort")
        case (_, .reusePort): return .serverChannel
        case (_, .roundRobin), (_, .leastConnections), (_, .sticky): return .handoffLink
        }
    }
}
