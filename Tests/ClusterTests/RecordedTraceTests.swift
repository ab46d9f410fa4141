@testable import Cluster
import Foundation
import Testing

/// Load traces recorded by `Benchmarks/autoscale.sh` (the autoscale example's
/// `AUTOSCALE_TRACE`), replayed through both policies with a hand-set clock.
@Suite struct RecordedTraceTests {
    /// One recorded sample, reduced to what does not depend on the worker count: the
    /// demand in cores (workers × CPU utilization) and in event loops (workers × loop
    /// occupancy), the CPU other processes used, the lag, the load average.
    struct Sample {
        var seconds: Double
        var cpu: Double
        var loops: Double
        var demand: Double { max(cpu, loops) }
        var others: Double
        var lagMilliseconds: Double
        var loadAverage: Double
    }

    static func load(_ name: String) throws -> [Sample] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Traces/\(name).csv").path
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",").map(String.init)
        let column = { (name: String) in header.firstIndex(of: name)! }
        let cores = 2.0 // where the traces were recorded
        return lines.dropFirst().map { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? 0 }
            let workers = fields[column("workers")]
            let cpu = workers * fields[column("utilization")]
            let idle = fields[column("host_idle")]
            return Sample(seconds: fields[column("seconds")], cpu: cpu, loops: workers * fields[column("loop_busy")],
                          others: max(0, (1 - idle) * cores - cpu),
                          lagMilliseconds: fields[column("lag_p99_ms")], loadAverage: fields[column("load_average")])
        }
    }

    /// Replays `samples` through `policy` from `start` workers: each sample's demand is
    /// spread over the count the policy chose (more workers than the demand leave some
    /// idle), the host's idle CPU follows; the lag is replayed as recorded. Returns the
    /// changes, timed from the trace's start.
    static func replay(_ samples: [Sample], through policy: inout some AutoscalePolicy, from start: Int) -> [(at: Double, workers: Int)] {
        var workers = start
        var changes: [(Double, Int)] = []
        var next = 0.0
        for sample in samples where sample.seconds >= next {
            next = sample.seconds + policy.interval.inSeconds - 0.05
            let cpu = min(1, sample.cpu / Double(workers))
            let load = ClusterLoad(workers: workers, utilization: cpu, eventLoopBusy: min(1, sample.loops / Double(workers)),
                                   lagP99: .microseconds(Int(sample.lagMilliseconds * 1000)),
                                   loadAverage: sample.loadAverage,
                                   hostIdle: max(0, 1 - (cpu * Double(workers) + sample.others) / 2), cores: 2)
            if let decision = policy.decide(load, at: .milliseconds(Int(sample.seconds * 1000))), decision.workers != workers {
                workers = decision.workers
                changes.append((sample.seconds, workers))
            }
        }
        return changes
    }

    /// The step: when the demand first exceeds half a core.
    static func step(_ samples: [Sample]) -> Double { samples.first { $0.demand > 0.5 }!.seconds }
    /// The stop: the first sample after the step whose demand is under a tenth of a core.
    static func stop(_ samples: [Sample]) -> Double {
        let step = step(samples)
        return samples.first { $0.seconds > step && $0.demand < 0.1 }!.seconds
    }

    @Test func aCPUStepOnTwoCores() throws {
        let samples = try Self.load("cpu-step")
        let (step, stop) = (Self.step(samples), Self.stop(samples))
        var ours = Autoscaler(minWorkers: 1, maxWorkers: 4, scaleDownAfter: .seconds(15))
        let changes = Self.replay(samples, through: &ours, from: 1)
        // Up to the two cores within 3 s of the step, nothing while the load holds, back to 1.
        #expect(changes.map(\.workers) == [2, 1], "\(changes)")
        #expect(changes.first.map { $0.at - step <= 3 } == true, "\(changes), step at \(step)")
        #expect(changes.last.map { $0.at > stop && $0.at - stop <= 17 } == true, "\(changes), stop at \(stop)")

        var seed = SeedAutoscaler()
        let seedChanges = Self.replay(samples, through: &seed, from: 2)
        #expect(seedChanges.allSatisfy { $0.at - step >= 10 }, "the seed samples every 10 s: \(seedChanges)")
    }

    @Test func blockingHandlersScaleOnEventLoopOccupancy() throws {
        let samples = try Self.load("io-step")
        let step = Self.step(samples)
        var ours = Autoscaler(minWorkers: 2, maxWorkers: 8, scaleDownAfter: .seconds(15))
        let changes = Self.replay(samples, through: &ours, from: 2)
        #expect(changes.first.map { $0.at - step <= 3 && $0.workers >= 4 } == true, "\(changes), step at \(step)")
        #expect(changes.last?.workers == 2, "\(changes)")
        let ups = changes.filter { $0.workers > 2 }
        #expect(ups.count <= 2, "several workers at once: \(changes)")
    }
}
