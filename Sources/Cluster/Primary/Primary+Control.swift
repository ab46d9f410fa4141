import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What the primary does with each frame a worker sends (the control protocol, handoff
/// answers, messages and worker-to-worker forwarding) and with a worker's channel close
/// and exit. I/O thread.
extension Primary {
    func received(_ frame: Frame, from worker: Worker, on channel: Channel) {
        switch frame.kind {
        case .control:
            handleControl(frame, from: worker, on: channel)
        case .handoff:
            handleHandoff(frame, from: worker)
        case .message, .request:
            if frame.peer != 0 {
                forward(frame, from: worker)
                return
            }
            // A worker whose descriptors pile up unread waits until the app takes or drops them.
            if !frame.descriptors.isEmpty, !worker.descriptorBudget.reserve(frame.descriptors.count) {
                channel.pauseReading()
                // The app may have dropped enough between the count and the pause, and its
                // release found nothing to resume: look again.
                if worker.descriptorBudget.count <= DescriptorBudget.perWorker / 2 { channel.resumeReading() }
            }
            let replier = frame.kind == .request ? Replier(channel: channel, correlation: frame.correlation) : nil
            hub.publish(.message(worker, ClusterMessage(bytes: frame.payload, descriptors: frame.descriptors, replier: replier,
                                                        budget: worker.descriptorBudget)), from: channel)
        case .reply, .failure:
            break // Routed by the channel to the waiting request.
        }
    }

    private func handleControl(_ frame: Frame, from worker: Worker, on channel: Channel) {
        let control: Control
        do {
            control = try Control(frame)
        } catch {
            frame.descriptors.forEach(Syscall.close)
            protocolViolation(by: worker, error)
            return
        }
        // Only a handoff link rides a control message; any other descriptor is a lie.
        if !frame.descriptors.isEmpty, !control.carriesDescriptors {
            frame.descriptors.forEach(Syscall.close)
            protocolViolation(by: worker, ClusterError(.malformedFrame, "it sent '\(control.name)' with \(frame.descriptors.count) descriptors attached, which carries none"))
            return
        }
        switch control {
        case .online:
            if worker.advance(to: .online) { hub.publish(.online(worker)) }
        case .listening(let text):
            guard let address = try? ListenAddress(parsing: text) else {
                protocolViolation(by: worker, ClusterError(.malformedFrame, "it reported listening on '\(text)', which is no address"))
                return
            }
            // SwiftNIO and others re-listen with their own small backlog; restore ours.
            listenerTable[address]?.restoreBacklog(slot: worker.slot)
            worker.advance(to: .listening)
            hub.publish(.listening(worker, listenerTable[address]?.bound ?? address))
        case .listen(let text):
            let reply: Frame
            do {
                let address = try ListenAddress(parsing: text)
                try checkListenRequest(address, from: worker)
                let listener = try bindListener(address)
                let fd = try listener.socket(forSlot: worker.slot)
                reply = Frame(kind: .reply, correlation: frame.correlation, payload: listener.grant.payload,
                              descriptors: fd.map { [$0] } ?? [])
            } catch {
                // Typed, so the worker throws the same error (errno, system call, address).
                reply = Frame(kind: .failure, correlation: frame.correlation, payload: RemoteFailure(error).payload)
            }
            try? channel.sendNow(reply, force: true)
        case .accepting(let id):
            guard let listener = listenerTable[id: id] else {
                frame.descriptors.forEach(Syscall.close)
                protocolViolation(by: worker, ClusterError(.malformedFrame, "it asked for connections from listener \(id), which the primary does not distribute"))
                return
            }
            do {
                if try listener.add(worker, descriptors: frame.descriptors, primary: self) {
                    worker.advance(to: .listening)
                    hub.publish(.listening(worker, listener.bound))
                }
            } catch {
                protocolViolation(by: worker, error)
            }
        case .stopAccepting(let id):
            listenerTable[id: id]?.remove(worker, primary: self)
        case .ready:
            hub.publish(.ready(worker))
        case .exitedAfterDisconnect:
            worker.leavingOfItsOwnWill()
        case .heartbeat(let report):
            do {
                try report.validate()
                worker.recordHeartbeat(report)
                workerMetrics.withLock { _ = $0.absorb(report.lagHistogram, slot: worker.slot) }
            } catch {
                protocolViolation(by: worker, error)
            }
        case .metrics(let batch):
            absorbMetrics(batch, size: frame.payload.count, from: worker)
        case .disconnect, .rebalance, .acceptTurn:
            protocolViolation(by: worker, ClusterError(.malformedFrame, "it sent '\(control)', which only the primary sends"))
        }
    }

    /// Adds a worker's metrics batch to the table `/metrics` serves; a batch out of bounds
    /// is dropped whole, with a warning now and then (a worker's metrics are the app's: no
    /// reason to kill it).
    private func absorbMetrics(_ batch: MetricsBatch, size: Int, from worker: Worker) {
        var problems: [String]
        do throws(ClusterError) {
            guard size <= MetricsBatch.maximumBytes else {
                throw MetricsBatch.violation("it takes \(size) bytes; at most \(MetricsBatch.maximumBytes)")
            }
            try batch.validate()
            problems = workerMetrics.withLock { $0.absorb(batch, slot: worker.slot) }
        } catch {
            problems = [error.context]
        }
        guard let first = problems.first, let suppressed = worker.metricsWarningDue() else { return }
        let more = problems.count > 1 ? " (and \(problems.count - 1) more)" : ""
        let quiet = suppressed > 0 ? "; \(suppressed) similar problems since the last warning" : ""
        logger.warning("\(worker), slot \(worker.slot): \(first)\(more)\(quiet)")
    }

    /// A worker may have the primary bind a listener it does not hold yet only as
    /// ``PrimarySettings/listenRequests`` allows.
    private func checkListenRequest(_ address: ListenAddress, from worker: Worker) throws(ClusterError) {
        let (held, count, settings) = (listenerTable[address] != nil, listenerTable.count, state.withLock { $0.settings })
        guard !held, let refusal = settings.listenRequests.refusal(of: address, holding: count, workersSwitchUser: settings.user != nil) else { return }
        // Once per worker: a worker that asks again and again does not flood the log.
        let level: Logger.Level = worker.firstListenRefusal() ? .warning : .debug
        logger.log(level: level, "\(worker) asked the primary to bind \(address); refused: \(refusal)")
        throw ClusterError(.invalidConfiguration, refusal)
    }

    private func handleHandoff(_ frame: Frame, from worker: Worker) {
        // A worker's handoff answers carry no descriptors; any that came are not ours to keep.
        defer { frame.descriptors.forEach(Syscall.close) }
        do {
            let message = try Handoff(frame)
            try (listenerTable[id: message.listener] as? DispatchHandle)?.dispatcher.received(message, from: worker.id)
        } catch {
            protocolViolation(by: worker, error)
        }
    }

    private func forward(_ frame: Frame, from worker: Worker) {
        defer { frame.descriptors.forEach(Syscall.close) }
        guard let target = workers[Int(frame.peer)], !target.isDead else {
            if frame.kind == .request {
                try? worker.channel.sendNow(Frame(kind: .failure, correlation: frame.correlation,
                                                  payload: Array("no live worker has id \(frame.peer)".utf8)), force: true)
            } else {
                logger.warning("dropped a message from \(worker) to worker \(frame.peer): no live worker has that id")
            }
            return
        }
        var forwarded = frame
        forwarded.peer = UInt32(worker.id)
        if frame.kind == .request {
            // The reply comes back through the primary to the original requester.
            forwarded.kind = .message
            logger.warning("\(worker) sent a request to worker \(frame.peer); worker-to-worker requests are delivered as messages")
        }
        do {
            try target.channel.sendNow(forwarded, force: true)
        } catch {
            logger.warning("could not forward a message from \(worker) to \(target): \(error)")
            return
        }
        // Back-pressure across the primary: while the target is behind by more than a few
        // MiB, the sender's channel is not read, so its own queue fills and its `send`
        // waits. The primary holds at most a few MiB per target, not what a sender sends.
        if target.channel.isFull {
            let sender = worker.channel
            sender.pauseReading()
            target.channel.whenDrained { sender.resumeReading() }
        }
    }

    /// Kills a worker that broke the runtime's protocol, with one line that says what it did.
    func protocolViolation(by worker: Worker, _ error: ClusterError) {
        logger.error("\(worker) broke the channel protocol (\(error)); killing it. The primary carries on.")
        worker.signal(.kill)
        worker.channel.close(error: nil) // logged here, not again as a malformed frame
    }

    func channelClosed(for worker: Worker, error: ClusterError?) {
        if let error, error.code == .malformedFrame || error.code == .systemCall("recvmsg") {
            logger.error("\(worker) sent a malformed frame (\(error)); killing it. The primary carries on.")
            worker.signal(.kill)
        }
        listenerTable.all.forEach { $0.handle.disconnected(worker, primary: self) }
        // The state reads `disconnected` before anyone hears of it (Node's order).
        worker.advance(to: .disconnected)
        hub.publish(.disconnect(worker))
    }

    func processExited(_ worker: Worker) {
        guard !worker.isDead else { return }
        // Deliver what the worker wrote before it died, then its channel's close
        // ('disconnect', state `disconnected`), then its exit (state `dead`): always in
        // that order, as in Node, whichever the kernel reported first.
        worker.channel.readAvailable(batches: .max)
        if !worker.channel.isClosed { worker.channel.close(error: nil) }
        guard let status = worker.reap() else { return }
        listenerTable.all.forEach { $0.handle.remove(worker, primary: self) }
        state.withLock { state in
            state.workers.removeValue(forKey: worker.id)
            state.watches.removeValue(forKey: worker.id)
        }
        releaseTurns(of: worker)
        hub.publish(.exit(worker, status))
    }
}

/// Hears a worker's channel and pidfd on the I/O thread and tells the primary.
final class WorkerWatch: ChannelDelegate, IOHandler, Sendable {
    // Strong: a weak load per message costs more than it is worth, and the primary lives
    // as long as the process; the watch goes when its worker does.
    let primary: Primary?
    let worker: Worker

    init(primary: Primary, worker: Worker) {
        self.primary = primary
        self.worker = worker
    }

    func channel(_ channel: Channel, received frame: Frame) {
        primary?.received(frame, from: worker, on: channel)
    }

    func channelClosed(_ channel: Channel, error: ClusterError?) {
        primary?.channelClosed(for: worker, error: error)
    }

    func handle(events: UInt32) {
        primary?.processExited(worker)
    }
}
