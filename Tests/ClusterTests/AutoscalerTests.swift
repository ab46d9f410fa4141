@testable import Cluster
import Testing

/// The autoscaler driven by load traces and a hand-set clock: one sample per interval.
@Suite struct AutoscalerTests {
    /// Runs `policy` over `samples` (one per `policy.interval`), applying each decision to
    /// the worker count the next samples report; returns the decisions with their times.
    static func run(_ policy: inout some AutoscalePolicy, workers start: Int,
                    _ samples: [(Int) -> ClusterLoad]) -> (workers: Int, decisions: [(at: Duration, AutoscaleDecision)]) {
        var workers = start
        var decisions: [(Duration, AutoscaleDecision)] = []
        for (index, sample) in samples.enumerated() {
            let now = policy.interval * index
            if let decision = policy.decide(sample(workers), at: now) {
                decisions.append((now, decision))
                workers = decision.workers
            }
        }
        return (workers, decisions)
    }

    /// A load that keeps `cores` busy whatever the count: utilization per worker falls as workers are added.
    static func demand(_ cores: Double, lag: Duration = .zero) -> (Int) -> ClusterLoad {
        { workers in ClusterLoad(workers: workers, utilization: min(1, cores / Double(workers)), lagP99: lag, cores: 2) }
    }

    /// A repeatable noise in -1...1 (a linear congruential generator).
    struct Noise {
        var state: UInt64
        mutating func next() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53) * 2 - 1
        }
    }

    @Test func aStepFromIdleToSaturationScalesUpWithinTwoSeconds() {
        var policy = Autoscaler(minWorkers: 1, maxWorkers: 4)
        let idle = Array(repeating: Self.demand(0.01), count: 10)
        let busy = Array(repeating: Self.demand(1.8), count: 20)
        let (workers, decisions) = Self.run(&policy, workers: 1, idle + busy)
        let step = policy.interval * 10
        guard let first = decisions.first else {
            Issue.record("no decision after the step")
            return
        }
        #expect(first.at - step <= .seconds(2), "first decision \(first.at - step) after the step")
        #expect(first.1.workers == 2 && first.1.reason.contains("utilization 1.00 > 0.80"), "\(first.1)")
        #expect((3...4).contains(workers) && decisions.count == 2, "1.8 cores of demand: 3 or 4 workers in two steps, \(decisions.map(\.1))")
    }

    @Test func steadyNoisyLoadMakesNoChangeAfterSettling() {
        var policy = Autoscaler(minWorkers: 1, maxWorkers: 4)
        var noise = Noise(state: 42)
        // 60 s of a demand of 1.8 cores ± 25%, sampled every 500 ms.
        let trace = (0..<120).map { _ -> (Int) -> ClusterLoad in
            let demand = 1.8 * (1 + 0.25 * noise.next())
            return Self.demand(demand)
        }
        let (_, decisions) = Self.run(&policy, workers: 1, trace)
        let late = decisions.filter { $0.at > .seconds(10) }
        #expect(late.isEmpty, "changes after settling: \(late.map { "\($0.at): \($0.1)" })")
        #expect(decisions.count <= 2, "\(decisions.map(\.1))")
    }

    @Test func alternatingSamplesNeverTriggerAChange() {
        var policy = Autoscaler(minWorkers: 1, maxWorkers: 4)
        let trace = (0..<200).map { index in
            { (workers: Int) in ClusterLoad(workers: workers, utilization: index % 2 == 0 ? 0.9 : 0.5, cores: 2) }
        }
        #expect(Self.run(&policy, workers: 2, trace).decisions.isEmpty)
    }

    @Test func afterTheLoadStopsItReturnsToTheMinimumInOneStepWithinTheIdleTime() {
        var policy = Autoscaler(minWorkers: 1, maxWorkers: 4, scaleDownAfter: .seconds(10))
        let busy = Array(repeating: Self.demand(1.8), count: 20)
        let idle = Array(repeating: Self.demand(0.02), count: 40)
        let (workers, decisions) = Self.run(&policy, workers: 1, busy + idle)
        let stop = policy.interval * 20
        let down = decisions.filter { $0.at > stop }
        #expect(workers == 1)
        #expect(down.count == 1, "\(down.map(\.1))")
        #expect(down.first.map { $0.at - stop <= .seconds(11) } == true, "back to the minimum \(down.first.map { $0.at - stop } ?? .zero) after the load stopped")
        #expect(down.first?.1.reason.contains("< 0.30 for") == true)
    }

    @Test func afterAScaleUpTheCooldownHoldsTheNextOne() {
        var policy = Autoscaler(minWorkers: 1, maxWorkers: 8, scaleUpAfter: .seconds(1), cooldown: .seconds(3))
        // Demand grows faster than workers are added: pressure never lets up.
        let trace = Array(repeating: Self.demand(10), count: 20)
        let decisions = Self.run(&policy, workers: 1, trace).decisions
        #expect(decisions.count >= 2)
        for (earlier, later) in zip(decisions, decisions.dropFirst()) {
            #expect(later.at - earlier.at >= .seconds(3), "\(earlier.at) then \(later.at)")
        }
    }

    @Test func lagOrWaitingConnectionsAloneScaleUp() {
        var lagging = Autoscaler(minWorkers: 2, maxWorkers: 4)
        let lag = Self.run(&lagging, workers: 2, Array(repeating: Self.demand(0.8, lag: .milliseconds(250)), count: 4)).decisions
        #expect(lag.first?.1.workers == 3 && lag.first?.1.reason.contains("event-loop lag p99 250 ms > 100 ms") == true, "\(lag.map(\.1))")

        var queued = Autoscaler(minWorkers: 2, maxWorkers: 4)
        let waiting = Self.run(&queued, workers: 2, Array(repeating: { workers in
            ClusterLoad(workers: workers, utilization: 0.5, waitingConnections: 12, cores: 2)
        }, count: 4)).decisions
        #expect(waiting.first?.1.reason.contains("12 connections waiting in the primary") == true, "\(waiting.map(\.1))")
    }

    @Test func memoryCapsScalingUpAndShortageScalesDown() {
        var capped = Autoscaler(minWorkers: 1, maxWorkers: 8, memoryHeadroom: 256 << 20)
        // 500 MiB available, 200 MiB per worker: 1 more fits above the 256 MiB headroom.
        let tight = Self.run(&capped, workers: 2, Array(repeating: { workers in
            ClusterLoad(workers: workers, utilization: 1, memoryAvailable: 500 << 20, workerMemory: 200 << 20, cores: 2)
        }, count: 4)).decisions
        #expect(tight.first?.1.workers == 3, "saturated, it would double to 4, but one more fits: \(tight.map(\.1))")
        var farBehind = Autoscaler(minWorkers: 1, maxWorkers: 8)
        let doubled = Self.run(&farBehind, workers: 2, Array(repeating: Self.demand(6), count: 4)).decisions
        #expect(doubled.first?.1.workers == 4, "saturated workers double: \(doubled.map(\.1))")

        var short = Autoscaler(minWorkers: 1, maxWorkers: 8, memoryHeadroom: 256 << 20)
        let shortage = short.decide(ClusterLoad(workers: 4, utilization: 0.5, memoryAvailable: 100 << 20, workerMemory: 200 << 20, cores: 2), at: .zero)
        #expect(shortage?.workers == 3 && shortage?.reason.contains("memory available 100 MiB") == true)
    }

    @Test func aHostWithNoIdleCPUGetsNoMoreWorkersAndTheHoldIsExplainedOnce() {
        var policy = Autoscaler(minWorkers: 1, maxWorkers: 4)
        // Two saturated workers on two cores, 3% of the host idle: more would not help.
        let full = Array(repeating: { (workers: Int) in ClusterLoad(workers: workers, utilization: 0.97, hostIdle: 0.03, cores: 2) }, count: 20)
        let held = Self.run(&policy, workers: 2, full).decisions
        #expect(held.count == 1 && held.first?.1.workers == 2, "\(held.map(\.1))")
        #expect(held.first?.1.reason.contains("only 0.06 of 2 cores are idle") == true, "\(held.map(\.1))")
        // With idle CPU the same pressure adds workers.
        let spare = Array(repeating: { (workers: Int) in ClusterLoad(workers: workers, utilization: 0.97, hostIdle: 0.5, cores: 4) }, count: 4)
        var fresh = Autoscaler(minWorkers: 1, maxWorkers: 4)
        #expect(Self.run(&fresh, workers: 2, spare).decisions.first?.1.workers == 4)
    }

    @Test func eventLoopsBlockedOnIOCountAsBusyThoughTheCPUIdles() {
        var policy = Autoscaler(minWorkers: 2, maxWorkers: 8, scaleDownAfter: .seconds(10))
        // Handlers that wait on a synchronous call: loops always occupied, CPU at 5%.
        let blocked = Array(repeating: { (workers: Int) in
            ClusterLoad(workers: workers, utilization: 0.05, eventLoopBusy: 1, lagP99: .milliseconds(60), hostIdle: 0.9, cores: 2)
        }, count: 30)
        let idle = Array(repeating: { (workers: Int) in
            ClusterLoad(workers: workers, utilization: 0.01, eventLoopBusy: 0.02, lagP99: .milliseconds(1), hostIdle: 0.95, cores: 2)
        }, count: 30)
        let (workers, decisions) = Self.run(&policy, workers: 2, blocked + idle)
        #expect(decisions.map(\.1.workers) == [4, 8, 2], "\(decisions.map(\.1))")
        #expect(decisions.first?.1.reason.hasPrefix("event loops busy 1.00 > 0.80") == true, "\(decisions.map(\.1))")
        #expect(workers == 2)
    }

    @Test func itKeepsWithinItsBounds() {
        var policy = Autoscaler(minWorkers: 2, maxWorkers: 3)
        #expect(policy.decide(ClusterLoad(workers: 1, utilization: 0, cores: 2), at: .zero)?.workers == 2)
        #expect(policy.decide(ClusterLoad(workers: 5, utilization: 0, cores: 2), at: .seconds(1))?.workers == 3)
        let saturated = Self.run(&policy, workers: 3, Array(repeating: Self.demand(3), count: 20)).decisions
        #expect(saturated.isEmpty, "at the maximum: \(saturated.map(\.1))")
    }

    @Test func theSeedsPolicyReactsOnlyEveryTenSecondsOneWorkerAtATime() {
        var seed = SeedAutoscaler()
        // Load average follows demand: 0 while idle, 3.5 once busy (2 cores).
        let trace = (0..<8).map { index in
            { (workers: Int) in ClusterLoad(workers: workers, utilization: 1, loadAverage: index < 2 ? 0 : 3.5, cores: 2) }
        }
        let decisions = Self.run(&seed, workers: 2, trace).decisions
        #expect(decisions.map(\.1.workers) == [3, 4], "\(decisions.map(\.1))")
        #expect(decisions.first?.at == .seconds(20), "its first reaction comes at the first 10 s sample after the step")
    }
}
