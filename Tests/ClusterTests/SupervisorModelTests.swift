@testable import Cluster
import Logging
import Testing

/// Supervision for the model's tests: no signals, no autoscaling, a 1 s watchdog.
func modelSupervision(workers: Int, restart: RestartPolicy = RestartPolicy(), maxSurge: Int = 1,
                      recycling: Supervision.Recycling = .init()) -> Supervision {
    Supervision(workers: workers, restart: restart, reload: .init(maxSurge: maxSurge),
                watchdog: .init(timeout: .seconds(1), killAfter: .seconds(1)), recycling: recycling,
                autoscale: nil, handlesSignals: false)
}

/// The supervisor's decisions, one concern at a time, on a hand-set clock.
@Suite struct SupervisorModelTests {
    @Test func startingFillsEverySlotAndAJoiningWorkerGetsAShareOfTheConnections() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        #expect(harness.start() == [.spawn(slot: 0, generation: 1), .spawn(slot: 1, generation: 1), .releaseSlots(keeping: [0, 1])])
        #expect(harness.ready(1) == [], "nobody else serves yet")
        #expect(harness.ready(2) == [.rebalance(workers: [1], fraction: 0.5)])
        #expect(harness.model.serving.map(\.id) == [1, 2])
    }

    @Test func aLineAboutAWorkerCarriesItsIdPidSlotAndGenerationAsMetadata() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        harness.exit(2, .signaled(.kill))
        let line = harness.logs.last ?? ""
        #expect(line.hasPrefix("worker 2 (pid 102) exited (signal 9 (SIGKILL))"), "\(line)")
        #expect(harness.logMetadata.last == ["cluster.worker.id": "2", "cluster.worker.pid": "102",
                                             "cluster.worker.slot": "1", "cluster.worker.generation": "1"])
        harness.scale(3)
        #expect(harness.logs.last == "scaling from 2 to 3 workers")
        #expect(harness.logMetadata.last == [:], "a line about no one worker carries none")
    }

    @Test func aReloadRollsSlotBySlotEachReplacementReadyBeforeTheOldWorkerRetires() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)])
        #expect(harness.roles == [1: .replaced, 2: .ready, 3: .starting])
        #expect(harness.model.lastReload == .inProgress(generation: 2))

        #expect(harness.ready(3) == [.retire(worker: 1), .spawn(slot: 1, generation: 2)])
        #expect(harness.holders == [0: 3, 1: 2])
        #expect(harness.model.generation == 1, "the generation advances only when every worker is ready")
        #expect(harness.exit(1, .exited(0)) == [], "a retired worker's exit is intended")

        #expect(harness.ready(4) == [.retire(worker: 2)])
        #expect(harness.model.generation == 2)
        #expect(harness.model.lastReload == .completed(generation: 2))
        #expect(harness.generations == [2: 1, 3: 2, 4: 2])
        #expect(harness.logs.contains("reload complete: every worker is generation 2"))
        #expect(harness.model.restarts.isEmpty)
    }

    @Test func aReloadAskedForDuringAReloadRunsWhenItEnds() {
        var harness = ModelHarness(modelSupervision(workers: 1))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)])
        #expect(harness.reload() == [], "queued")
        #expect(harness.ready(2) == [.retire(worker: 1), .spawn(slot: 0, generation: 3)])
        #expect(harness.model.generation == 2)
        #expect(harness.model.lastReload == .inProgress(generation: 3))
        #expect(harness.ready(3) == [.retire(worker: 2)])
        #expect(harness.model.lastReload == .completed(generation: 3))
    }

    @Test func scalingUpAddsSlotsAndScalingDownDrainsTheOldestWithoutRestartingThem() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        #expect(harness.scale(3) == [.spawn(slot: 2, generation: 1), .releaseSlots(keeping: [0, 1, 2])])
        #expect(harness.ready(3) == [.rebalance(workers: [1, 2], fraction: 1 / 3)])

        #expect(harness.scale(1) == [.retire(worker: 1), .retire(worker: 2), .releaseSlots(keeping: [2])])
        #expect(harness.roles == [1: .retiring, 2: .retiring, 3: .ready])
        #expect(harness.scale(2) == [.spawn(slot: 3, generation: 1), .releaseSlots(keeping: [2, 3])],
                "a slot whose worker still drains is not given to a new one")
        #expect(harness.exit(1, .exited(0)) == [])
        #expect(harness.exit(2, .exited(0)) == [])
        #expect(harness.scale(3) == [.spawn(slot: 0, generation: 1), .releaseSlots(keeping: [0, 2, 3])])
        #expect(harness.model.restarts.isEmpty)
    }

    @Test func scalingDownDropsARestartWaitingOutItsBackoffBeforeDrainingAWorker() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        #expect(harness.exit(2) == [.restartScheduled(slot: 1, after: .zero), .spawn(slot: 1, generation: 1)])
        #expect(harness.exit(3) == [.restartScheduled(slot: 1, after: .milliseconds(100))])
        #expect(harness.scale(1) == [.releaseSlots(keeping: [0])])
        #expect(harness.tick(after: .seconds(1)) == [])
        #expect(harness.roles == [1: .ready])
    }

    @Test func aRecycledWorkerRetiresOnlyWhenItsReplacementIsReady() {
        var harness = ModelHarness(modelSupervision(workers: 1, recycling: .init(maxRequests: 100)))
        harness.startReady()
        #expect(harness.tick(after: .seconds(1), [1: Gauges(requestsServed: 99)]) == [])
        #expect(harness.tick(after: .seconds(1), [1: Gauges(requestsServed: 100)]) == [.spawn(slot: 0, generation: 1)])
        #expect(harness.logs.last == "recycling worker 1 (pid 101): it served 100 requests (limit 100); its replacement starts first")
        #expect(harness.roles == [1: .replaced, 2: .starting])
        #expect(harness.tick(after: .seconds(1), [1: Gauges(requestsServed: 150)]) == [], "one replacement at a time")
        #expect(harness.ready(2) == [.retire(worker: 1)])
        #expect(harness.holders == [0: 2])
    }

    @Test func memoryIsSampledOncePerSecond() {
        var harness = ModelHarness(modelSupervision(workers: 1, recycling: .init(maxRSS: 100 << 20)))
        harness.startReady()
        #expect(harness.tick(after: .milliseconds(100)) == [])
        #expect(harness.tick(after: .milliseconds(100), [1: Gauges(memoryInUse: 200 << 20)]) == [], "sampled 100 ms ago")
        #expect(harness.tick(after: .seconds(1), [1: Gauges(memoryInUse: 200 << 20)]) == [.spawn(slot: 0, generation: 1)])
        #expect(harness.logs.last == "recycling worker 1 (pid 101): its resident memory is 200 MiB (limit 100 MiB); its replacement starts first")
    }

    @Test func aCrashLoopBacksOffMoreEachTimeAndGivesUpPastTheLedgersLimit() {
        let policy = RestartPolicy(initialDelay: .milliseconds(100), factor: 2, maxDelay: .seconds(1),
                                   maxBootFailures: 3, period: .seconds(30))
        var harness = ModelHarness(modelSupervision(workers: 1, restart: policy))
        harness.start()
        #expect(harness.exit(1) == [.restartScheduled(slot: 0, after: .zero), .spawn(slot: 0, generation: 1)])
        #expect(harness.exit(2) == [.restartScheduled(slot: 0, after: .milliseconds(100))])
        #expect(harness.tick(after: .milliseconds(50)) == [])
        #expect(harness.tick(after: .milliseconds(50)) == [.spawn(slot: 0, generation: 1)])
        #expect(harness.exit(3) == [.restartScheduled(slot: 0, after: .milliseconds(200))])
        #expect(harness.tick(after: .milliseconds(200)) == [.spawn(slot: 0, generation: 1)])

        #expect(harness.exit(4) == [.stopAccepting], "a fourth boot failure with no worker serving")
        guard case .stopping(.crashLoop(let reason)) = harness.model.phase else {
            Issue.record("the cluster did not stop: \(harness.model.phase)")
            return
        }
        #expect(reason.contains("worker 4 (pid 104)") && reason.contains("4 workers failed to boot"), "\(reason)")
        #expect(harness.model.isDrained)
        #expect(harness.model.restarts == [0: 3])
        #expect(harness.tick(after: .seconds(10)) == [], "nothing starts after giving up")
    }

    @Test func aCrashLoopWhileAnotherWorkerServesDegradesAndTheFirstBootRecovers() {
        let policy = RestartPolicy(maxBootFailures: 0, degradedDelay: .seconds(1))
        var harness = ModelHarness(modelSupervision(workers: 2, restart: policy))
        harness.startReady()
        #expect(harness.exit(2) == [.restartScheduled(slot: 1, after: .zero), .spawn(slot: 1, generation: 1)],
                "a death after ready is no boot failure")
        #expect(harness.exit(3) == [.restartScheduled(slot: 1, after: .seconds(1))])
        #expect(harness.model.degradation?.contains("The cluster is degraded: 1 worker keeps serving") == true)
        #expect(harness.tick(after: .seconds(1)) == [.spawn(slot: 1, generation: 1)])
        #expect(harness.ready(4) == [.rebalance(workers: [1], fraction: 0.5)])
        #expect(harness.model.degradation == nil)
        #expect(harness.logs.contains { $0.hasPrefix("recovered: worker 4 (pid 104) booted") })
    }

    @Test func aHungWorkerIsAbortedRetiredAndReplacedInItsOwnSlotThenKilled() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        #expect(harness.tick(after: .seconds(2), [1: Gauges(sinceLastHeartbeat: .seconds(2))])
                == [.retire(worker: 1), .signal(worker: 1, .abort), .spawn(slot: 0, generation: 1)])
        #expect(harness.holders == [0: 3, 1: 2])
        #expect(harness.tick(after: .milliseconds(500)) == [])
        #expect(harness.tick(after: .milliseconds(500)) == [.signal(worker: 1, .kill)])
        #expect(harness.tick(after: .milliseconds(100)) == [], "SIGKILL once")
        #expect(harness.exit(1, .signaled(.kill)) == [])
        #expect(harness.model.restarts.isEmpty, "a hung worker's end is not a crash")
    }

    @Test func aBlockedEventLoopTripsTheWatchdogButADrainingWorkerIsLeftToItsDeadline() {
        var harness = ModelHarness(modelSupervision(workers: 1))
        harness.startReady()
        #expect(harness.tick(after: .seconds(2), [1: Gauges(isConnected: false, sinceLastHeartbeat: .seconds(2))]) == [])
        #expect(harness.tick(after: .milliseconds(100), [1: Gauges(eventLoopLag: .seconds(3))])
                == [.retire(worker: 1), .signal(worker: 1, .abort), .spawn(slot: 0, generation: 1)])
        #expect(harness.logs.contains { $0.contains("is hung: its event loop has been blocked for 3.0 seconds") })
    }

    @Test func aWorkerNotReadyWithinTheBootTimeoutIsKilledOnceAndRestarted() {
        var harness = ModelHarness(modelSupervision(workers: 1))
        harness.start()
        #expect(harness.tick(after: .seconds(60)) == [])
        #expect(harness.tick(after: .milliseconds(100)) == [.signal(worker: 1, .kill)])
        #expect(harness.tick(after: .milliseconds(100)) == [])
        #expect(harness.exit(1, .signaled(.kill)) == [.restartScheduled(slot: 0, after: .zero), .spawn(slot: 0, generation: 1)])
    }
}
