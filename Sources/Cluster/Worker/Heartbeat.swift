import CClusterShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a worker reports with each heartbeat.
struct HeartbeatReport: Codable, Sendable, Hashable {
    /// Requests served since the worker started.
    var requests = 0
    /// Connections open now, and since the worker started.
    var connections = 0
    var connectionsTotal = 0
    /// How late the event loops answer now (µs): the worst of the last probe of each loop,
    /// or the age of one still unanswered (then `waiting`, and the lag is still growing).
    var lag = 0
    var waiting = false
    /// Event-loop lag over the last second (µs).
    var lagP50 = 0
    var lagP99 = 0
    /// Probes answered since the last report, counted by how late they ran: one count per
    /// bound of ``MetricsBatch/bucketBounds`` (at most that many seconds late) and one for
    /// the rest; and the sum of their lags (µs). The primary adds them up into the
    /// `cluster_worker_event_loop_lag_seconds` histogram.
    var lagBuckets = [Int](repeating: 0, count: MetricsBatch.bucketBounds.count + 1)
    var lagSum = 0
    /// The share of last second's probes (per mille) that found their event loop busy
    /// (answered more than 1 ms late): how much of the time the loops are occupied, CPU
    /// or not (a handler blocked on a synchronous call occupies its loop, not a core).
    var busy = 0
    /// CPU time the process has used (µs), and its resident memory (bytes).
    var cpu = 0
    var rss = 0
}

/// A worker's pulse, sent by the runtime's I/O thread (never an app event loop) every
/// ``interval``: what it served, its connections, CPU and memory, and the event-loop lag.
/// Every ``probeInterval`` a probe is sent to each watched event loop; the lag is how late
/// it ran, or how long an unanswered one has waited: a loop stuck in an infinite loop
/// shows a lag that grows without bound.
final class Heartbeat: Sendable {
    /// How often the worker reports.
    static let interval: Duration = .milliseconds(250)
    /// How often each watched loop is probed.
    static let probeInterval: Duration = .milliseconds(100)

    private struct Probe {
        let schedule: @Sendable (@escaping @Sendable () -> Void) -> Void
        var sentAt: UInt64?
        var lastLag: UInt64 = 0
    }

    private struct Lags {
        var probes: [Probe] = []
        /// (answered at, lag) of the last second, oldest first.
        var samples: [(at: UInt64, lag: UInt64)] = []
        /// Lags since the last report (ns), by ``MetricsBatch/bucketBounds``, and their sum.
        var buckets = [Int](repeating: 0, count: MetricsBatch.bucketBounds.count + 1)
        var sum: UInt64 = 0

        mutating func count(_ lag: UInt64) {
            let seconds = Double(lag) / 1e9
            buckets[MetricsBatch.bucketBounds.firstIndex { seconds <= $0 } ?? MetricsBatch.bucketBounds.count] += 1
            sum += lag
        }
    }

    private let lags = Mutex(Lags())
    private let requests = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)
    private let connectionsTotal = Atomic<Int>(0)
    private let accounted = Mutex<[Int32]>([])

    /// Adds process `pid`'s CPU time and memory, and those of every process below it, to
    /// every report from now on; `getpid()` adds every process this worker started.
    func account(_ pid: Int32) { accounted.withLock { $0.append(pid) } }

    /// Counts one request served.
    func countRequest() { requests.add(1, ordering: .relaxed) }

    /// Counts a connection opened or closed.
    func countConnection(opened: Bool) {
        connections.add(opened ? 1 : -1, ordering: .relaxed)
        if opened { connectionsTotal.add(1, ordering: .relaxed) }
    }

    /// Connections open now, as the adapters counted them.
    var openConnections: Int { max(0, connections.load(ordering: .relaxed)) }

    /// Watches an event loop: `schedule` must run its argument on that loop, soon.
    func watch(_ schedule: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        lags.withLock { $0.probes.append(Probe(schedule: schedule)) }
    }

    /// Sends a probe to every loop that answered the last one.
    func probe() {
        let now = IOLoop.now()
        var send: [(Int, @Sendable (@escaping @Sendable () -> Void) -> Void)] = []
        lags.withLock { lags in
            for index in lags.probes.indices where lags.probes[index].sentAt == nil {
                lags.probes[index].sentAt = now
                send.append((index, lags.probes[index].schedule))
            }
        }
        for (index, schedule) in send {
            schedule { [self] in
                let answered = IOLoop.now()
                lags.withLock { lags in
                    guard let sentAt = lags.probes[index].sentAt else { return }
                    let lag = answered - min(sentAt, answered)
                    lags.probes[index].lastLag = lag
                    lags.probes[index].sentAt = nil
                    lags.samples.append((answered, lag))
                    lags.count(lag)
                    lags.samples.removeAll { answered - min($0.at, answered) > 1_000_000_000 }
                }
            }
        }
    }

    /// The report for now.
    func report() -> HeartbeatReport {
        let now = IOLoop.now()
        var report = HeartbeatReport(requests: requests.load(ordering: .relaxed),
                                     connections: max(0, connections.load(ordering: .relaxed)),
                                     connectionsTotal: connectionsTotal.load(ordering: .relaxed))
        var recent: [UInt64] = []
        lags.withLock { lags in
            var worst: UInt64 = 0
            for probe in lags.probes {
                if let sentAt = probe.sentAt {
                    let waited = now - min(sentAt, now)
                    worst = max(worst, waited)
                    recent.append(waited)
                    report.waiting = true
                } else {
                    worst = max(worst, probe.lastLag)
                }
            }
            report.lag = Int(worst / 1000)
            report.lagBuckets = lags.buckets
            report.lagSum = Int(lags.sum / 1000)
            lags.buckets = lags.buckets.map { _ in 0 }
            lags.sum = 0
            recent += lags.samples.filter { now - min($0.at, now) <= 1_000_000_000 }.map(\.lag)
        }
        recent.sort()
        if !recent.isEmpty {
            report.busy = recent.count { $0 > 1_000_000 } * 1000 / recent.count
            report.lagP50 = Int(recent[recent.count / 2] / 1000)
            report.lagP99 = Int(recent[min(recent.count - 1, recent.count * 99 / 100)] / 1000)
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        report.cpu = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec
        report.rss = max(0, cluster_self_rss())
        // A process this worker runs counts as the worker, with everything it started (the
        // `cluster` command's programs and their own workers).
        var counted: Set<Int32> = [getpid()]
        for root in accounted.withLock({ $0 }) {
            for pid in [root] + ProcessTree.descendants(of: root) where counted.insert(pid).inserted {
                guard let usage = ProcessTree.usage(of: pid) else { continue }
                report.cpu = report.cpu.addingSaturated(usage.cpuMicroseconds)
                report.rss = report.rss.addingSaturated(usage.residentBytes)
            }
        }
        return report
    }
}
