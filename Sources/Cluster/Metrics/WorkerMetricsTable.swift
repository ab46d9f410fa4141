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
    func exposition() -> String { exposition(mergingInto: "") }

    /// `own`, the primary's own series in the Prometheus text format, with every series of
    /// the table merged in. The format allows a name's `# TYPE` once, so a family both have
    /// (the primary's program and its workers record the same name) stays one family, the
    /// workers' samples after the primary's; one the primary has as another type is left out,
    /// with a comment that says so. The table's other families follow, by name.
    func exposition(mergingInto own: String) -> String {
        var text = ""
        var placed = Set<String>()
        var current: (name: String, type: String)?
        func endFamily() {
            guard let (name, type) = current, let family = families[name], placed.insert(name).inserted else { return }
            text += type == "\(family.kind)"
                ? samples(name, family)
                : "# the workers' \(name) is a \(family.kind), the primary's a \(type): left out\n"
        }
        for line in own.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            if words.count >= 3, words[0] == "#", words[1] == "TYPE" || words[1] == "HELP" {
                let name = String(words[2])
                if name != current?.name { endFamily() }
                if words[1] == "TYPE" { current = (name, words.count > 3 ? String(words[3]) : "untyped") }
                else if name != current?.name { current = (name, "untyped") }
            }
            text += line + "\n"
        }
        endFamily()
        for name in families.keys.sorted() where !placed.contains(name) {
            guard let family = families[name] else { continue }
            text += "# TYPE \(name) \(family.kind)\n" + samples(name, family)
        }
        return text
    }

    /// A family's samples, by slot, without its `# TYPE` line.
    private func samples(_ name: String, _ family: Family) -> String {
        var text = ""
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
