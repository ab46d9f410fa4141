/// Worker → primary, about once a second: what the app recorded through swift-metrics
/// since the last batch (``WorkerMetricsFactory``), already summarised: a counter's
/// increase, a gauge's last value, a histogram's observations as bucket counts.
///
/// A batch is a worker's word, and a worker is not trusted: ``validate()`` holds it to the
/// bounds below, and the primary drops a batch that breaks any of them (with a warning, not
/// a kill: metrics are the app's, not the runtime's protocol).
struct MetricsBatch: Codable, Sendable, Equatable {
    /// One label of a series (a swift-metrics dimension).
    struct Label: Codable, Sendable, Hashable, Comparable {
        var name: String
        var value: String

        static func < (a: Label, b: Label) -> Bool { (a.name, a.value) < (b.name, b.value) }
    }

    enum Kind: String, Codable, Sendable {
        /// Counters and floating-point counters: `value` is the increase since the last batch.
        case counter
        /// Recorders that do not aggregate, and meters: `value` is the last value.
        case gauge
        /// Aggregating recorders and timers (in seconds): `buckets` are the observations
        /// since the last batch per bucket of ``MetricsBatch/bucketBounds`` (not cumulative;
        /// the last one is above every bound), `value` their sum.
        case histogram
    }

    struct Series: Codable, Sendable, Equatable {
        var name: String
        var labels: [Label] = []
        var kind: Kind
        var value: Double
        var buckets: [Int]?
    }

    var series: [Series]

    // MARK: Bounds

    /// Series one worker may record, and one batch carry.
    static let maximumSeries = 1_000
    /// Bytes in a series' name and a label's name.
    static let maximumNameLength = 128
    /// Labels per series.
    static let maximumLabels = 8
    /// Bytes in a label's value.
    static let maximumLabelValueLength = 128
    /// The largest count or counter increase a batch may report: 2^53, what a `Double`
    /// holds exactly.
    static let maximumCount = 1 << 53
    /// A batch's encoded size: within the bounds above a full batch takes about 2.5 MiB.
    static let maximumBytes = 4 << 20
    /// The upper bounds of every histogram's buckets (Prometheus's defaults, seconds for
    /// timers), then +Inf.
    static let bucketBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Labels the primary adds itself, or Prometheus reserves.
    static let reservedLabels: Set<String> = ["slot", "le", "quantile"]
    /// Names the primary's own series use.
    static let reservedPrefix = "cluster_"

    /// Throws ``ClusterError/Code/malformedFrame`` naming the first bound broken.
    func validate() throws(ClusterError) {
        guard series.count <= Self.maximumSeries else {
            throw Self.violation("it carries \(series.count) series; at most \(Self.maximumSeries)")
        }
        var seen = Set<SeriesKey>()
        for entry in series {
            try entry.validate()
            guard seen.insert(SeriesKey(name: entry.name, labels: entry.labels)).inserted else {
                throw Self.violation("series '\(entry.name)' appears twice with the same labels")
            }
        }
    }

    static func violation(_ reason: String) -> ClusterError {
        ClusterError(.malformedFrame, "metrics batch dropped: " + reason)
    }

    /// Whether `name` is a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), or
    /// label name without the colon.
    static func isValidName(_ name: String, colon: Bool = true) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return name.utf8.allSatisfy { isNameByte($0, colon: colon) }
    }

    static func isNameByte(_ byte: UInt8, colon: Bool = true) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"): true
        case UInt8(ascii: ":"): colon
        default: false
        }
    }
}

/// A series' identity: its name and labels.
struct SeriesKey: Hashable, Sendable {
    var name: String
    var labels: [MetricsBatch.Label]
}

extension MetricsBatch.Series {
    func validate() throws(ClusterError) {
        let violation = MetricsBatch.violation
        guard name.utf8.count <= MetricsBatch.maximumNameLength, MetricsBatch.isValidName(name) else {
            throw violation("'\(name.prefix(MetricsBatch.maximumNameLength))' is no metric name of at most \(MetricsBatch.maximumNameLength) bytes")
        }
        guard !name.hasPrefix(MetricsBatch.reservedPrefix) else {
            throw violation("'\(name)' begins with '\(MetricsBatch.reservedPrefix)', which the primary's own series use")
        }
        guard labels.count <= MetricsBatch.maximumLabels else {
            throw violation("'\(name)' has \(labels.count) labels; at most \(MetricsBatch.maximumLabels)")
        }
        var names = Set<String>()
        for label in labels {
            guard label.name.utf8.count <= MetricsBatch.maximumNameLength, MetricsBatch.isValidName(label.name, colon: false),
                  !label.name.hasPrefix("__"), !MetricsBatch.reservedLabels.contains(label.name), names.insert(label.name).inserted else {
                throw violation("'\(name)' has a label named '\(label.name.prefix(MetricsBatch.maximumNameLength))', which is invalid, reserved or repeated")
            }
            guard label.value.utf8.count <= MetricsBatch.maximumLabelValueLength else {
                throw violation("'\(name)' has a label value longer than \(MetricsBatch.maximumLabelValueLength) bytes")
            }
        }
        guard value.isFinite else { throw violation("'\(name)' has the value \(value)") }
        switch kind {
        case .counter:
            guard buckets == nil, value >= 0, value <= Double(MetricsBatch.maximumCount) else {
                throw violation("counter '\(name)' increases by \(value), outside 0...2^53")
            }
        case .gauge:
            guard buckets == nil else { throw violation("gauge '\(name)' carries buckets") }
        case .histogram:
            guard let buckets, buckets.count == MetricsBatch.bucketBounds.count + 1,
                  buckets.allSatisfy({ (0...MetricsBatch.maximumCount).contains($0) }) else {
                throw violation("histogram '\(name)' needs \(MetricsBatch.bucketBounds.count + 1) bucket counts in 0...2^53")
            }
        }
    }
}
