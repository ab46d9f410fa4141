public import CoreMetrics

/// The swift-metrics backend for a worker: what the app records (counters, gauges,
/// recorders, meters, timers) reaches the primary, which serves it on `/metrics` with a
/// `slot` label (`ClusterAdmin`). Bootstrap it once, early in the worker:
///
/// ```swift
/// case .worker(let worker):
///     worker.bootstrapMetrics()
///     Counter(label: "app_hits_total").increment()
/// ```
///
/// Recording only updates the series in this process, under its own lock; about once a
/// second, and once more when the worker leaves, the runtime's thread sends what changed to
/// the primary in one message. Counters send their increase, gauges their last value,
/// aggregating recorders and timers their observations as counts in the buckets of
/// ``bucketBounds`` (timers in seconds). At most 1,000 series per worker; names become valid
/// Prometheus names (`.` and other bytes become `_`), at most 8 labels of 128 bytes are
/// kept, and names beginning `cluster_` (the primary's own) get the prefix `app_`. What
/// is recorded after the channel to the primary has closed, or in the last second before a
/// worker is killed, is lost.
public struct WorkerMetricsFactory: MetricsFactory {
    let store: WorkerMetricsStore

    /// The upper bounds of every histogram's buckets, then +Inf: Prometheus's defaults
    /// (seconds, for timers).
    public static var bucketBounds: [Double] { MetricsBatch.bucketBounds }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        store.cell(label, dimensions, kind: .counter).map(CellCounter.init) ?? NOOPMetricsHandler.instance
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        store.cell(label, dimensions, kind: .counter).map(CellCounter.init) ?? NOOPMetricsHandler.instance
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        store.cell(label, dimensions, kind: aggregate ? .histogram : .gauge).map(CellRecorder.init) ?? NOOPMetricsHandler.instance
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        store.cell(label, dimensions, kind: .gauge).map(CellMeter.init) ?? NOOPMetricsHandler.instance
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        store.cell(label, dimensions, kind: .histogram).map(CellTimer.init) ?? NOOPMetricsHandler.instance
    }

    // A series stays once made: the primary keeps it anyway, and the count stays bounded.
    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}
}

/// Counters: `reset` is ignored, as a Prometheus counter never goes down.
private final class CellCounter: CounterHandler, FloatingPointCounterHandler {
    let cell: MetricsCell
    init(_ cell: MetricsCell) { self.cell = cell }
    func increment(by amount: Int64) { cell.add(Double(amount)) }
    func increment(by amount: Double) { cell.add(amount) }
    func reset() {}
}

private final class CellRecorder: RecorderHandler {
    let cell: MetricsCell
    init(_ cell: MetricsCell) { self.cell = cell }
    func record(_ value: Int64) { record(Double(value)) }
    func record(_ value: Double) { cell.kind == .histogram ? cell.observe(value) : cell.set(value) }
}

private final class CellMeter: MeterHandler {
    let cell: MetricsCell
    init(_ cell: MetricsCell) { self.cell = cell }
    func set(_ value: Int64) { cell.set(Double(value)) }
    func set(_ value: Double) { cell.set(value) }
    func increment(by amount: Double) { cell.set(amount, adjust: true) }
    func decrement(by amount: Double) { cell.set(-amount, adjust: true) }
}

private final class CellTimer: TimerHandler {
    let cell: MetricsCell
    init(_ cell: MetricsCell) { self.cell = cell }
    func recordNanoseconds(_ duration: Int64) { cell.observe(Double(duration) / 1e9) }
}
