@testable import Cluster
import CoreMetrics
import Synchronization
import Testing

@Suite struct MetricsBatchTests {
    typealias Series = MetricsBatch.Series

    static func counter(_ name: String, _ value: Double, labels: [MetricsBatch.Label] = []) -> Series {
        Series(name: name, labels: labels, kind: .counter, value: value)
    }

    @Test func aBatchTravelsAsAControlMessageAndComesBackEqual() throws {
        let batch = MetricsBatch(series: [
            Self.counter("app_hits_total", 3, labels: [.init(name: "route", value: "a \"quoted\" \\ value")]),
            Series(name: "app_seconds", kind: .histogram, value: 0.5, buckets: Array(repeating: 1, count: 12)),
        ])
        let decoded = try Control(Control.metrics(batch).frame)
        #expect(decoded == .metrics(batch))
        try batch.validate()
    }

    @Test(arguments: [
        ("9starts_with_a_digit", 1.0, "no metric name"),
        ("cluster_requests_total", 1.0, "the primary's own"),
        ("app_total", -1.0, "outside 0...2^53"),
        ("app_total", Double.nan, "has the value"),
        ("app_total", Double.infinity, "has the value"),
        ("app_total", 1e300, "outside 0...2^53"),
    ])
    func aSeriesOutOfBoundsIsRefusedWithItsReason(name: String, value: Double, reason: String) {
        #expect { try MetricsBatch(series: [Self.counter(name, value)]).validate() } throws: { error in
            "\(error)".contains(reason)
        }
    }

    @Test func labelsAreBoundedInNumberLengthAndNames() {
        let many = (0...MetricsBatch.maximumLabels).map { MetricsBatch.Label(name: "l\($0)", value: "v") }
        let long = [MetricsBatch.Label(name: "l", value: String(repeating: "x", count: MetricsBatch.maximumLabelValueLength + 1))]
        for labels in [many, long, [.init(name: "slot", value: "3")], [.init(name: "__name__", value: "x")],
                       [.init(name: "a", value: "1"), .init(name: "a", value: "2")]] {
            #expect(throws: ClusterError.self) { try MetricsBatch(series: [Self.counter("app_total", 1, labels: labels)]).validate() }
        }
    }

    @Test func tooManySeriesOrATwiceSentSeriesOrWrongBucketsAreRefused() {
        let tooMany = MetricsBatch(series: (0...MetricsBatch.maximumSeries).map { Self.counter("app_\($0)_total", 1) })
        let twice = MetricsBatch(series: [Self.counter("app_total", 1), Self.counter("app_total", 2)])
        let buckets = MetricsBatch(series: [Series(name: "app_seconds", kind: .histogram, value: 1, buckets: [1, 2])])
        let negative = MetricsBatch(series: [Series(name: "app_seconds", kind: .histogram, value: 1,
                                                    buckets: [-1] + Array(repeating: 0, count: 11))])
        for batch in [tooMany, twice, buckets, negative] {
            #expect(throws: ClusterError.self) { try batch.validate() }
        }
    }
}

@Suite struct WorkerMetricsStoreTests {
    @Test func countersSendTheirIncreaseOnceGaugesTheirLastValueTimersBucketCounts() throws {
        let factory = WorkerMetricsFactory(store: WorkerMetricsStore())
        let counter = factory.makeCounter(label: "app.hits", dimensions: [("route", "a")])
        counter.increment(by: 2)
        counter.increment(by: 3)
        counter.increment(by: -7) // a counter never goes down
        factory.makeRecorder(label: "app_queue", dimensions: [], aggregate: false).record(Int64(4))
        let timer = factory.makeTimer(label: "app_seconds", dimensions: [])
        timer.recordNanoseconds(3_000_000)   // 0.003 s: the first bucket (≤ 0.005)
        timer.recordNanoseconds(20_000_000_000) // 20 s: +Inf
        let batch = try #require(factory.store.takeBatch())
        try batch.validate()
        let byName = Dictionary(uniqueKeysWithValues: batch.series.map { ($0.name, $0) })
        #expect(byName["app_hits"]?.value == 5 && byName["app_hits"]?.labels == [.init(name: "route", value: "a")],
                "the name made valid, the increase summed: \(batch)")
        #expect(byName["app_queue"]?.kind == .gauge && byName["app_queue"]?.value == 4)
        let histogram = try #require(byName["app_seconds"])
        #expect(histogram.buckets?.first == 1 && histogram.buckets?.last == 1 && histogram.buckets?.reduce(0, +) == 2)
        #expect(abs(histogram.value - 20.003) < 1e-9)
        #expect(factory.store.takeBatch() == nil, "nothing changed since: nothing to send")
        counter.increment(by: 1)
        #expect(factory.store.takeBatch()?.series == [.init(name: "app_hits", labels: [.init(name: "route", value: "a")], kind: .counter, value: 1)])
    }

    @Test func theStoreKeepsAtMostItsSeriesAndWarnsOnce() {
        let warnings = Warnings()
        let store = WorkerMetricsStore { warnings.add($0) }
        for index in 0..<(MetricsBatch.maximumSeries + 5) {
            WorkerMetricsFactory(store: store).makeCounter(label: "app_\(index)_total", dimensions: []).increment(by: 1)
        }
        #expect(store.takeBatch()?.series.count == MetricsBatch.maximumSeries)
        #expect(warnings.all.count == 1 && warnings.all[0].contains("1000 series"), "\(warnings.all)")
    }

    @Test func reservedNamesAndLabelsAreRenamedNotLost() throws {
        let key = WorkerMetricsStore.key("cluster_requests_total", [("slot", "x"), ("le", "y"), ("ok", "z")])
        #expect(key.name == "app_cluster_requests_total")
        #expect(key.labels.map(\.name) == ["app_le", "app_slot", "ok"])
        try MetricsBatch(series: [.init(name: key.name, labels: key.labels, kind: .counter, value: 1)]).validate()
    }
}

@Suite struct WorkerMetricsTableTests {
    static func hits(_ value: Double) -> MetricsBatch {
        MetricsBatch(series: [.init(name: "app_hits_total", kind: .counter, value: value)])
    }

    @Test func countersAddUpPerSlotAcrossRestartsAndNeverGoDown() {
        var table = WorkerMetricsTable()
        table.absorb(Self.hits(5), slot: 0)
        table.absorb(Self.hits(2), slot: 1)
        // Slot 0's worker restarts: the new one counts from zero and sends its own increase.
        table.absorb(Self.hits(1), slot: 0)
        let text = table.exposition()
        #expect(text.contains("# TYPE app_hits_total counter\n"))
        #expect(text.contains("app_hits_total{slot=\"0\"} 6\n") && text.contains("app_hits_total{slot=\"1\"} 2\n"), "\(text)")
    }

    @Test func histogramsAreCumulativeBucketsWithSumAndCount() {
        var table = WorkerMetricsTable()
        let buckets = [1] + Array(repeating: 0, count: 10) + [1]
        let batch = MetricsBatch(series: [.init(name: "app_seconds", labels: [.init(name: "route", value: "a\"b")],
                                                kind: .histogram, value: 20.5, buckets: buckets)])
        table.absorb(batch, slot: 2)
        table.absorb(batch, slot: 2)
        let text = table.exposition()
        #expect(text.contains("app_seconds_bucket{slot=\"2\",route=\"a\\\"b\",le=\"0.005\"} 2\n"), "\(text)")
        #expect(text.contains("app_seconds_bucket{slot=\"2\",route=\"a\\\"b\",le=\"10\"} 2\n"))
        #expect(text.contains("app_seconds_bucket{slot=\"2\",route=\"a\\\"b\",le=\"+Inf\"} 4\n"))
        #expect(text.contains("app_seconds_sum{slot=\"2\",route=\"a\\\"b\"} 41\n"))
        #expect(text.contains("app_seconds_count{slot=\"2\",route=\"a\\\"b\"} 4\n"))
    }

    @Test func aNameThePrimaryAlsoRecordsStaysOneFamilyAndOneOfAnotherTypeIsLeftOutSayingSo() {
        var table = WorkerMetricsTable()
        table.absorb(MetricsBatch(series: [MetricsBatchTests.counter("app_hits_total", 2), MetricsBatchTests.counter("app_queue", 1),
                                           MetricsBatchTests.counter("app_other_total", 5)]), slot: 0)
        let own = """
            # HELP app_hits_total Hits.
            # TYPE app_hits_total counter
            app_hits_total 3
            # TYPE app_queue gauge
            app_queue 7
            # TYPE cluster_workers gauge
            cluster_workers 1

            """
        #expect(table.exposition(mergingInto: own) == """
            # HELP app_hits_total Hits.
            # TYPE app_hits_total counter
            app_hits_total 3
            app_hits_total{slot="0"} 2
            # TYPE app_queue gauge
            app_queue 7
            # the workers' app_queue is a counter, the primary's a gauge: left out
            # TYPE cluster_workers gauge
            cluster_workers 1
            # TYPE app_other_total counter
            app_other_total{slot="0"} 5

            """)
    }

    @Test func aNameOfAnotherKindAndSeriesPastASlotsBoundAreLeftOut() {
        var table = WorkerMetricsTable()
        table.absorb(Self.hits(1), slot: 0)
        let refusals = table.absorb(MetricsBatch(series: [.init(name: "app_hits_total", kind: .gauge, value: 3)]), slot: 1)
        #expect(refusals.count == 1 && refusals[0].contains("is a counter"))
        let full = MetricsBatch(series: (0..<MetricsBatch.maximumSeries).map { .init(name: "app_\($0)", kind: .gauge, value: 1) })
        #expect(table.absorb(full, slot: 0).count == 1, "slot 0 had one series already: the last of these is left out")
        #expect(table.absorb(full, slot: 1).isEmpty, "another slot has its own bound")
        #expect(!table.exposition().contains("app_hits_total{slot=\"1\"}"))
    }
}

private final class Warnings: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
