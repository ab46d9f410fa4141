/// What one worker reported in its last heartbeat (every 250 ms), with the rates over
/// about the last second.
public struct WorkerStats: Sendable, Hashable {
    /// Requests served since the worker started (counted by the adapters, or by
    /// ``ClusterWorker/countRequest()``).
    public var requests = 0
    /// Requests per second over about the last second.
    public var requestsPerSecond = 0.0
    /// Connections open now.
    public var connections = 0
    /// Connections since the worker started.
    public var connectionsTotal = 0
    /// The median event-loop lag over the last second: how late a task scheduled on the
    /// worker's event loops ran (probed every 100 ms from outside the app's code).
    public var eventLoopLagP50: Duration = .zero
    /// The 99th-percentile event-loop lag over the last second.
    public var eventLoopLagP99: Duration = .zero
    /// The share of the last second the worker's event loops were occupied (0...1),
    /// estimated from the lag probes: a handler blocked on a synchronous call keeps its
    /// loop busy while the CPU idles.
    public var eventLoopBusy = 0.0
    /// CPU time the worker has used.
    public var cpuTime: Duration = .zero
    /// CPU seconds per second over about the last second: 1.0 is one core kept busy.
    public var utilization = 0.0
    /// Resident memory in bytes.
    public var residentMemory = 0
}

/// The whole cluster's figures: sums, the worst lag, the mean utilization.
public struct ClusterStats: Sendable, Hashable {
    /// Workers alive (with a heartbeat so far).
    public var workers = 0
    /// Requests served by the live workers since each started.
    public var requests = 0
    /// Requests per second, summed over the workers.
    public var requestsPerSecond = 0.0
    /// Connections open now, summed over the workers.
    public var connections = 0
    /// Connections the live workers have accepted since each started.
    public var connectionsTotal = 0
    /// The worst worker's p99 event-loop lag.
    public var eventLoopLagP99: Duration = .zero
    /// CPU time the live workers have used.
    public var cpuTime: Duration = .zero
    /// Mean utilization per worker (CPU seconds per second).
    public var utilization = 0.0
    /// Mean event-loop occupancy per worker (0...1).
    public var eventLoopBusy = 0.0
    /// Resident memory of the workers, summed, in bytes.
    public var residentMemory = 0

    /// Sums and worst cases over `workers`.
    public init(_ workers: [WorkerStats]) {
        self.workers = workers.count
        for stats in workers {
            // Saturating: the figures come from workers, and no sum of them may trap.
            requests = requests.addingSaturated(stats.requests)
            requestsPerSecond += stats.requestsPerSecond
            connections = connections.addingSaturated(stats.connections)
            connectionsTotal = connectionsTotal.addingSaturated(stats.connectionsTotal)
            eventLoopLagP99 = max(eventLoopLagP99, stats.eventLoopLagP99)
            cpuTime += stats.cpuTime
            utilization += stats.utilization
            eventLoopBusy += stats.eventLoopBusy
            residentMemory = residentMemory.addingSaturated(stats.residentMemory)
        }
        if !workers.isEmpty {
            utilization /= Double(workers.count)
            eventLoopBusy /= Double(workers.count)
        }
    }
}

/// A worker's recent reports, turned into ``WorkerStats``. Pure: the instants are given.
struct StatsWindow: Sendable {
    private var reports: [(at: UInt64, report: HeartbeatReport)] = []

    /// The last report, and when it came (nanoseconds on the monotonic clock).
    var last: (at: UInt64, report: HeartbeatReport)? { reports.last }

    mutating func record(_ report: HeartbeatReport, at now: UInt64) {
        reports.append((now, report))
        // Keep one report at least a second old, for the rates.
        while reports.count > 2, now - min(reports[1].at, now) >= 1_000_000_000 { reports.removeFirst() }
    }

    var stats: WorkerStats {
        guard let (at, report) = reports.last else { return WorkerStats() }
        var stats = WorkerStats(requests: report.requests, connections: report.connections,
                                connectionsTotal: report.connectionsTotal,
                                eventLoopLagP50: .microseconds(report.lagP50), eventLoopLagP99: .microseconds(report.lagP99),
                                eventLoopBusy: Double(min(1000, max(0, report.busy))) / 1000,
                                cpuTime: .microseconds(report.cpu), residentMemory: report.rss)
        if let first = reports.first, at > first.at {
            let seconds = Double(at - first.at) / 1e9
            stats.requestsPerSecond = Double(max(0, report.requests - first.report.requests)) / seconds
            stats.utilization = Double(max(0, report.cpu - first.report.cpu)) / 1e6 / seconds
        }
        return stats
    }
}
