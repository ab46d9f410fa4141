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
        // Six deaths 1 s after start are six boot failures; the crash-loop guard is not what
        // this measures, so it allows them.
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), factor: 2, maxDelay: .seconds(1),
                                                  resetAfter: .seconds(10), maxBootFailures: 100))
        var delays: [RestartDecision] = []
        for second in 0..<6 {
            delays.append(ledger.exited(worker: "worker 1", slot: 0, status: .signaled(.kill), uptime: .seconds(1),
                                        readyFor: .milliseconds(500), serving: 3, at: .seconds(Double(second))))
        }
        #expect(delays == [.restart(after: .zero), .restart(after: .milliseconds(100)), .restart(after: .milliseconds(200)),
                           .restart(after: .milliseconds(400)), .restart(after: .milliseconds(800)),
                           .restart(after: .seconds(1))])
    }

    @Test func backoffIsPerSlotAndResetsAfterAWorkerStayedUp() {
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), resetAfter: .seconds(10)))
        _ = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), readyFor: .milliseconds(500), serving: 3, at: .seconds(0))
        _ = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), readyFor: .milliseconds(500), serving: 3, at: .seconds(1))
        #expect(ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), readyFor: .milliseconds(500), serving: 3, at: .seconds(2))
                == .restart(after: .milliseconds(200)), "the third restart of slot 0 in a row")
        #expect(ledger.exited(worker: "w", slot: 1, status: .exited(1), uptime: .seconds(1), readyFor: .milliseconds(500), serving: 3, at: .seconds(2))
                == .restart(after: .zero), "another slot starts its own count")
        #expect(ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(11), readyFor: .seconds(10), serving: 3, at: .seconds(20))
                == .restart(after: .zero), "a worker up longer than resetAfter resets its slot")
    }

    @Test func moreBootFailuresThanAllowedWithinThePeriodWithNoWorkerServingStopTheCluster() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 3, period: .seconds(10)))
        for second in 0..<3 {
            let decision = ledger.exited(worker: "worker \(second + 1) (pid 9)", slot: 0, status: .exited(1), uptime: .zero,
                                         readyFor: nil, serving: 0, at: .seconds(Double(second)))
            guard case .restart = decision else {
                Issue.record("boot failure \(second + 1) of 3 allowed stopped the cluster: \(decision)")
                return
            }
        }
        let fourth = ledger.exited(worker: "worker 4 (pid 9)", slot: 0, status: .exited(1), uptime: .zero,
                                   readyFor: nil, serving: 0, at: .seconds(3))
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
            guard case .restart = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .zero, readyFor: nil,
                                                serving: 0, at: .seconds(second)) else {
                Issue.record("a boot failure 11 s after the last stopped the cluster; only failures within 10 s count")
                return
            }
        }
        guard case .stop = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .zero, readyFor: nil,
                                         serving: 0, at: .seconds(34)) else {
            Issue.record("two boot failures within 1 s, with one allowed, did not stop the cluster")
            return
        }
    }

    @Test func workersThatServedLongerThanResetAfterAreAlwaysRestartedAtOnce() {
        var ledger = Ledger(policy: RestartPolicy(resetAfter: .seconds(30), maxBootFailures: 0, period: .seconds(60)))
        for second in 0..<50 {
            let decision = ledger.exited(worker: "w", slot: second % 4, status: .signaled(.segmentationFault),
                                         uptime: .seconds(31), readyFor: .seconds(30), serving: second % 2, at: .seconds(Double(second)))
            guard decision == .restart(after: .zero) else {
                Issue.record("a crash after the worker served 30 s was not an immediate restart: \(decision)")
                return
            }
        }
    }

    @Test func theCannotBootExitCodeWithNoWorkerServingStopsAtOnce() {
        var ledger = Ledger(policy: RestartPolicy())
        let decision = ledger.exited(worker: "worker 1 (pid 5)", slot: 0, status: .exited(RestartPolicy.cannotBootExitCode),
                                     uptime: .zero, readyFor: nil, serving: 0, at: .seconds(0))
        guard case .stop(let reason) = decision else {
            Issue.record("exit code 78 did not stop the cluster: \(decision)")
            return
        }
        #expect(reason.contains("worker 1 (pid 5)") && reason.contains("78"))
    }

    // MARK: The crash-loop guard with workers serving

    /// A bad deploy: boot failures with one healthy worker still serving.
    private func failToBoot(_ ledger: inout Ledger, times: Int, from start: Double, serving: Int = 1) -> [RestartDecision] {
        (0..<times).map { index in
            ledger.exited(worker: "worker \(index + 10) (pid 9)", slot: 1, status: .exited(1), uptime: .zero, readyFor: nil,
                          serving: serving, at: .seconds(start + Double(index) * 0.1))
        }
    }

    @Test func bootFailuresPastTheLimitWhileAWorkerServesDegradeOnceAndBackOffExponentiallyToTheCap() {
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), maxBootFailures: 3, period: .seconds(10),
                                                  degradedDelay: .seconds(1), maxDegradedDelay: .seconds(8)))
        let decisions = failToBoot(&ledger, times: 9, from: 0)
        #expect(decisions.prefix(3) == [.restart(after: .zero), .restart(after: .milliseconds(100)),
                                        .restart(after: .milliseconds(200))], "within the limit: the slot's own backoff")
        guard case .degrade(let delay, let reason) = decisions[3] else {
            Issue.record("a fourth boot failure with a worker serving did not degrade the cluster: \(decisions[3])")
            return
        }
        #expect(delay == .seconds(1))
        #expect(reason.contains("worker 13 (pid 9)") && reason.contains("4 workers failed to boot within 10 s")
                && reason.contains("degraded") && reason.contains("1 worker keeps serving") && reason.contains("8 s"),
                "the message names the worker, the count, what still serves and the cap: \(reason)")
        #expect(Array(decisions.dropFirst(4)) == [.restart(after: .seconds(2)), .restart(after: .seconds(4)),
                                                  .restart(after: .seconds(8)), .restart(after: .seconds(8)),
                                                  .restart(after: .seconds(8))],
                "one degrade per episode, then attempts double up to the cap")
        #expect(ledger.episode?.failures == 6)
    }

    @Test func aWorkerThatBootsEndsTheEpisodeAndTheNextOneNeedsTheFullCountAgain() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 2, period: .seconds(60), degradedDelay: .seconds(1)))
        _ = failToBoot(&ledger, times: 5, from: 0)
        #expect(ledger.episode == ManualInstant.seconds(0.2).episode(failures: 3))
        #expect(ledger.booted() == ManualInstant.seconds(0.2).episode(failures: 3), "the episode that ended, for the log")
        #expect(ledger.episode == nil && ledger.booted() == nil)
        let after = failToBoot(&ledger, times: 3, from: 5)
        #expect(after.prefix(2) == [.restart(after: .zero), .restart(after: .milliseconds(100))],
                "restarts are fast again, the slot's backoff starts over")
        guard case .degrade = after[2] else {
            Issue.record("a new run of failures past the limit did not begin a new episode: \(after[2])")
            return
        }
    }

    @Test func theLastServingWorkerGoneDuringAnEpisodeIsRestartedAndABootFailureThenStopsTheCluster() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 1, period: .seconds(60)))
        _ = failToBoot(&ledger, times: 2, from: 0, serving: 2)
        #expect(ledger.episode != nil)
        #expect(ledger.exited(worker: "worker 1 (pid 4)", slot: 0, status: .signaled(.kill), uptime: .seconds(30), readyFor: .seconds(29),
                              serving: 1, at: .seconds(1)) == .restart(after: .zero),
                "a serving worker that dies while another serves is restarted")
        #expect(ledger.exited(worker: "worker 2 (pid 5)", slot: 2, status: .signaled(.segmentationFault), uptime: .seconds(3),
                              readyFor: .seconds(2), serving: 0, at: .seconds(3)) == .restart(after: .zero),
                "the last serving worker, killed by what may be a request, is restarted: its slot may well boot")
        let last = ledger.exited(worker: "worker 6 (pid 8)", slot: 2, status: .exited(1), uptime: .seconds(1),
                                 readyFor: nil, serving: 0, at: .seconds(4))
        guard case .stop(let reason) = last else {
            Issue.record("a boot failure with no worker serving during a crash loop did not stop the cluster: \(last)")
            return
        }
        #expect(reason.contains("worker 6 (pid 8) exited (exit code 1) before it was ready") && reason.contains("no worker is left serving")
                && reason.contains("crash loop") && reason.contains("2 boot failures since"), "\(reason)")
    }

    @Test func theCannotBootExitCodeWhileWorkersServeDegradesAtOnce() {
        var ledger = Ledger(policy: RestartPolicy(degradedDelay: .seconds(2)))
        let decision = ledger.exited(worker: "worker 3 (pid 7)", slot: 1, status: .exited(RestartPolicy.cannotBootExitCode),
                                     uptime: .zero, readyFor: nil, serving: 2, at: .seconds(0))
        guard case .degrade(let delay, let reason) = decision else {
            Issue.record("exit code 78 with 2 workers serving did not degrade the cluster: \(decision)")
            return
        }
        #expect(delay == .seconds(2))
        #expect(reason.contains("worker 3 (pid 7)") && reason.contains("78") && reason.contains("2 workers keep serving"), "\(reason)")
    }

    // MARK: Deaths soon after ready

    /// A worker ready 0.5 s after it started, dead 5 s later: a bad deploy, or a request's doing.
    private func dieAfterReady(_ ledger: inout Ledger, times: Int, from start: Double, every interval: Double = 5.5,
                               slot: (Int) -> Int = { _ in 0 }, serving: Int = 1) -> [RestartDecision] {
        (0..<times).map { index in
            ledger.exited(worker: "worker \(index + 10) (pid 9)", slot: slot(index), status: .exited(1), uptime: .milliseconds(5_500),
                          readyFor: .seconds(5), serving: serving, at: .seconds(start + Double(index) * interval))
        }
    }

    @Test func theDefaultResetAfterIsThirtySeconds() {
        #expect(RestartPolicy().resetAfter == .seconds(30))
        #expect(RestartPolicy(resetAfter: .seconds(-1)).resetAfter == .zero)
    }

    @Test func aSlotsBackoffGrowsAcrossDeathsSoonAfterReadyUpToMaxDelayAfterReadyAndResetsAfterResetAfter() {
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), resetAfter: .seconds(30)))
        #expect(dieAfterReady(&ledger, times: 7, from: 0)
                == [.restart(after: .zero), .restart(after: .milliseconds(100)), .restart(after: .milliseconds(200)),
                    .restart(after: .milliseconds(400)), .restart(after: .milliseconds(800)), .restart(after: .seconds(1)),
                    .restart(after: .seconds(1))],
                "the first restart is immediate, then a death 5.5 s after start does not reset the slot; 1 s at most")
        #expect(ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(29), readyFor: .seconds(28), serving: 1,
                              at: .seconds(60)) == .restart(after: .seconds(1)), "29 s up is still short of 30 s")
        #expect(ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(30), readyFor: .seconds(29), serving: 1,
                              at: .seconds(100)) == .restart(after: .zero), "30 s up starts the slot over")
        var patient = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), maxDelayAfterReady: .seconds(5)))
        #expect(dieAfterReady(&patient, times: 8, from: 0).last == .restart(after: .seconds(5)), "the ceiling is a setting")
        #expect(RestartPolicy(initialDelay: .seconds(5)).maxDelayAfterReady == .seconds(5),
                "a restart delay asked for is not cut short")
    }

    @Test func deathsAfterReadyAreNotBootFailuresAndBeginNoEpisode() {
        var ledger = Ledger(policy: RestartPolicy(maxBootFailures: 3, period: .seconds(60)))
        let decisions = dieAfterReady(&ledger, times: 20, from: 0, every: 1, slot: { $0 % 2 })
        #expect(decisions.allSatisfy { if case .restart(let delay) = $0 { delay <= .seconds(1) } else { false } }, "\(decisions)")
        #expect(ledger.episode == nil && ledger.bootFailuresCounted == 0)
        #expect(failToBoot(&ledger, times: 3, from: 30).allSatisfy { if case .restart = $0 { true } else { false } },
                "the boot failures allowed are all still there")
    }

    /// A client that makes a worker trap about once a second, against every worker the
    /// moment it is up: each death costs that worker, never the service.
    @Test func aPoisonRequestOnceASecondNeverStopsTheClusterEvenWithNoWorkerServing() {
        var ledger = Ledger(policy: RestartPolicy())
        for index in 0..<600 {
            let decision = ledger.exited(worker: "worker \(index)", slot: index % 2, status: .signaled(.illegalInstruction),
                                         uptime: .milliseconds(60), readyFor: .milliseconds(10), serving: 0,
                                         at: .seconds(Double(index) * 0.5))
            guard case .restart(let delay) = decision, delay <= .seconds(1) else {
                Issue.record("death \(index + 1), 10 ms after ready, with no worker serving: \(decision)")
                return
            }
        }
        #expect(ledger.episode == nil)
    }

    @Test func aWorkerThatDiesAfterALongHealthyLifeNeverCountsEvenDuringAnEpisode() {
        var ledger = Ledger(policy: RestartPolicy(initialDelay: .milliseconds(100), resetAfter: .seconds(30), maxBootFailures: 1,
                                                  period: .seconds(60)))
        for second in 0..<10 {
            #expect(ledger.exited(worker: "w", slot: 0, status: .signaled(.segmentationFault), uptime: .seconds(3600),
                                  readyFor: .seconds(3599), serving: 2, at: .seconds(Double(second))) == .restart(after: .zero))
        }
        #expect(ledger.episode == nil, "ten traps after an hour each began no crash loop")
        _ = failToBoot(&ledger, times: 2, from: 20, serving: 2)
        #expect(ledger.episode?.failures == 1)
        #expect(ledger.exited(worker: "w", slot: 0, status: .signaled(.segmentationFault), uptime: .seconds(3600),
                              readyFor: .seconds(3599), serving: 2, at: .seconds(40)) == .restart(after: .zero))
        #expect(ledger.episode?.failures == 1, "a long-lived worker's death is not a boot attempt of the episode")
    }

    @Test func theExitMessageSaysHowLongAfterReadyTheWorkerDied() {
        #expect(Ledger.exit(of: "worker 3 (pid 9)", .exited(1), readyFor: .milliseconds(5_460))
                == "worker 3 (pid 9) exited (exit code 1) 5.5 s after it was ready")
        #expect(Ledger.exit(of: "worker 3 (pid 9)", .exited(1), readyFor: nil) == "worker 3 (pid 9) exited (exit code 1) before it was ready")
        #expect(Ledger.roughly(.seconds(42)) == "42 s" && Ledger.roughly(.seconds(7200)) == "7200 s" && Ledger.roughly(.zero) == "0 s")
    }
}

extension ManualInstant {
    /// A crash-loop episode that began at this instant.
    func episode(failures: Int) -> RestartLedger<ManualInstant>.Episode {
        .init(began: self, failures: failures)
    }
}

/// Settings a program passes through the public API are untrusted too: none may trap.
@Suite struct SupervisionFigureTests {
    @Test func aHugeBackoffFactorReachesTheCeilingWithoutATrap() {
        var ledger = RestartLedger<ManualInstant>(policy: RestartPolicy(initialDelay: .seconds(1), factor: 1e300,
                                                                        maxDelay: .seconds(Int64.max / 2), resetAfter: .seconds(10)))
        var last: RestartDecision?
        for second in 0..<4 {
            last = ledger.exited(worker: "w", slot: 0, status: .exited(1), uptime: .seconds(1), readyFor: nil, serving: 3,
                                 at: .seconds(Double(second)))
        }
        #expect(last == .restart(after: .seconds(Int64.max / 2)))
    }

    @Test func anyDurationPrintsInALogLine() {
        #expect(Autoscaler.milliseconds(.milliseconds(250)) == "250 ms")
        #expect(Autoscaler.milliseconds(.milliseconds(4097)) == "4.10 s")
        #expect(!Autoscaler.milliseconds(.seconds(Int64.max)).isEmpty)
        typealias Ledger = RestartLedger<ContinuousClock.Instant>
        #expect(Ledger.seconds(.nanoseconds(4_096_997_526)) == "4.1 s", "a measured duration prints rounded")
        #expect(Ledger.seconds(.seconds(30)) == "30 s")
        #expect(Ledger.seconds(.milliseconds(250)) == "250 ms")
        #expect(Ledger.seconds(.seconds(3725.5)) == "3725 s")
    }
}
