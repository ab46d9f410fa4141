import Logging
import Synchronization

/// The primary's listeners: one ``ListenerHandle`` per address asked for, in the order
/// they were bound (the order workers inherit them in). Thread-safe; the handles' own
/// methods run on the I/O thread.
final class ListenerTable: Sendable {
    private struct State {
        var handles: [ListenAddress: any ListenerHandle] = [:]
        var order: [ListenAddress] = []
        /// Listener ids count up and are never reused (a closed listener's workers may
        /// still speak of it).
        var nextID = 0
    }
    private let state = Mutex(State())

    /// Every listener, in the order bound, with the address asked for.
    var all: [(address: ListenAddress, handle: any ListenerHandle)] {
        state.withLock { state in state.order.map { ($0, state.handles[$0]!) } }
    }

    /// The listener for the address asked for.
    subscript(address: ListenAddress) -> (any ListenerHandle)? {
        state.withLock { $0.handles[address] }
    }

    /// The listener with the primary's number `id`.
    subscript(id id: Int) -> (any ListenerHandle)? {
        state.withLock { $0.handles.values.first { $0.id == id } }
    }

    var count: Int { state.withLock { $0.handles.count } }

    /// The listener for `address`, bound now (distributed by `distribution`, else
    /// `defaultDistribution`) unless it is already. I/O thread.
    func bind(_ address: ListenAddress, distribution: Distribution?, defaultDistribution: Distribution,
              loop: IOLoop, logger: Logger) throws(ClusterError) -> any ListenerHandle {
        if let existing = self[address] {
            if let distribution, distribution != existing.distribution {
                throw ClusterError(.invalidConfiguration, "\(address) is already distributed by \(existing.distribution); a listener has one strategy for its whole life")
            }
            return existing
        }
        let chosen = distribution ?? defaultDistribution
        let (fd, bound) = try Self.socket(for: address, distribution: chosen)
        let handle: any ListenerHandle
        do {
            handle = try Self.handle(id: takeID(), fd: fd, bound: bound, distribution: chosen, loop: loop, logger: logger)
        } catch {
            Syscall.close(fd)
            throw error
        }
        insert(handle, for: address)
        logger.debug("listening", metadata: ["address": "\(bound)", "distribution": "\(chosen)"])
        return handle
    }

    /// A socket bound now, or the one the service manager passed.
    private static func socket(for address: ListenAddress, distribution: Distribution) throws(ClusterError) -> (fd: Int32, bound: ListenAddress) {
        guard case .inherited(let inherited) = address.kind else {
            return try Socket.listen(address, reusePort: distribution == .reusePort)
        }
        guard distribution != .reusePort else {
            throw ClusterError(.invalidConfiguration, "reusePort binds a socket for each worker, and \(address) is the one socket the service manager passed; distribute it with shared, roundRobin, leastConnections or sticky, or let the cluster bind (tcp://HOST:PORT)")
        }
        return try InheritedSockets.shared.take(inherited, for: address)
    }

    /// The handle for a socket bound (or inherited) for `distribution`.
    private static func handle(id: Int, fd: Int32, bound: ListenAddress, distribution: Distribution,
                               loop: IOLoop, logger: Logger) throws(ClusterError) -> any ListenerHandle {
        switch distribution.kind {
        case .shared:
            return SharedHandle(id: id, fd: fd, bound: bound)
        case .reusePort:
            return ReusePortHandle(id: id, fd: fd, bound: bound)
        case .roundRobin, .leastConnections, .sticky:
            let dispatcher = try Dispatcher(id: id, fd: fd, distribution: distribution, proxyProtocol: bound.proxyProtocol,
                                            loop: loop, logger: logger)
            return DispatchHandle(id: id, fd: fd, bound: bound, dispatcher: dispatcher)
        }
    }

    private func takeID() -> Int {
        state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
    }

    private func insert(_ handle: any ListenerHandle, for address: ListenAddress) {
        state.withLock { state in
            state.handles[address] = handle
            state.order.append(address)
        }
    }

    /// Empties the table and returns what it held, in order (the caller closes them).
    func removeAll() -> [any ListenerHandle] {
        state.withLock { state in
            defer {
                state.handles.removeAll()
                state.order.removeAll()
            }
            return state.order.compactMap { state.handles[$0] }
        }
    }

    // MARK: Hot upgrade

    /// The listeners, as a new primary inherits them: descriptors from 3, and a grant for
    /// each socket (with its slot for a reusePort slot's; the listener's own first).
    func handover() -> (descriptors: [(source: Int32, target: Int32)], spec: String) {
        var descriptors: [(source: Int32, target: Int32)] = []
        var grants: [ListenerGrant] = []
        for (address, handle) in all {
            for (slot, fd) in handle.sockets {
                let target = Int32(3 + descriptors.count)
                descriptors.append((fd, target))
                grants.append(ListenerGrant(id: handle.id, distribution: handle.distribution, bound: handle.bound,
                                            address: address, descriptor: target, slot: slot >= 0 ? slot : nil))
            }
        }
        return (descriptors, ListenerGrant.environmentValue(grants))
    }

    /// Takes the listeners an old primary handed over (``handover()``'s spec), so `listen`
    /// finds them bound. A grant it cannot read is logged and skipped.
    func adopt(spec: String, from predecessor: Int32, loop: IOLoop, logger: Logger) {
        let grants: [ListenerGrant]
        do throws(ClusterError) {
            grants = try ListenerGrant.list(from: spec, variable: .upgradeListeners)
        } catch {
            return logger.error("cannot take over the listeners of primary \(predecessor): \(error)")
        }
        for grant in grants {
            do throws(ClusterError) {
                let parsed = try grant.parsed()
                guard let fd = grant.descriptor, let address = parsed.address else {
                    throw ClusterError(.invalidConfiguration, "CLUSTER_UPGRADE_LISTENERS hands over \(grant.bound) without its descriptor or the address asked for")
                }
                try Syscall.setCloseOnExec(fd)
                if let slot = grant.slot {
                    (self[address] as? ReusePortHandle)?.adopt(fd, slot: slot)
                    continue
                }
                insert(try Self.handle(id: takeID(), fd: fd, bound: parsed.bound, distribution: parsed.distribution,
                                       loop: loop, logger: logger),
                       for: address)
            } catch {
                logger.error("cannot take over a listener from primary \(predecessor): \(error)")
            }
        }
    }
}
