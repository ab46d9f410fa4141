/// roundRobin, leastConnections, sticky: the primary accepts on its socket and hands
/// each connection to a worker (`Dispatcher`); a worker joins with `accepting`, over its
/// channel or a handoff link of its own.
final class DispatchHandle: ListenerHandle {
    let id: Int
    let bound: ListenAddress
    var distribution: Distribution { dispatcher.distribution }
    private let fd: Int32
    let dispatcher: Dispatcher

    init(id: Int, fd: Int32, bound: ListenAddress, dispatcher: Dispatcher) {
        self.id = id
        self.fd = fd
        self.bound = bound
        self.dispatcher = dispatcher
    }

    func socket(forSlot slot: Int) -> Int32? { nil }

    func add(_ worker: Worker, descriptors: [Int32], primary: Primary) throws(ClusterError) -> Bool {
        guard !dispatcher.contains(worker: worker.id) else {
            descriptors.forEach(Syscall.close)
            throw ClusterError(.malformedFrame, "it asked for connections from listener \(id) twice")
        }
        switch descriptors.count {
        case 0:
            dispatcher.join(worker: worker.id, slot: worker.slot, channel: worker.channel)
        case 2:
            let link = Channel(fd: descriptors[0], loop: primary.loop, doorbell: descriptors[1])
            do {
                try dispatcher.join(worker: worker.id, slot: worker.slot, link: link) { [weak primary, weak worker] error in
                    guard let primary, let worker else { return }
                    primary.protocolViolation(by: worker, ClusterError(.malformedFrame, "on its handoff link: \(error.context)"))
                }
            } catch {
                primary.logger.error("\(worker) offered a handoff link that cannot be watched (\(error)); its connections go over its channel")
                link.close(error: nil)
                dispatcher.join(worker: worker.id, slot: worker.slot, channel: worker.channel)
            }
        default:
            descriptors.forEach(Syscall.close)
            throw ClusterError(.malformedFrame, "it asked for connections with \(descriptors.count) descriptors attached; 0 or 2 (a handoff link) are valid")
        }
        return true
    }

    func remove(_ worker: Worker, primary: Primary) { dispatcher.leave(worker: worker.id) }
    func restoreBacklog(slot: Int) { try? Syscall.listen(fd, backlog: Socket.backlog) }
    func stopAccepting() { dispatcher.stopAccepting() }
    /// Closes the dispatcher, which closes any connection no worker is left to take.
    func close() {
        dispatcher.close()
        Syscall.close(fd)
    }
    var sockets: [(slot: Int, fd: Int32)] { [(-1, fd)] }
    var waitingCount: Int { dispatcher.waitingCount }
}
