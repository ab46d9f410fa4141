import CoreMetrics

// What the app records through swift-metrics, on its way to the primary.
extension ClusterWorker {
    /// How often the series that changed go to the primary.
    static let metricsInterval: Duration = .seconds(1)

    /// The swift-metrics backend whose series reach the primary's `/metrics`, labelled with
    /// this worker's slot. For a `MultiplexMetricsHandler`; else ``bootstrapMetrics()``.
    public var metricsFactory: WorkerMetricsFactory { WorkerMetricsFactory(store: metricsStore) }

    /// Makes swift-metrics record into ``metricsFactory``: from then on what the app
    /// records reaches the primary's `/metrics` (about once a second, and once more when
    /// the worker leaves). Call once per process, before any metric is created
    /// (swift-metrics allows one bootstrap).
    public func bootstrapMetrics() {
        MetricsSystem.bootstrap(metricsFactory)
    }

    func scheduleMetricsFlush() {
        loop.schedule(after: ClusterWorker.metricsInterval) { [self] in
            flushMetrics()
            scheduleMetricsFlush()
        }
    }

    /// Sends what changed since the last batch, if anything did and the channel is open.
    func flushMetrics() {
        guard let batch = metricsStore.takeBatch() else { return }
        try? channel.sendNow(Control.metrics(batch).frame, force: true)
    }
}
