/// When a worker that died is started again, and when the primary gives up instead.
///
/// - **Backoff per slot.** A slot's first restart is immediate (a trap in one request
///   costs one worker's in-flight requests, not seconds of capacity); the next waits
///   ``initialDelay``, and each further one ``factor`` times longer, up to ``maxDelay``.
///   A worker that stayed up for ``resetAfter`` starts its slot's count over.
/// - **Crash-loop intensity.** A worker that exits before it is ready failed to boot. More
///   than ``maxBootFailures`` boot failures within ``period`` stop the cluster: the primary
///   drains the other workers and exits non-zero. A worker that was ready and then died
///   (a trap in one request) is always restarted: one bad request must not take the
///   server down.
/// - **Cannot boot.** A worker that exits with ``cannotBootExitCode`` (78, `EX_CONFIG`)
///   says retrying is pointless (a missing file, a bad config): the cluster stops at once.
public struct RestartPolicy: Sendable, Hashable {
    /// The delay before a slot's second restart in a row (the first is immediate).
    public var initialDelay: Duration
    /// How much longer each further restart of the same slot waits.
    public var factor: Double
    /// The longest delay.
    public var maxDelay: Duration
    /// A worker up this long resets its slot's backoff.
    public var resetAfter: Duration
    /// Boot failures tolerated within ``period``; one more stops the cluster.
    public var maxBootFailures: Int
    /// The window ``maxBootFailures`` counts in.
    public var period: Duration

    /// The exit code by which a worker says it cannot boot and the cluster should stop
    /// rather than retry: 78, `EX_CONFIG` from sysexits.h.
    public static let cannotBootExitCode: Int32 = 78

    /// A policy; every parameter has a default: immediate, then 100 ms doubling to 15 s,
    /// reset after 1 s up, and more than 5 boot failures within 30 s stop the cluster.
    public init(initialDelay: Duration = .milliseconds(100), factor: Double = 2, maxDelay: Duration = .seconds(15),
                resetAfter: Duration = .seconds(1), maxBootFailures: Int = 5, period: Duration = .seconds(30)) {
        self.initialDelay = initialDelay
        self.factor = max(1, factor)
        self.maxDelay = max(initialDelay, maxDelay)
        self.resetAfter = resetAfter
        self.maxBootFailures = max(0, maxBootFailures)
        self.period = period
    }

    /// Restarts at once, forever: Node's basic example.
    public static let immediate = RestartPolicy(initialDelay: .zero, factor: 1, maxDelay: .zero, maxBootFailures: .max)
}

/// What to do about a worker that exited unexpectedly.
enum RestartDecision: Equatable, Sendable {
    /// Start the slot again after this delay.
    case restart(after: Duration)
    /// Stop the cluster; the reason names the worker, its exit and the count.
    case stop(reason: String)
}

/// The restart history a ``RestartPolicy`` is applied to: per-slot backoff and the recent
/// boot failures. A pure value, driven by the instants it is given.
struct RestartLedger<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    let policy: RestartPolicy
    private var attempts: [Int: Int] = [:]
    private var bootFailures: [Instant] = []

    init(policy: RestartPolicy) { self.policy = policy }

    /// Records that `worker` in `slot` exited with `status` at `now` after `uptime`
    /// (ready or not), and decides.
    mutating func exited(worker: String, slot: Int, status: ExitStatus, uptime: Duration, wasReady: Bool,
                         at now: Instant) -> RestartDecision {
        if status.code == RestartPolicy.cannotBootExitCode {
            return .stop(reason: "\(worker) exited with code \(RestartPolicy.cannotBootExitCode): it cannot boot, so restarting it is pointless; stopping the cluster. Its output above says why.")
        }
        if !wasReady {
            bootFailures.append(now)
            bootFailures.removeAll { $0.duration(to: now) > policy.period }
            if bootFailures.count > policy.maxBootFailures {
                return .stop(reason: "\(worker) exited (\(status)) before it was ready: \(bootFailures.count) workers failed to boot within \(Self.seconds(policy.period)) (at most \(policy.maxBootFailures) allowed); stopping the cluster instead of restarting in a loop. Its output above says why.")
            }
        }
        if uptime >= policy.resetAfter { attempts[slot] = 0 }
        let attempt = attempts[slot, default: 0]
        attempts[slot] = attempt + 1
        return .restart(after: delay(attempt: attempt))
    }

    /// The delay before restart number `attempt` (0-based) of one slot.
    func delay(attempt: Int) -> Duration {
        guard attempt > 0 else { return .zero }
        var delay = policy.initialDelay
        for _ in 0..<min(attempt - 1, 64) {
            delay = delay * policy.factor
            if delay >= policy.maxDelay { return policy.maxDelay }
        }
        return min(delay, policy.maxDelay)
    }

    static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return attoseconds == 0 ? "\(seconds) s" : "\(Double(seconds) + Double(attoseconds) / 1e18) s"
    }
}
