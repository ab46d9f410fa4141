import Metrics

/// Publishes the cluster's figures through swift-metrics, for whatever backend the program
/// bootstrapped (`ClusterAdmin` serves them as Prometheus text): the primary its workers'
/// figures every second, a supervisor its own (desired count, restarts).
/// Per-worker figures are labelled by slot, which a replacement reuses, so the number of
/// series stays bounded however many workers come and go. Metrics are looked up at each
/// use, not kept: the backend may be bootstrapped after the primary starts publishing, and
/// a metric made before that would belong to the no-op backend for good.
struct MetricsPublisher {
    private var counted: [Int: (requests: Int, connections: Int)] = [:]

    /// A worker died unexpectedly and is restarted.
    func countRestart() { counter("cluster_worker_restarts_total").increment() }

    /// Publishes the count a supervisor keeps, and whether it is degraded (1: workers keep
    /// failing to boot while others serve).
    func publish(desired: Int, degraded: Bool) {
        gauge("cluster_workers_desired").record(desired)
        gauge("cluster_degraded").record(degraded ? 1 : 0)
        _ = counter("cluster_worker_restarts_total") // 0 until the first restart, not absent
    }

    /// Publishes `workers` (id, slot, stats): the serving ones.
    mutating func publish(_ workers: [(id: Int, slot: Int, stats: WorkerStats)]) {
        let cluster = ClusterStats(workers.map(\.stats))
        gauge("cluster_workers").record(workers.count)
        gauge("cluster_connections").record(cluster.connections)
        gauge("cluster_event_loop_lag_p99_seconds").record(cluster.eventLoopLagP99.inSeconds)
        gauge("cluster_cpu_utilization").record(cluster.utilization)
        gauge("cluster_resident_memory_bytes").record(cluster.residentMemory)
        let requests = counter("cluster_requests_total"), connectionsTotal = counter("cluster_connections_total")
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
            gauge("cluster_worker_event_loop_lag_p99_seconds", slot).record(stats.eventLoopLagP99.inSeconds)
            gauge("cluster_worker_resident_memory_bytes", slot).record(stats.residentMemory)
        }
        counted = seen
    }

    private func gauge(_ label: String, _ slot: Int? = nil) -> Gauge {
        Gauge(label: label, dimensions: slot.map { [("slot", String($0))] } ?? [])
    }

    private func counter(_ label: String) -> Counter {
        Counter(label: label)
    }
}
