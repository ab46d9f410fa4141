import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// What the primary says on the worker's channel (I/O thread).
extension ClusterWorker {
    func channel(_ channel: Channel, received frame: Frame) {
        switch frame.kind {
        case .control:
            switch try? Control(frame) {
            case .disconnect:
                leave(announce: false)
            case .rebalance(let fraction):
                let share = fraction.isFinite ? min(max(fraction, 0), 1) : 0
                state.withLock { $0.rebalanceHandlers }.forEach { $0(share) }
            case .acceptTurn(let id):
                acceptTurnGranted(listener: id)
            default:
                break
            }
        case .handoff:
            guard case .connection(let id, let first)? = try? Handoff(frame) else {
                frame.descriptors.forEach(Syscall.close)
                return
            }
            let acceptor = state.withLock { $0.handoffAcceptors[id] }
            // Answered at once, or (declared reads) once read: until then the primary
            // keeps its copy and re-routes it if this worker dies. The answers of one
            // wake-up leave together, in one write.
            Handoff.answerConnections(in: frame, listener: id, first: first,
                                      take: { acceptor?.takeHandoff($0, client: $1, number: $2) ?? .declined },
                                      answer: { try? channel.sendNow($0, force: true) })
        case .message, .request:
            let replier = frame.kind == .request ? Replier(channel: channel, correlation: frame.correlation) : nil
            let message = ClusterMessage(bytes: frame.payload, descriptors: frame.descriptors,
                                         fromWorker: frame.peer == 0 ? nil : Int(frame.peer), replier: replier)
            if let handler = state.withLock({ $0.messageHandler }) {
                handler(message)
            } else if !inbox.post(message) {
                channel.pauseReading()
                // The consumer may have made room between the post and the pause, and its
                // relief found nothing to resume: look again.
                if !inbox.isFull { channel.resumeReading() }
            }
        case .reply, .failure:
            break
        }
    }

    func channelClosed(_ channel: Channel, error: ClusterError?) {
        inbox.finish()
        // This worker leaves on purpose and closed the channel itself: it lives until
        // `main` returns (its connections are done), as a Node worker does.
        if error == nil, state.withLock({ $0.leaving }) { return }
        // The primary is gone (PR_SET_PDEATHSIG normally ends us first) or broke the
        // protocol: drain, and exit within a second whatever the app does.
        if let error { logger.error("the channel to the primary failed: \(error); exiting") }
        beginDrain()
        _ = loop.schedule(after: .seconds(1)) { exit(error == nil ? 0 : 70) }
    }
}

/// Messages from the primary, as an async sequence (one consumer).
public struct ClusterMessages: AsyncSequence, Sendable {
    public typealias Element = ClusterMessage
    let mailbox: Mailbox<ClusterMessage>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let mailbox: Mailbox<ClusterMessage>
        var batch = Batch<ClusterMessage>()
        public mutating func next() async -> ClusterMessage? { await batch.next(from: mailbox) }
        public mutating func next(isolation actor: isolated (any Actor)?) async -> ClusterMessage? {
            await batch.next(from: mailbox)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(mailbox: mailbox) }
}
