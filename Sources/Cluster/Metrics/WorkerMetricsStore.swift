import Synchronization

/// One series a worker records: its figures since the last batch. Recording takes only this
/// series' lock, for a few instructions; nothing waits for I/O.
final class MetricsCell: Sendable {
    let key: SeriesKey
    let kind: MetricsBatch.Kind

    private struct Accumulator {
        var value = 0.0
        var changed = false
        var buckets: [Int] = []
    }

    private let accumulator: Mutex<Accumulator>

    init(key: SeriesKey, kind: MetricsBatch.Kind) {
        self.key = key
        self.kind = kind
        let buckets = kind == .histogram ? [Int](repeating: 0, count: MetricsBatch.bucketBounds.count + 1) : []
        accumulator = Mutex(Accumulator(buckets: buckets))
    }

    /// A counter's increase (negative or non-finite amounts are ignored: a counter never
    /// goes down).
    func add(_ amount: Double) {
        guard amount > 0, amount.isFinite else { return }
        accumulator.withLock { state in
            state.value += amount
            state.changed = true
        }
    }

    /// A gauge's new value, or `adjust` its current one.
    func set(_ value: Double, adjust: Bool = false) {
        guard value.isFinite else { return }
        accumulator.withLock { state in
            state.value = adjust ? state.value + value : value
            state.changed = true
        }
    }

    /// One observation of a histogram, counted in its bucket.
    func observe(_ value: Double) {
        guard value.isFinite else { return }
        let bucket = MetricsBatch.bucketBounds.firstIndex { value <= $0 } ?? MetricsBatch.bucketBounds.count
        accumulator.withLock { state in
            state.buckets[bucket] = min(state.buckets[bucket] + 1, MetricsBatch.maximumCount)
            state.value += value
            state.changed = true
        }
    }

    /// What changed since the last call, as a series of a batch; nil if nothing did.
    /// A gauge keeps its value (a meter adjusts it); a counter and a histogram start over.
    func take() -> MetricsBatch.Series? {
        accumulator.withLock { state in
            guard state.changed else { return nil }
            state.changed = false
            var series = MetricsBatch.Series(name: key.name, labels: key.labels, kind: kind, value: state.value)
            switch kind {
            case .gauge:
                break
            case .counter:
                series.value = min(state.value, Double(MetricsBatch.maximumCount))
                state.value = 0
            case .histogram:
                series.buckets = state.buckets
                if !series.value.isFinite { series.value = 0 }
                state.value = 0
                state.buckets = state.buckets.map { _ in 0 }
            }
            return series
        }
    }
}

/// Every series a worker records, at most ``MetricsBatch/maximumSeries``, by name and
/// labels. Names and labels are made valid for Prometheus here (a byte that a name may not
/// hold becomes `_`; labels past the bounds are dropped, values cut), so what the app
/// records in any swift-metrics style arrives.
final class WorkerMetricsStore: Sendable {
    private struct Cells {
        var byKey: [SeriesKey: MetricsCell] = [:]
        var all: [MetricsCell] = []
        var warned = false

        /// `message` the first time only: the log hears of a refusal once.
        mutating func warnOnce(_ message: String) -> String? {
            defer { warned = true }
            return warned ? nil : message
        }
    }

    private let cells = Mutex(Cells())
    /// Called once, the first time a series is refused.
    private let refused: @Sendable (String) -> Void

    init(refused: @escaping @Sendable (String) -> Void = { _ in }) {
        self.refused = refused
    }

    /// The cell of series `label` with `dimensions`, made on first use; nil when the store is
    /// full, or the series exists with another kind.
    func cell(_ label: String, _ dimensions: [(String, String)], kind: MetricsBatch.Kind) -> MetricsCell? {
        let key = WorkerMetricsStore.key(label, dimensions)
        let (cell, refusal) = cells.withLock { cells -> (MetricsCell?, String?) in
            if let existing = cells.byKey[key] {
                if existing.kind == kind { return (existing, nil) }
                return (nil, cells.warnOnce("'\(key.name)' is a \(existing.kind) already; it is not recorded as a \(kind) too"))
            }
            guard cells.all.count < MetricsBatch.maximumSeries else {
                return (nil, cells.warnOnce("\(MetricsBatch.maximumSeries) series recorded already; '\(key.name)' and any further series are not recorded"))
            }
            let cell = MetricsCell(key: key, kind: kind)
            cells.byKey[key] = cell
            cells.all.append(cell)
            return (cell, nil)
        }
        if let refusal { refused(refusal) }
        return cell
    }

    /// What changed since the last batch, or nil when nothing did.
    func takeBatch() -> MetricsBatch? {
        let series = cells.withLock { $0.all }.compactMap { $0.take() }
        return series.isEmpty ? nil : MetricsBatch(series: series)
    }

    /// A valid series identity for what the app named.
    static func key(_ label: String, _ dimensions: [(String, String)]) -> SeriesKey {
        var labels: [MetricsBatch.Label] = []
        for (name, value) in dimensions where labels.count < MetricsBatch.maximumLabels {
            var name = sanitized(name, colon: false)
            if name.hasPrefix("__") || MetricsBatch.reservedLabels.contains(name) { name = "app_" + name }
            guard !labels.contains(where: { $0.name == name }) else { continue }
            labels.append(MetricsBatch.Label(name: name, value: truncated(value, to: MetricsBatch.maximumLabelValueLength)))
        }
        var name = sanitized(label, colon: true)
        if name.hasPrefix(MetricsBatch.reservedPrefix) { name = "app_" + name }
        return SeriesKey(name: truncated(name, to: MetricsBatch.maximumNameLength), labels: labels.sorted())
    }

    private static func sanitized(_ text: String, colon: Bool) -> String {
        var bytes = text.utf8.prefix(MetricsBatch.maximumNameLength).map { MetricsBatch.isNameByte($0, colon: colon) ? $0 : UInt8(ascii: "_") }
        if bytes.isEmpty || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[0]) { bytes.insert(UInt8(ascii: "_"), at: 0) }
        return String(decoding: bytes.prefix(MetricsBatch.maximumNameLength), as: UTF8.self)
    }

    /// `text` cut to at most `limit` bytes, on a character boundary.
    private static func truncated(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var result = ""
        for character in text {
            guard result.utf8.count + character.utf8.count <= limit else { break }
            result.append(character)
        }
        return result
    }
}
