@testable import Cluster
import Glibc
import Logging
import Synchronization
import Testing

@Suite struct ListenAddressTests {
    @Test(arguments: [
        ("tcp://127.0.0.1:8000", ListenAddress.tcp(host: "127.0.0.1", port: 8000)),
        ("0.0.0.0:80", .tcp(host: "0.0.0.0", port: 80)),
        (":3000", .tcp(port: 3000)),
        ("tcp://[::1]:8080", .tcp(host: "::1", port: 8080)),
        ("unix:/tmp/app.sock", .unix("/tmp/app.sock")),
        ("fd://3", .inherited(descriptor: 3)),
        ("fd:web", .inherited(named: "web")),
        ("tcp://0.0.0.0:8000?proxy=v2", .tcp(port: 8000, proxyProtocol: .v2)),
        ("[::1]:80?proxy=v1", .tcp(host: "::1", port: 80, proxyProtocol: .v1)),
        ("unix:/tmp/app.sock?proxy=v2", .unix("/tmp/app.sock", proxyProtocol: .v2)),
    ])
    func addressesParse(text: String, expected: ListenAddress) throws {
        #expect(try ListenAddress(parsing: text) == expected)
    }

    @Test func addressesPrintAsTheyParse() throws {
        for text in ["tcp://127.0.0.1:8000", "tcp://[::1]:8080", "unix:/tmp/app.sock",
                     "tcp://0.0.0.0:8000?proxy=v2", "tcp://[::1]:8080?proxy=v1", "unix:/tmp/app.sock?proxy=v1", "fd://4", "fd:web-admin", "fd:web?proxy=v2"] {
            #expect(try ListenAddress(parsing: text).description == text)
        }
    }

    @Test func theProxySettingIsPartOfTheAddress() throws {
        var address = ListenAddress.tcp(port: 8000)
        #expect(address.proxyProtocol == nil)
        address.proxyProtocol = .v2
        #expect(address == (try ListenAddress(parsing: "tcp://0.0.0.0:8000?proxy=v2")))
        #expect(address != .tcp(port: 8000))
    }

    @Test(arguments: ["tcp://host", "tcp://host:99999", "unix:", "tcp://host:port",
                      "tcp://0.0.0.0:80?proxy=v3", "tcp://0.0.0.0:80?proxy", "tcp://0.0.0.0:80?backlog=5", "unix:?proxy=v1",
                      "fd://", "fd://2", "fd://x", "fd:", "fd:a:b", "fd:a b"])
    func badAddressesSayWhatToWrite(text: String) {
        #expect { try ListenAddress(parsing: text) } throws: { error in
            let error = error as? ClusterError
            return error?.code == .invalidAddress && error?.context.contains(text) == true
        }
    }
}

@Suite struct SignalTests {
    @Test func signalsPrintByName() {
        #expect(Signal.kill.description == "SIGKILL")
        #expect(ExitStatus.signaled(.kill).description == "signal 9 (SIGKILL)")
        #expect(ExitStatus.exited(3).description == "exit code 3")
        #expect(Signal(rawValue: 63).description == "signal 63")
    }

    @Test func signalsParseByNameOrNumber() {
        #expect(Signal(name: "SIGTERM") == .terminate)
        #expect(Signal(name: "term") == .terminate)
        #expect(Signal(name: "9") == .kill)
        #expect(Signal(name: "SIGNOPE") == nil)
    }
}

@Suite struct MailboxTests {
    @Test func aFullMailboxAsksToPauseAndReliefComesAtHalf() async {
        let relieved = Counter()
        let mailbox = Mailbox<Int>(limit: 4) { relieved.increment() }
        #expect(mailbox.post(1) && mailbox.post(2) && mailbox.post(3))
        #expect(mailbox.post(4) == false, "the fourth message fills it")
        #expect(await mailbox.next() == 1)
        #expect(relieved.value == 0)
        #expect(await mailbox.next() == 2)
        #expect(relieved.value == 1, "down to half: reading may resume")
        #expect(await mailbox.next() == 3)
        #expect(await mailbox.next() == 4)
        #expect(relieved.value == 1)
    }

    @Test func aWaitingConsumerGetsTheNextMessageAndFinishEndsIt() async {
        let mailbox = Mailbox<Int>(limit: 4)
        async let first = mailbox.next()
        try? await Task.sleep(for: .milliseconds(20))
        mailbox.post(7)
        #expect(await first == 7)
        mailbox.post(8)
        mailbox.finish()
        #expect(await mailbox.next() == 8, "what was queued before finish is delivered")
        #expect(await mailbox.next() == nil)
    }
}

@Suite struct EnvironmentTests {
    @Test func aBadNumberNamesTheVariableAndTheRange() throws {
        setenv("CLUSTER_TEST_WORKERS", "many", 1)
        defer { unsetenv("CLUSTER_TEST_WORKERS") }
        #expect { try Cluster.environmentInteger("CLUSTER_TEST_WORKERS", default: 2, in: 1...64) } throws: {
            ($0 as? ClusterError)?.context == "CLUSTER_TEST_WORKERS=many is not a whole number from 1 to 64; unset it for the default (2)"
        }
        unsetenv("CLUSTER_TEST_WORKERS")
        #expect(try Cluster.environmentInteger("CLUSTER_TEST_WORKERS", default: 2, in: 1...64) == 2)
    }
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

@Suite struct WorkerFigureTests {
    @Test func clusterSumsSaturateInsteadOfTrapping() {
        let liar = WorkerStats(requests: .max, connections: .max, connectionsTotal: .max, residentMemory: .max)
        let sum = ClusterStats([liar, liar, WorkerStats(requests: 1, residentMemory: 1)])
        #expect(sum.requests == .max)
        #expect(sum.connections == .max)
        #expect(sum.residentMemory == .max)
    }

    @Test func aHeartbeatOutsideWhatAProcessCanReachIsALie() throws {
        try HeartbeatReport(requests: 10, connections: 2, cpu: 5_000, rss: 20 << 20).validate()
        #expect { try HeartbeatReport(rss: .max).validate() } throws: {
            ($0 as? ClusterError)?.context == "its heartbeat reports rss = 9223372036854775807, outside 0...281474976710656"
        }
        #expect { try HeartbeatReport(requests: -1).validate() } throws: { ($0 as? ClusterError)?.code == .malformedFrame }
        #expect { try HeartbeatReport(busy: 1001).validate() } throws: { ($0 as? ClusterError)?.code == .malformedFrame }
        #expect { try HeartbeatReport(lagBuckets: [1, 2]).validate() } throws: {
            ($0 as? ClusterError)?.context == "its heartbeat reports lagBuckets.count = 2, outside 12...12"
        }
        var negative = HeartbeatReport()
        negative.lagBuckets[3] = -1
        #expect { try negative.validate() } throws: { ($0 as? ClusterError)?.code == .malformedFrame }
        #expect { try HeartbeatReport(lagSum: -5).validate() } throws: { ($0 as? ClusterError)?.code == .malformedFrame }
    }

    @Test func aHeartbeatCountsEachProbesLagOnceIntoTheHistogramAndStartsAgain() throws {
        let heartbeat = Heartbeat()
        heartbeat.watch { run in run() } // a loop that answers at once: well under 5 ms late
        heartbeat.probe()
        heartbeat.probe()
        let first = heartbeat.report()
        #expect(first.lagBuckets[0] == 2, "\(first.lagBuckets)")
        #expect(first.lagBuckets.reduce(0, +) == 2)
        #expect(heartbeat.report().lagBuckets.reduce(0, +) == 0) // counted once: the next report starts at zero
        var table = WorkerMetricsTable()
        table.absorb(first.lagHistogram, slot: 1)
        table.absorb(first.lagHistogram, slot: 1) // a second report, or the slot's next worker: added up
        let text = table.exposition()
        #expect(text.contains("# TYPE cluster_worker_event_loop_lag_seconds histogram\n"), "\(text)")
        #expect(text.contains("cluster_worker_event_loop_lag_seconds_bucket{slot=\"1\",le=\"0.005\"} 4\n"), "\(text)")
        #expect(text.contains("cluster_worker_event_loop_lag_seconds_count{slot=\"1\"} 4\n"), "\(text)")
    }
}

@Suite struct InjectedLoggerTests {
    @Test func aLoggerGivenInTheSettingsIsThePrimarysAndOtherSetupsKeepIt() {
        var given = PrimarySettings()
        given.logger = Logger(label: "app.cluster")
        var settings = PrimarySettings().merging(given)
        #expect(settings.logger.label == "app.cluster")
        settings = settings.merging(PrimarySettings(user: "web"))
        #expect(settings.logger.label == "app.cluster", "a setup that does not name the logger keeps it")
        #expect(PrimarySettings().logger.label == "cluster.primary")
    }
}
