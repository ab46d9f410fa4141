import Metrics

/// Publishes the cluster's figures through swift-metrics, for whatever backend the program
/// bootstrapped (`ClusterAdmin` serves them as Prometheus text): the primary its workers'
/// figures every second, a supervisor its own (desired count, restarts, reloads, boot
/// failures).
///
/// Per-worker figures are labelled by slot, which a replacement reuses, so the number of
/// series stays bounded however many workers come and go. What workers count (requests,
/// connections, CPU time) is a counter per slot, added up across the slot's workers, so it
/// never goes down when one restarts; rates and shares are the scraper's to compute. A
/// share of time is a `_ratio`; the lag stays a gauge of the last second's p99, as the
/// heartbeat carries no finer distribution. Metrics are looked up at each use, not kept:
/// the backend may be bootstrapped after the primary starts publishing, and a metric made
/// before that would belong to the no-op backend for good.
struct MetricsPublisher {
    /// What each live worker had counted at the last publication.
    private var counted: [Int: Counts] = [:]
    private var bootFailures = 0

    private struct Counts {
        var requests = 0
        var connections = 0
        var cpu: Duration = .zero
    }

    /// A worker died unexpectedly and is restarted.
    func countRestart() { counter("cluster_worker_restarts_total").increment() }

    /// A rolling reload was asked for.
    func countReload() { counter("cluster_reloads_total").increment() }

    /// Publishes the count a supervisor keeps, whether it is degraded (1: workers keep
    /// failing to boot while others serve), and the boot failures counted so far.
    mutating func publish(desired: Int, degraded: Bool, bootFailures: Int) {
        gauge("cluster_workers_desired").record(desired)
        gauge("cluster_degraded").record(degraded ? 1 : 0)
        counter("cluster_boot_failures_total").increment(by: max(0, bootFailures - self.bootFailures))
        self.bootFailures = max(self.bootFailures, bootFailures)
        // 0 until the first, not absent.
        _ = (counter("cluster_worker_restarts_total"), counter("cluster_reloads_total"))
    }

    /// Publishes `workers` (id, slot, stats): the serving ones.
    mutating func publish(_ workers: [(id: Int, slot: Int, stats: WorkerStats)]) {
        let cluster = ClusterStats(workers.map(\.stats))
        gauge("cluster_build_info", ("swift", Self.swiftVersion)).record(1)
        gauge("cluster_workers").record(workers.count)
        gauge("cluster_connections").record(cluster.connections)
        gauge("cluster_cpu_utilization_ratio").record(cluster.utilization)
        gauge("cluster_resident_memory_bytes").record(cluster.residentMemory)
        var seen: [Int: Counts] = [:]
        for (id, slot, stats) in workers {
            let slot = ("slot", String(slot))
            // A worker's figures are cumulative since it started: add what is new to its slot.
            let before = counted[id] ?? Counts()
            counter("cluster_requests_total", slot).increment(by: max(0, stats.requests - before.requests))
            counter("cluster_connections_total", slot).increment(by: max(0, stats.connectionsTotal - before.connections))
            FloatingPointCounter(label: "cluster_worker_cpu_seconds_total", dimensions: [slot])
                .increment(by: max(0, (stats.cpuTime - before.cpu).inSeconds))
            seen[id] = Counts(requests: max(before.requests, stats.requests),
                              connections: max(before.connections, stats.connectionsTotal),
                              cpu: max(before.cpu, stats.cpuTime))
            gauge("cluster_worker_utilization_ratio", slot).record(stats.utilization)
            gauge("cluster_worker_event_loop_busy_ratio", slot).record(stats.eventLoopBusy)
            gauge("cluster_worker_connections", slot).record(stats.connections)
            gauge("cluster_worker_resident_memory_bytes", slot).record(stats.residentMemory)
        }
        counted = seen
    }

    private func gauge(_ label: String, _ dimension: (String, String)? = nil) -> Gauge {
        Gauge(label: label, dimensions: dimension.map { [$0] } ?? [])
    }

    private func counter(_ label: String, _ dimension: (String, String)? = nil) -> Counter {
        Counter(label: label, dimensions: dimension.map { [$0] } ?? [])
    }

    /// The compiler that built the primary, for `cluster_build_info`.
    static var swiftVersion: String {
        #if compiler(>=6.3)
        "6.3"
        #elseif compiler(>=6.2)
        "6.2"
        #else
        "6.1"
        #endif
    }
}
