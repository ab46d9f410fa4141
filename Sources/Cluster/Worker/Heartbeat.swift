import Synchronization

/// A worker's pulse, sent by the runtime's I/O thread (never an app event loop) every
/// ``interval``: the requests served so far and the event-loop lag. The lag is how long
/// the last probe took to run on each watched event loop, or how long an unanswered probe
/// has waited (then the report says so, and the primary adds the time since): a loop stuck
/// in an infinite loop shows a lag that grows without bound.
final class Heartbeat: Sendable {
    /// How often the worker reports.
    static let interval: Duration = .milliseconds(250)

    private struct Probe {
        let schedule: @Sendable (@escaping @Sendable () -> Void) -> Void
        var sentAt: UInt64?
        var lastLag: UInt64 = 0
    }

    private let probes = Mutex<[Probe]>([])
    private let requests = Atomic<Int>(0)

    /// Counts one request served.
    func countRequest() { requests.add(1, ordering: .relaxed) }

    /// Watches an event loop: `schedule` must run its argument on that loop, soon.
    func watch(_ schedule: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        probes.withLock { $0.append(Probe(schedule: schedule)) }
    }

    /// The report for now, and a new probe sent to every loop that answered the last.
    func beat() -> Control {
        let now = IOLoop.now()
        var send: [(Int, @Sendable (@escaping @Sendable () -> Void) -> Void)] = []
        var waiting = false
        let lag = probes.withLock { probes -> UInt64 in
            var worst: UInt64 = 0
            for index in probes.indices {
                if let sentAt = probes[index].sentAt {
                    worst = max(worst, now - sentAt)
                    waiting = true
                } else {
                    worst = max(worst, probes[index].lastLag)
                    probes[index].sentAt = now
                    send.append((index, probes[index].schedule))
                }
            }
            return worst
        }
        for (index, schedule) in send {
            schedule { [self] in
                let answered = IOLoop.now()
                probes.withLock { probes in
                    if let sentAt = probes[index].sentAt { probes[index].lastLag = answered - sentAt }
                    probes[index].sentAt = nil
                }
            }
        }
        return .heartbeat(requests: requests.load(ordering: .relaxed), lagMicroseconds: Int(lag / 1000), waiting: waiting)
    }
}
