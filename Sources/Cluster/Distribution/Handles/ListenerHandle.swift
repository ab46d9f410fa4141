/// One listener on the primary's side: its socket(s), and how its connections reach the
/// workers (Node's `SharedHandle` and `RoundRobinHandle` in `lib/internal/cluster`). One
/// type per distribution strategy; the primary's `ListenerTable` owns them.
///
/// - ``SharedHandle``: one socket every worker accepts on.
/// - ``ReusePortHandle``: a socket per slot, kept across that slot's workers, which take
///   turns on it.
/// - ``DispatchHandle``: the primary accepts and hands each connection over (roundRobin,
///   leastConnections, sticky).
///
/// Called on the I/O thread, except the immutable properties.
protocol ListenerHandle: AnyObject, Sendable {
    /// The primary's number for it: counts up, never reused.
    var id: Int { get }
    /// The address bound (with the port chosen for 0).
    var bound: ListenAddress { get }
    var distribution: Distribution { get }

    /// The socket a worker in `slot` accepts on, bound now if needed; nil when the primary
    /// accepts and hands connections over.
    func socket(forSlot slot: Int) throws(ClusterError) -> Int32?
    /// `worker` asks for connections (`accepting`), with a handoff link's two ends
    /// attached or none. Returns whether it now counts as listening.
    func add(_ worker: Worker, descriptors: [Int32], primary: Primary) throws(ClusterError) -> Bool
    /// `worker` stopped accepting (`stopAccepting`), or exited.
    func remove(_ worker: Worker, primary: Primary)
    /// `worker`'s channel closed: it takes no more handoffs, though it may still run.
    func disconnected(_ worker: Worker, primary: Primary)
    /// Gives `slot`'s socket the primary's backlog again (a program re-listened on it).
    func restoreBacklog(slot: Int)
    /// Stops accepting where the primary accepts (it stops, or hands over); queued
    /// connections wait in the socket.
    func stopAccepting()
    /// Closes every socket of the listener for good.
    func close()
    /// Closes the sockets of slots not in `slots` (reusePort), keeping at least one.
    func releaseSlots(keeping slots: Set<Int>)
    /// The sockets a new primary inherits in a hot upgrade: the listener's own (slot -1)
    /// first, then each other slot's.
    var sockets: [(slot: Int, fd: Int32)] { get }
    /// Connections accepted and held because no worker could take them.
    var waitingCount: Int { get }
}

extension ListenerHandle {
    func add(_ worker: Worker, descriptors: [Int32], primary: Primary) throws(ClusterError) -> Bool {
        descriptors.forEach(Syscall.close)
        throw ClusterError(.malformedFrame, "it asked for connections from listener \(id), which the primary does not distribute")
    }
    func remove(_ worker: Worker, primary: Primary) {}
    func disconnected(_ worker: Worker, primary: Primary) { remove(worker, primary: primary) }
    func stopAccepting() {}
    func releaseSlots(keeping slots: Set<Int>) {}
    var waitingCount: Int { 0 }

    /// How a worker learns the listener.
    var grant: ListenerGrant { ListenerGrant(id: id, distribution: distribution, bound: bound) }
}

/// `shared`: every worker accepts on the one socket the primary bound.
final class SharedHandle: ListenerHandle {
    let id: Int
    let bound: ListenAddress
    let distribution = Distribution.shared
    private let fd: Int32

    init(id: Int, fd: Int32, bound: ListenAddress) {
        self.id = id
        self.fd = fd
        self.bound = bound
    }

    func socket(forSlot slot: Int) -> Int32? { fd }
    func restoreBacklog(slot: Int) { try? Syscall.listen(fd, backlog: Socket.backlog) }
    func close() { Syscall.close(fd) }
    var sockets: [(slot: Int, fd: Int32)] { [(-1, fd)] }
}
