@testable import Cluster
import Testing

/// The supervisor's decisions when reloads, scaling, recycling, crashes, the watchdog and
/// stopping overlap, on a hand-set clock.
@Suite struct SupervisorModelInterleavingTests {
    @Test func aCrashDuringAReloadRestartsTheSlotAndTheReloadReplacesTheRestartedWorkerToo() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)])
        #expect(harness.tick(after: .seconds(40)) == [])

        #expect(harness.exit(2) == [.restartScheduled(slot: 1, after: .zero), .spawn(slot: 1, generation: 1)],
                "a worker not yet replaced restarts in the old generation")
        #expect(harness.ready(4) == [.rebalance(workers: [1], fraction: 0.5)])

        #expect(harness.exit(1) == [], "the worker being replaced leaves its slot to its replacement")
        #expect(harness.holders == [0: 3, 1: 4])
        #expect(harness.logs.last?.hasSuffix("the worker replacing it takes slot 0") == true)

        #expect(harness.ready(3) == [.rebalance(workers: [4], fraction: 0.5), .spawn(slot: 1, generation: 2)])
        #expect(harness.ready(5) == [.retire(worker: 4)])
        #expect(harness.model.lastReload == .completed(generation: 2))
        #expect(harness.model.restarts == [1: 1])
    }

    @Test func scalingDownDuringAReloadDrainsTheOldestSlotsWithTheirReplacements() {
        var harness = ModelHarness(modelSupervision(workers: 3))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)])
        #expect(harness.scale(1) == [.retire(worker: 1), .retire(worker: 4), .retire(worker: 2),
                                     .spawn(slot: 2, generation: 2), .releaseSlots(keeping: [2])])
        #expect(harness.exit(4, .exited(0)) == [], "a drained replacement does not fail the reload")
        #expect(harness.model.lastReload == .inProgress(generation: 2))
        #expect(harness.ready(5) == [.retire(worker: 3)])
        #expect(harness.model.lastReload == .completed(generation: 2))
        #expect(harness.holders == [2: 5])
    }

    @Test func theWatchdogDuringARecycleHandsTheSlotToTheReplacementAlreadyStarting() {
        var harness = ModelHarness(modelSupervision(workers: 1, recycling: .init(maxRequests: 100)))
        harness.startReady()
        #expect(harness.tick(after: .seconds(1), [1: Gauges(requestsServed: 100)]) == [.spawn(slot: 0, generation: 1)])
        #expect(harness.tick(after: .seconds(2), [1: Gauges(sinceLastHeartbeat: .seconds(2))])
                == [.retire(worker: 1), .signal(worker: 1, .abort)], "no second replacement")
        #expect(harness.roles == [1: .retiring, 2: .starting])
        #expect(harness.ready(2) == [])
        #expect(harness.holders == [0: 2])
        #expect(harness.tick(after: .seconds(1)) == [.signal(worker: 1, .kill)])
    }

    @Test func stoppingDuringAReloadDrainsEveryWorkerAndStartsNoMore() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)])
        #expect(harness.stop() == [.stopAccepting, .retire(worker: 1), .retire(worker: 2), .retire(worker: 3)])
        #expect(harness.model.lastReload == .failed(generation: 2, reason: "the cluster stopped before every worker of generation 2 was ready"))
        #expect(harness.ready(3) == [])
        #expect(harness.exit(2, .signaled(.kill)) == [], "no restart while stopping")
        #expect(harness.tick(after: .seconds(1)) == [])
        #expect(harness.stop(immediately: true) == [.stopAccepting, .kill(worker: 1), .kill(worker: 3)])
        harness.exit(1, .signaled(.kill))
        #expect(!harness.model.isDrained)
        harness.exit(3, .signaled(.kill))
        #expect(harness.model.isDrained)
        #expect(harness.model.phase == .stopping(.stopped))
    }

    @Test func aSpawnUnderWayWhenTheClusterStopsIsKilledWhenItCompletes() {
        var model = SupervisorModel<ManualInstant>(supervision: modelSupervision(workers: 1))
        #expect(model.reconcile(at: .seconds(0)) == [.spawn(slot: 0, generation: 1), .releaseSlots(keeping: [0])])
        #expect(model.stop(immediately: false, at: .seconds(0)) == [.stopAccepting])
        #expect(model.isDrained)
        #expect(model.spawned(slot: 0, worker: 1, pid: 101, requestLimit: nil, at: .seconds(0)) == [.kill(worker: 1)])
        #expect(!model.isDrained, "it waits for that worker's exit")
        _ = model.exited(worker: 1, status: .signaled(.kill), at: .seconds(0))
        #expect(model.isDrained)
    }

    @Test func aReplacementThatCrashesFailsTheReloadKillsTheOtherReplacementsAndRestartsNothing() {
        var harness = ModelHarness(modelSupervision(workers: 2, maxSurge: 2))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2), .spawn(slot: 1, generation: 2)])
        #expect(harness.exit(3) == [.kill(worker: 4)])
        #expect(harness.model.lastReload == .failed(generation: 2, reason: "worker 3 (pid 103, generation 2) exited (exit code 1) before it was ready; generation 1 keeps serving"))
        #expect(harness.model.generation == 1)
        #expect(harness.roles == [1: .ready, 2: .ready, 4: .retiring])
        #expect(harness.exit(4, .signaled(.kill)) == [])
        #expect(harness.tick(after: .seconds(1)) == [])
        #expect(harness.model.restarts.isEmpty)
    }

    @Test func aRecycleReplacementThatCrashesLeavesTheWorkerServingAndIsTriedAgainAtTheNextSample() {
        var harness = ModelHarness(modelSupervision(workers: 1, recycling: .init(maxRequests: 100)))
        harness.startReady()
        #expect(harness.tick(after: .seconds(1), [1: Gauges(requestsServed: 100)]) == [.spawn(slot: 0, generation: 1)])
        #expect(harness.exit(2) == [])
        #expect(harness.logs.last == "worker 2 (pid 102), replacing worker 1, exited (exit code 1) before it was ready; worker 1 keeps serving")
        #expect(harness.roles == [1: .ready])
        #expect(harness.tick(after: .milliseconds(100), [1: Gauges(requestsServed: 100)]) == [])
        #expect(harness.tick(after: .seconds(1), [1: Gauges(requestsServed: 100)]) == [.spawn(slot: 0, generation: 1)])
    }

    @Test func aReplacementNotReadyInTimeFailsTheReloadAndTheOldWorkersServeOn() {
        var harness = ModelHarness(modelSupervision(workers: 1))
        harness.startReady()
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)])
        #expect(harness.tick(after: .seconds(60)) == [])
        #expect(harness.tick(after: .milliseconds(100)) == [.kill(worker: 2)])
        #expect(harness.model.lastReload == .failed(generation: 2, reason: "worker 2 (pid 102, generation 2) was not ready within 60 s; generation 1 keeps serving"))
        #expect(harness.holders == [0: 1])
    }

    @Test func aReloadWhileARestartWaitsReplacesTheRestartedWorkerOnceItStarts() {
        var harness = ModelHarness(modelSupervision(workers: 2))
        harness.startReady()
        harness.exit(2)
        #expect(harness.exit(3) == [.restartScheduled(slot: 1, after: .milliseconds(100))])
        #expect(harness.reload() == [.spawn(slot: 0, generation: 2)], "the waiting slot keeps its backoff")
        #expect(harness.tick(after: .milliseconds(100)) == [.spawn(slot: 1, generation: 1)])
        #expect(harness.ready(4) == [.retire(worker: 1), .spawn(slot: 1, generation: 2)])
        #expect(harness.ready(6) == [.retire(worker: 5)])
        #expect(harness.model.lastReload == .completed(generation: 2))
        #expect(harness.generations == [1: 1, 4: 2, 5: 1, 6: 2])
    }

    @Test func aReloadDuringACrashLoopStartsTheWaitingSlotAtOnce() {
        var harness = ModelHarness(modelSupervision(workers: 2, restart: RestartPolicy(maxBootFailures: 0, degradedDelay: .seconds(60))))
        harness.startReady()
        harness.exit(2)
        #expect(harness.exit(3) == [.restartScheduled(slot: 1, after: .seconds(60))])
        #expect(harness.reload() == [.spawn(slot: 1, generation: 1), .spawn(slot: 0, generation: 2)])
        #expect(harness.logs.contains("reload during a crash loop: slot 1 start now, not after the backoff"))
    }
}
