import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// One worker at a time accepts on each reusePort slot socket (`AcceptTurns`): the
/// primary hands the turn from a slot's old worker to its replacement, and across a hot
/// upgrade from the old primary's workers to the new one's. All on the I/O thread.
extension Primary {
    /// `worker` asks to accept on its slot's socket of reusePort listener `id`.
    func requestTurn(for worker: Worker, listener id: Int) {
        let socket = AcceptTurns.Socket(listener: id, slot: worker.slot)
        let grant: AcceptTurns.Grant?
        do {
            grant = try turns.withLock { turns throws(AcceptTurns.Refusal) in try turns.request(worker.id, on: socket) }
        } catch {
            logger.error("\(worker) broke the channel protocol (it asked twice for its turn to accept on listener \(id)); killing it. The primary carries on.")
            worker.signal(.kill)
            worker.channel.close(error: nil)
            return
        }
        if let grant { send([grant]) } else {
            logger.debug("\(worker) waits for its turn to accept on slot \(worker.slot)'s socket", metadata: ["listener": "\(id)"])
        }
    }

    /// `worker` stopped accepting on reusePort listener `id` (or gave up waiting).
    func releaseTurn(of worker: Worker, listener id: Int) {
        let grant = turns.withLock { $0.release(worker.id, on: AcceptTurns.Socket(listener: id, slot: worker.slot)) }
        send(grant.map { [$0] } ?? [])
        releaseToSuccessorIfIdle()
    }

    /// `worker` exited: its turns go to the next in line.
    func releaseTurns(of worker: Worker) {
        send(turns.withLock { $0.releaseAll(worker.id) })
        releaseToSuccessorIfIdle()
    }

    private func send(_ grants: [AcceptTurns.Grant]) {
        for grant in grants {
            guard let worker = workers[grant.worker] else { continue }
            try? worker.channel.sendNow(Control.acceptTurn(listener: grant.listener).frame, force: true)
        }
    }

    // MARK: Across a hot upgrade

    /// A hot upgrade begins: returns the read end of a pipe for the new primary
    /// (`CLUSTER_UPGRADE_RELEASED`), whose write end this primary closes once it hands
    /// over and none of its workers accepts on a reusePort socket any more (or when it
    /// exits). The new primary's workers accept on the inherited slot sockets only then.
    func makeSuccessorPipe() throws(ClusterError) -> Int32 {
        let pipe = try Syscall.pipe()
        if let previous = successor.withLock({ state in defer { state = (pipe.write, false) }; return state?.fd }) {
            Syscall.close(previous)
        }
        return pipe.read
    }

    /// This primary stops accepting (it hands over, or stops): once no worker of its holds
    /// a turn, the successor may take them.
    func handOverTurns() {
        successor.withLock { state in state = state.map { ($0.fd, true) } }
        releaseToSuccessorIfIdle()
    }

    private func releaseToSuccessorIfIdle() {
        let fd = successor.withLock { state -> Int32? in
            guard let current = state, current.handingOver, turns.withLock(\.isIdle) else { return nil }
            state = nil
            return current.fd
        }
        guard let fd else { return }
        Syscall.close(fd)
        logger.debug("no worker accepts on a reusePort socket any more; the new primary's workers may")
    }

    /// Started by a hot upgrade whose old primary passed `CLUSTER_UPGRADE_RELEASED`: no
    /// worker of this primary accepts on an inherited reusePort socket until that pipe
    /// closes (the old primary's workers have stopped accepting, or it exited).
    func waitForPredecessorsTurns() {
        guard upgradedFrom != nil,
              let fd = cluster_startup_env("CLUSTER_UPGRADE_RELEASED").flatMap({ Int32(String(cString: $0)) }), fd > 2,
              fcntl(fd, F_GETFD) >= 0 else { return }
        try? Syscall.setCloseOnExec(fd)
        let inherited = reusePortListenerIDs
        turns.withLock { turns in inherited.forEach { turns.inherit(listener: $0) } }
        let watch = PredecessorWatch(fd: fd, loop: loop) { [weak self] in
            guard let self else { return }
            logger.debug("the old primary's workers have stopped accepting; this primary's take their turns")
            send(turns.withLock { $0.predecessorReleased() })
        }
        loop.execute { [self] in
            do throws(ClusterError) {
                try loop.register(fd, events: EPOLLIN.rawValue, handler: watch)
            } catch {
                logger.error("cannot watch the old primary's turn pipe (\(error)); taking the turns now")
                Syscall.close(fd)
                send(turns.withLock { $0.predecessorReleased() })
            }
        }
    }
}

/// Waits, on the I/O thread, for the old primary to close its end of the turn pipe.
private final class PredecessorWatch: IOHandler, @unchecked Sendable {
    private let fd: Int32
    private let loop: IOLoop
    private let released: @Sendable () -> Void
    /// Loop thread only.
    private var done = false

    init(fd: Int32, loop: IOLoop, released: @escaping @Sendable () -> Void) {
        self.fd = fd
        self.loop = loop
        self.released = released
    }

    func handle(events: UInt32) {
        loop.assertInLoop()
        guard !done else { return }
        // Nothing is ever written: readable means closed. An error ends the wait too.
        var byte: UInt8 = 0
        if read(fd, &byte, 1) < 0, errno == EAGAIN || errno == EINTR { return }
        done = true
        loop.deregister(fd)
        Syscall.close(fd)
        released()
    }
}
