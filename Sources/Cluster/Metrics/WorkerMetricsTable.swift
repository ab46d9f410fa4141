/// The primary's copy of what the apps in its workers record: every series a batch
/// (``MetricsBatch``) brought, one per slot, in the Prometheus text format on demand.
/// Pure: no I/O, no clock.
///
/// Counters and histograms add up per slot across the slot's workers, so a worker's
/// restart (a new process counting from zero) never makes them go down; gauges keep the
/// last value any worker of the slot sent. A slot's series stay when no worker holds it any
/// more (after a scale-down): a counter that vanished would read as a reset. At most
/// ``MetricsBatch/maximumSeries`` series per slot, so the table is bounded by the number of
/// slots the cluster ever had.
struct WorkerMetricsTable: Sendable {
    private struct Family {
        var kind: MetricsBatch.Kind
        var series: [Key: Value] = [:]
    }

    private struct Key: Hashable, Comparable {
        var slot: Int
        var labels: [MetricsBatch.Label]

        static func < (a: Key, b: Key) -> Bool {
            a.slot != b.slot ? a.slot < b.slot : a.labels.lexicographicallyPrecedes(b.labels)
        }
    }

    private struct Value {
        /// A counter's total, a gauge's value, a histogram's sum.
        var value = 0.0
        /// A histogram's counts per bucket (not cumulative).
        var buckets: [Int] = []
    }

    private var families: [String: Family] = [:]
    private var seriesPerSlot: [Int: Int] = [:]

    /// Adds a batch from a worker in `slot`; the batch must be valid
    /// (``MetricsBatch/validate()``). Returns why series were left out, if any were: a name
    /// that another worker records as another kind, or a slot that has all the series it may.
    @discardableResult
    mutating func absorb(_ batch: MetricsBatch, slot: Int) -> [String] {
        var refusals: [String] = []
        for series in batch.series {
            let key = Key(slot: slot, labels: series.labels.sorted())
            var family = families[series.name] ?? Family(kind: series.kind)
            guard family.kind == series.kind else {
                refusals.append("'\(series.name)' is a \(family.kind), not a \(series.kind)")
                continue
            }
            var value = family.series[key]
            if value == nil {
                guard seriesPerSlot[slot, default: 0] < MetricsBatch.maximumSeries else {
                    refusals.append("slot \(slot) has \(MetricsBatch.maximumSeries) series already; '\(series.name)' is left out")
                    continue
                }
                seriesPerSlot[slot, default: 0] += 1
                value = Value(buckets: series.kind == .histogram ? Array(repeating: 0, count: MetricsBatch.bucketBounds.count + 1) : [])
            }
            guard var value else { continue }
            switch series.kind {
            case .gauge:
                value.value = series.value
            case .counter:
                value.value += series.value
            case .histogram:
                value.value += series.value
                for (index, count) in (series.buckets ?? []).enumerated() {
                    value.buckets[index] = value.buckets[index].addingSaturated(count)
                }
            }
            family.series[key] = value
            families[series.name] = family
        }
        return refusals
    }

    /// Every series, in the Prometheus text format (version 0.0.4), by name then slot.
    func exposition() -> String {
        var text = ""
        for name in families.keys.sorted() {
            guard let family = families[name] else { continue }
            text += "# TYPE \(name) \(family.kind)\n"
            for key in family.series.keys.sorted() {
                guard let value = family.series[key] else { continue }
                let labels = [MetricsBatch.Label(name: "slot", value: String(key.slot))] + key.labels
                switch family.kind {
                case .counter, .gauge:
                    text += Self.sample(name, labels, value.value)
                case .histogram:
                    var cumulative = 0
                    for (index, count) in value.buckets.enumerated() {
                        cumulative = cumulative.addingSaturated(count)
                        let bound = index < MetricsBatch.bucketBounds.count ? Self.number(MetricsBatch.bucketBounds[index]) : "+Inf"
                        text += Self.sample(name + "_bucket", labels + [MetricsBatch.Label(name: "le", value: bound)], Double(cumulative))
                    }
                    text += Self.sample(name + "_sum", labels, value.value)
                    text += Self.sample(name + "_count", labels, Double(cumulative))
                }
            }
        }
        return text
    }

    private static func sample(_ name: String, _ labels: [MetricsBatch.Label], _ value: Double) -> String {
        let pairs = labels.map { "\($0.name)=\"\(escaped($0.value))\"" }.joined(separator: ",")
        return "\(name){\(pairs)} \(number(value))\n"
    }

    private static func number(_ value: Double) -> String {
        if !value.isFinite { return value.isNaN ? "NaN" : value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    private static func escaped(_ value: String) -> String {
        var result = ""
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.append(character)
            }
        }
        return result
    }
}
