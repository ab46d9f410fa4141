/// A heartbeat is a worker's word about itself, and a worker is not trusted: every figure
/// must lie in a range a real process can reach, or the report is a lie and the worker is
/// killed as a protocol violation (as a malformed frame is). Within these bounds the
/// primary's sums over any number of workers cannot overflow: they saturate besides.
extension HeartbeatReport {
    /// The largest count of requests or connections a worker may report: 2^53, what a
    /// `Double` holds exactly (more than 28 years at ten million a second).
    static let maximumCount = 1 << 53
    /// Connections open at once: far above any descriptor limit.
    static let maximumOpenConnections = 1 << 32
    /// Microseconds of lag or CPU time: 2^53 µs is more than 285 years.
    static let maximumMicroseconds = 1 << 53
    /// Resident memory: 2^48 bytes (256 TiB), the reach of x86-64 and arm64 address spaces.
    static let maximumResidentMemory = 1 << 48

    /// Throws ``ClusterError/Code/malformedFrame`` naming the first figure out of range.
    func validate() throws(ClusterError) {
        let checks: [(name: String, value: Int, range: ClosedRange<Int>)] = [
            ("requests", requests, 0...Self.maximumCount),
            ("connections", connections, 0...Self.maximumOpenConnections),
            ("connectionsTotal", connectionsTotal, 0...Self.maximumCount),
            ("lag", lag, 0...Self.maximumMicroseconds),
            ("lagP50", lagP50, 0...Self.maximumMicroseconds),
            ("lagP99", lagP99, 0...Self.maximumMicroseconds),
            ("busy", busy, 0...1000),
            ("cpu", cpu, 0...Self.maximumMicroseconds),
            ("rss", rss, 0...Self.maximumResidentMemory),
            ("lagSum", lagSum, 0...Self.maximumMicroseconds),
            ("lagBuckets.count", lagBuckets.count, MetricsBatch.bucketBounds.count + 1...MetricsBatch.bucketBounds.count + 1),
        ] + lagBuckets.map { ("a lagBuckets count", $0, 0...Self.maximumCount) }
        for check in checks where !check.range.contains(check.value) {
            throw ClusterError(.malformedFrame, "its heartbeat reports \(check.name) = \(check.value), outside \(check.range.lowerBound)...\(check.range.upperBound)")
        }
    }
}

extension Int {
    /// `self + other`, held at `Int.max` (or `Int.min`) instead of trapping.
    func addingSaturated(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}

extension HeartbeatReport {
    /// The report's event-loop lags as a histogram series for the `/metrics` table, added up
    /// per slot like the app's own histograms (so it survives the slot's restarts).
    var lagHistogram: MetricsBatch {
        MetricsBatch(series: [MetricsBatch.Series(name: "cluster_worker_event_loop_lag_seconds", kind: .histogram,
                                                  value: Double(lagSum) / 1e6, buckets: lagBuckets)])
    }
}
