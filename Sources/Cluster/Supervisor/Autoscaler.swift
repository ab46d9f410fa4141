/// One sample of the cluster's load, which the supervisor takes every
/// ``AutoscalePolicy/interval`` and hands to the policy.
public struct ClusterLoad: Sendable, Hashable {
    /// Workers serving (ready, not retiring).
    public var workers: Int
    /// Mean CPU seconds per second per worker over about the last second (1.0: each
    /// worker keeps a core busy).
    public var utilization: Double
    /// The mean share of time the workers' event loops were occupied (0...1), CPU or not.
    public var eventLoopBusy: Double
    /// The worst worker's p99 event-loop lag over the last second.
    public var lagP99: Duration
    /// Connections the primary holds because no worker could take them (primary-accept
    /// strategies).
    public var waitingConnections: Int
    /// Memory the host has available (`MemAvailable`), in bytes; nil when unknown.
    public var memoryAvailable: Int?
    /// The mean resident memory of one worker, in bytes.
    public var workerMemory: Int
    /// The host's 1-minute load average.
    public var loadAverage: Double
    /// The fraction of the host's CPU time that was idle over the last interval (every
    /// process counts, not only the cluster's); nil when unknown.
    public var hostIdle: Double?
    /// CPUs available to the cluster.
    public var cores: Int

    /// A sample; what a test or a recorded trace does not give is zero or unknown.
    public init(workers: Int, utilization: Double, eventLoopBusy: Double = 0, lagP99: Duration = .zero, waitingConnections: Int = 0,
                memoryAvailable: Int? = nil, workerMemory: Int = 0, loadAverage: Double = 0, hostIdle: Double? = nil,
                cores: Int = Cluster.availableCores) {
        self.workers = workers
        self.utilization = utilization
        self.eventLoopBusy = eventLoopBusy
        self.lagP99 = lagP99
        self.waitingConnections = waitingConnections
        self.memoryAvailable = memoryAvailable
        self.workerMemory = workerMemory
        self.loadAverage = loadAverage
        self.hostIdle = hostIdle
        self.cores = cores
    }
}

/// A new worker count, and why. A decision that keeps the count explains why the policy
/// holds although it is under pressure (the supervisor logs it).
public struct AutoscaleDecision: Sendable, Hashable, CustomStringConvertible {
    /// The worker count to move to.
    public var workers: Int
    /// Why, in words for the log: the signals and for how long they held.
    public var reason: String
    /// "N workers: reason".
    public var description: String { "\(workers) workers: \(reason)" }
}

/// A pure decision from load samples to a worker count. The supervisor calls
/// ``decide(_:at:)`` every ``interval`` with the time elapsed since it started, so a
/// policy can be driven by a recorded trace and a hand-set clock.
public protocol AutoscalePolicy: Sendable {
    /// How often the supervisor samples the load and asks.
    var interval: Duration { get }
    /// The worker count to move to and why, or nil to keep `load.workers`.
    mutating func decide(_ load: ClusterLoad, at now: Duration) -> AutoscaleDecision?
}

/// swift-cluster's autoscaler: keeps the workers' CPU utilization near a target between
/// ``minWorkers`` and ``maxWorkers``.
///
/// - **Up, fast, and as far as needed.** When utilization stays above
///   ``scaleUpUtilization``, or the p99 event-loop lag above ``maxLag``, or connections wait
///   in the primary, for ``scaleUpAfter``, it moves to the count that would bring
///   utilization back to ``targetUtilization`` (`ceil(workers × utilization / target)`,
///   at least one more), and doubles when the workers are saturated (their utilization
///   cannot show how far behind they are): several workers at once when far behind.
/// - **Down, slowly.** Only when utilization stays below ``scaleDownUtilization`` (and
///   nothing lags or waits) for ``scaleDownAfter``, to the count the target needs: after
///   the load stops it returns to ``minWorkers`` in one step.
/// - **No flapping.** The band between the two thresholds holds the count; after a change,
///   ``cooldown`` passes before it scales up again (new workers need a moment to take
///   load) and ``scaleDownAfter`` before it scales down.
/// - **Memory.** It adds no worker that would leave less than ``memoryHeadroom`` bytes
///   available, and removes one when less than half of that is left.
/// - **CPU.** It adds no more workers than the host's idle CPU (averaged over the episode
///   of pressure) can run, each using what a worker uses now (at most the target): more
///   processes than the cores can run add no capacity, only switching. When that stops
///   it, it says so once.
public struct Autoscaler: AutoscalePolicy, Hashable {
    /// The fewest workers (at least 1).
    public var minWorkers: Int
    /// The most workers.
    public var maxWorkers: Int
    /// The utilization a scale-up aims for (0.6).
    public var targetUtilization: Double
    /// Utilization above which the workers are under pressure (0.8).
    public var scaleUpUtilization: Double
    /// Utilization below which the workers are idle (0.3).
    public var scaleDownUtilization: Double
    /// A p99 event-loop lag above which the workers are under pressure (100 ms).
    public var maxLag: Duration
    /// How long pressure must last before a scale-up (1 s).
    public var scaleUpAfter: Duration
    /// How long idleness must last before a scale-down, and the least time between a
    /// change and a scale-down (30 s).
    public var scaleDownAfter: Duration
    /// The least time between a change and the next scale-up (3 s).
    public var cooldown: Duration
    /// Memory, in bytes, that scaling up leaves available to the host (256 MiB).
    public var memoryHeadroom: Int
    /// How often the supervisor samples the load (500 ms).
    public var interval: Duration

    private var heldAtCapacity = false
    /// The host's idle fraction summed over this episode of pressure, and its samples.
    private var idleSum = 0.0
    private var idleSamples = 0
    private var pressureSince: Duration?
    private var idleSince: Duration?
    private var lastChange: Duration?

    /// An autoscaler between `minWorkers` and `maxWorkers` (default: the core count and
    /// twice that); the other parameters' defaults suit most servers.
    public init(minWorkers: Int = Cluster.availableCores, maxWorkers: Int? = nil,
                targetUtilization: Double = 0.6, scaleUpUtilization: Double = 0.8, scaleDownUtilization: Double = 0.3,
                maxLag: Duration = .milliseconds(100), scaleUpAfter: Duration = .seconds(1),
                scaleDownAfter: Duration = .seconds(30), cooldown: Duration = .seconds(3),
                memoryHeadroom: Int = 256 << 20, interval: Duration = .milliseconds(500)) {
        self.minWorkers = max(1, minWorkers)
        self.maxWorkers = max(self.minWorkers, maxWorkers ?? 2 * self.minWorkers)
        self.targetUtilization = min(max(targetUtilization, 0.05), 1)
        self.scaleUpUtilization = max(scaleUpUtilization, self.targetUtilization)
        self.scaleDownUtilization = min(scaleDownUtilization, self.targetUtilization)
        self.maxLag = maxLag
        self.scaleUpAfter = scaleUpAfter
        self.scaleDownAfter = scaleDownAfter
        self.cooldown = cooldown
        self.memoryHeadroom = memoryHeadroom
        self.interval = interval
    }

    /// The decision for the sample `load` taken at `now`, by the rules above.
    public mutating func decide(_ load: ClusterLoad, at now: Duration) -> AutoscaleDecision? {
        let workers = load.workers
        if workers < minWorkers { return change(to: minWorkers, at: now, "below the minimum of \(minWorkers)") }
        if workers > maxWorkers { return change(to: maxWorkers, at: now, "above the maximum of \(maxWorkers)") }
        // Busy is the larger of CPU and event-loop occupancy: a worker blocked on I/O is as
        // full as one computing.
        let cpu = load.utilization.isFinite ? max(0, load.utilization) : 0
        let loops = load.eventLoopBusy.isFinite ? min(1, max(0, load.eventLoopBusy)) : 0
        let utilization = max(cpu, loops)
        let measure = loops > cpu ? "event loops busy" : "utilization"
        let needed = Int((Double(workers) * utilization / targetUtilization).rounded(.up))

        if let available = load.memoryAvailable, available < memoryHeadroom / 2, workers > minWorkers {
            return change(to: workers - 1, at: now, "memory available \(available >> 20) MiB is under half the headroom of \(memoryHeadroom >> 20) MiB")
        }

        var pressure: [String] = []
        if utilization > scaleUpUtilization { pressure.append("\(measure) \(Self.format(utilization)) > \(Self.format(scaleUpUtilization))") }
        if load.lagP99 > maxLag { pressure.append("event-loop lag p99 \(Self.milliseconds(load.lagP99)) > \(Self.milliseconds(maxLag))") }
        if load.waitingConnections > 0 { pressure.append("\(load.waitingConnections) connections waiting in the primary") }
        let idle = utilization < scaleDownUtilization && load.lagP99 <= maxLag / 2 && load.waitingConnections == 0

        pressureSince = pressure.isEmpty ? nil : (pressureSince ?? now)
        if pressureSince == nil {
            heldAtCapacity = false
            (idleSum, idleSamples) = (0, 0)
        } else if let hostIdle = load.hostIdle {
            (idleSum, idleSamples) = (idleSum + hostIdle, idleSamples + 1)
        }
        idleSince = idle ? (idleSince ?? now) : nil

        if let since = pressureSince, now - since >= scaleUpAfter, lastChange.map({ now - $0 >= cooldown }) ?? true {
            // A saturated worker hides how far behind it is, and a long lag or a queue says
            // it is far behind: double, as far as allowed.
            let farBehind = utilization >= 0.95 || load.lagP99 >= maxLag * 4 || load.waitingConnections >= workers
            let saturated = farBehind ? 2 * workers : 0
            var target = min(maxWorkers, max(workers + 1, needed, saturated))
            guard target > workers else { return nil }
            if idleSamples > 0 {
                let idleCores = idleSum / Double(idleSamples) * Double(load.cores)
                // A new worker is expected to use the CPU one uses now, up to the target.
                let perWorker = max(min(cpu, targetUtilization), 0.05)
                let runnable = Int((idleCores / perWorker).rounded())
                if runnable == 0 {
                    guard !heldAtCapacity else { return nil }
                    heldAtCapacity = true
                    return AutoscaleDecision(workers: workers, reason: pressure.joined(separator: ", ") + ", but only \(Self.format(idleCores)) of \(load.cores) cores are idle: more workers would add no capacity")
                }
                target = min(target, workers + runnable)
            }
            if let available = load.memoryAvailable, load.workerMemory > 0 {
                let affordable = max(0, (available - memoryHeadroom) / load.workerMemory)
                target = min(target, workers + affordable)
            }
            guard target > workers else { return nil }
            return change(to: target, at: now, pressure.joined(separator: ", ") + " for \(Self.milliseconds(now - since))")
        }
        if let since = idleSince, now - since >= scaleDownAfter, lastChange.map({ now - $0 >= scaleDownAfter }) ?? true {
            let target = max(minWorkers, min(workers - 1, needed))
            guard target < workers else { return nil }
            return change(to: target, at: now, "\(measure) \(Self.format(utilization)) < \(Self.format(scaleDownUtilization)) for \(Self.milliseconds(now - since))")
        }
        return nil
    }

    private mutating func change(to workers: Int, at now: Duration, _ reason: String) -> AutoscaleDecision {
        lastChange = now
        pressureSince = nil
        (idleSum, idleSamples) = (0, 0)
        idleSince = nil
        return AutoscaleDecision(workers: workers, reason: reason)
    }

    static func format(_ value: Double) -> String {
        guard abs(value) < 1e15 else { return "\(value)" } // beyond Int's reach: as it is
        let hundredths = Int((value * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }

    static func milliseconds(_ duration: Duration) -> String {
        // In floating point: any duration a caller gives prints, none traps.
        let total = duration.inSeconds * 1000
        return total >= 1000 ? "\(Self.format(total / 1000)) s" : "\(Int(total)) ms"
    }
}

/// The seed project's autoscaler, kept to compare against: every 10 s it samples the load
/// average and the event-loop lag and adds or removes one worker, between the core count
/// and twice that. Up when the load average exceeds the cores or the lag exceeds 100 ms;
/// down when the load average is under half the cores and the lag under 20 ms (the seed
/// gave no numbers; these are its description's plainest reading).
public struct SeedAutoscaler: AutoscalePolicy, Hashable {
    /// How often it samples: 10 s.
    public var interval: Duration = .seconds(10)

    /// The seed's policy, with its fixed parameters.
    public init() {}

    /// One worker more, one fewer, or nil, by the rules above.
    public mutating func decide(_ load: ClusterLoad, at now: Duration) -> AutoscaleDecision? {
        let low = load.cores, high = 2 * load.cores
        let cores = Double(load.cores)
        if load.workers < low { return AutoscaleDecision(workers: low, reason: "below the core count") }
        if (load.loadAverage > cores || load.lagP99 > .milliseconds(100)) && load.workers < high {
            return AutoscaleDecision(workers: load.workers + 1, reason: "load average \(Autoscaler.format(load.loadAverage)) or lag \(Autoscaler.milliseconds(load.lagP99)) high")
        }
        if load.loadAverage < cores / 2 && load.lagP99 < .milliseconds(20) && load.workers > low {
            return AutoscaleDecision(workers: load.workers - 1, reason: "load average \(Autoscaler.format(load.loadAverage)) low")
        }
        return nil
    }
}
