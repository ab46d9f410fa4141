import Metrics

/// Publishes the cluster's figures through swift-metrics, every second, for whatever
/// backend the program bootstrapped (`ClusterAdmin` serves them as Prometheus text).
/// Per-worker figures are labelled by slot, which a replacement reuses, so the number of
/// series stays bounded however many workers come and go. Each metric is made on first
/// use, so a backend bootstrapped after the supervisor was created still gets them all.
struct MetricsPublisher {
    private var counted: [Int: (requests: Int, connections: Int)] = [:]
    private var gauges: [String: Gauge] = [:]
    private var counters: [String: Counter] = [:]

    /// A worker died unexpectedly and is restarted.
    mutating func countRestart() { counter("cluster_worker_restarts_total").increment() }

    /// Publishes `workers` (id, slot, stats) and the desired count.
    mutating func publish(_ workers: [(id: Int, slot: Int, stats: WorkerStats)], desired: Int) {
        let cluster = ClusterStats(workers.map(\.stats))
        gauge("cluster_workers").record(workers.count)
        gauge("cluster_workers_desired").record(desired)
        gauge("cluster_connections").record(cluster.connections)
        gauge("cluster_event_loop_lag_p99_seconds").record(Self.seconds(cluster.eventLoopLagP99))
        gauge("cluster_cpu_utilization").record(cluster.utilization)
        gauge("cluster_resident_memory_bytes").record(cluster.residentMemory)
        let requests = counter("cluster_requests_total"), connectionsTotal = counter("cluster_connections_total")
        _ = counter("cluster_worker_restarts_total") // 0 until the first restart, not absent
        var seen: [Int: (requests: Int, connections: Int)] = [:]
        for (id, slot, stats) in workers {
            let before = counted[id] ?? (0, 0)
            requests.increment(by: max(0, stats.requests - before.requests))
            connectionsTotal.increment(by: max(0, stats.connectionsTotal - before.connections))
            seen[id] = (max(before.requests, stats.requests), max(before.connections, stats.connectionsTotal))
            gauge("cluster_worker_requests_per_second", slot).record(stats.requestsPerSecond)
            gauge("cluster_worker_utilization", slot).record(stats.utilization)
            gauge("cluster_worker_event_loop_busy", slot).record(stats.eventLoopBusy)
            gauge("cluster_worker_connections", slot).record(stats.connections)
            gauge("cluster_worker_event_loop_lag_p99_seconds", slot).record(Self.seconds(stats.eventLoopLagP99))
            gauge("cluster_worker_resident_memory_bytes", slot).record(stats.residentMemory)
        }
        counted = seen
    }

    private mutating func gauge(_ label: String, _ slot: Int? = nil) -> Gauge {
        let key = slot.map { "\(label){\($0)}" } ?? label
        if let existing = gauges[key] { return existing }
        let made = Gauge(label: label, dimensions: slot.map { [("slot", String($0))] } ?? [])
        gauges[key] = made
        return made
    }

    private mutating func counter(_ label: String) -> Counter {
        if let existing = counters[label] { return existing }
        let made = Counter(label: label)
        counters[label] = made
        return made
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
