@testable import Cluster
import Testing

/// A clock reading the tests set by hand.
struct ManualInstant: InstantProtocol, Sendable {
    var offset: Duration
    func advanced(by duration: Duration) -> ManualInstant { ManualInstant(offset: offset + duration) }
    func duration(to other: ManualInstant) -> Duration { other.offset - offset }
    static func < (lhs: ManualInstant, rhs: ManualInstant) -> Bool { lhs.offset < rhs.offset }
    static func seconds(_ value: Double) -> ManualInstant { ManualInstant(offset: .milliseconds(Int(value * 1000))) }
}

@Suite struct RestartPolicyTests {
    typealias Ledger = RestartLedger<ManualInstant>

    @Test func aSlotRestartsAtOnceThenBacksOffExponentiallyUpToTheCeiling() {
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), factor: 2, maxDelay: .seconds(1),
                                                  resetAfter: .seconds(10)))
        var delays: [RestartDecision] = []
        for second in 0..<6 {
            delays.append(ledger.exited(worker: "worker 1", slot: 0, status: .signaled(.kill), uptime: .seconds(1),
                                        wasReady: true, at: .seconds(Double(second))))
        }
        #expect(delays == [.restart(after: .zero), .restart(after: .milliseconds(100)), .restart(after: .milliseconds(200)),
                           .restart(after: .milliseconds(400)), .restart(after: .milliseconds(800)),
                           .restart(after: .seconds(1))])
    }

    @Test func backoffIsPerSlotAndResetsAfterAWorkerStayedUp() {
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), resetAfter: .seconds(10)))
        _ = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), wasReady: true, at: .seconds(0))
        _ = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), wasReady: true, at: .seconds(1))
        #expect(ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), wasReady: true, at: .seconds(2))
                == .restart(after: .milliseconds(200)), "the third restart of slot 0 in a row")
        #expect(ledger.exited(worker: "w", slot: 1, status: .exited(1), uptime: .seconds(1), wasReady: true, at: .seconds(2))
                == .restart(after: .zero), "another slot starts its own count")
        #expect(ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(11), wasReady: true, at: .seconds(20))
                == .restart(after: .zero), "a worker up longer than resetAfter resets its slot")
    }

    @Test func moreBootFailuresThanAllowedWithinThePeriodStopTheCluster() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 3, period: .seconds(10)))
        for second in 0..<3 {
            let decision = ledger.exited(worker: "worker \(second + 1) (pid 9)", slot: 0, status: .exited(1), uptime: .zero,
                                         wasReady: false, at: .seconds(Double(second)))
            guard case .restart = decision else {
                Issue.record("boot failure \(second + 1) of 3 allowed stopped the cluster: \(decision)")
                return
            }
        }
        let fourth = ledger.exited(worker: "worker 4 (pid 9)", slot: 0, status: .exited(1), uptime: .zero,
                                   wasReady: false, at: .seconds(3))
        guard case .stop(let reason) = fourth else {
            Issue.record("a fourth boot failure within 10 s did not stop the cluster: \(fourth)")
            return
        }
        #expect(reason.contains("worker 4 (pid 9)") && reason.contains("exit code 1") && reason.contains("4 workers failed to boot"),
                "the message names the worker, its exit and the count: \(reason)")
    }

    @Test func bootFailuresOutsideThePeriodAreForgotten() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 1, period: .seconds(10)))
        for second in [0.0, 11, 22, 33] {
            guard case .restart = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .zero, wasReady: false,
                                                at: .seconds(second)) else {
                Issue.record("a boot failure 11 s after the last stopped the cluster; only failures within 10 s count")
                return
            }
        }
        guard case .stop = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .zero, wasReady: false,
                                         at: .seconds(34)) else {
            Issue.record("two boot failures within 1 s, with one allowed, did not stop the cluster")
            return
        }
    }

    @Test func workersThatServedAreAlwaysRestarted() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 0, period: .seconds(60)))
        for second in 0..<50 {
            guard case .restart = ledger.exited(worker: "w", slot: second % 4, status: .signaled(.segmentationFault),
                                                uptime: .seconds(2), wasReady: true, at: .seconds(Double(second))) else {
                Issue.record("a crash after the worker was ready stopped the cluster")
                return
            }
        }
    }

    @Test func theCannotBootExitCodeStopsAtOnce() {
        var ledger = Ledger(policy: RestartPolicy())
        let decision = ledger.exited(worker: "worker 1 (pid 5)", slot: 0, status: .exited(RestartPolicy.cannotBootExitCode),
                                     uptime: .zero, wasReady: false, at: .seconds(0))
        guard case .stop(let reason) = decision else {
            Issue.record("exit code 78 did not stop the cluster: \(decision)")
            return
        }
        #expect(reason.contains("worker 1 (pid 5)") && reason.contains("78"))
    }
}
