/// When a worker that died is started again, and what the primary does when workers keep
/// failing to boot.
///
/// - **Backoff per slot.** A slot's first restart is immediate (a trap in one request
///   costs one worker's in-flight requests, not seconds of capacity); the next waits
///   ``initialDelay``, and each further one ``factor`` times longer, up to ``maxDelay``.
///   Only a worker that stayed up for ``resetAfter`` (30 s by default, like systemd's and
///   PM2's notion of a stable start) starts its slot's count over.
/// - **Deaths after ready back off, briefly, and never stop the cluster.** A worker that
///   was ready when it died may have been killed by a request, and anyone can send a
///   request: a client that makes a worker trap once a second must cost one worker at a
///   time, never the service. Such a death is restarted on the slot's backoff but waits
///   at most ``maxDelayAfterReady`` (1 s), is not a boot failure, and neither begins a
///   crash-loop episode nor stops the cluster. A program that says it is ready and dies
///   seconds later is therefore restarted about once a second per slot, its exits logged,
///   until it stays up.
/// - **Crash-loop guard.** A worker that exits before it is ready failed to boot. More
///   than ``maxBootFailures`` boot failures within ``period`` begin a crash-loop episode.
///   While other workers serve, the cluster carries on *degraded*: it logs the episode
///   once, stops retrying fast and backs its boot attempts off from ``degradedDelay``,
///   ``factor`` times longer each, up to ``maxDegradedDelay``. The first worker that
///   becomes ready ends the episode. When a worker fails to boot and no worker is left
///   serving (none ever was, or the last one died during the episode), the primary
///   drains and exits non-zero instead: nothing it starts can serve.
/// - **Cannot boot.** A worker that exits with ``cannotBootExitCode`` (78, `EX_CONFIG`)
///   says retrying is pointless (a missing file, a bad config): with no worker serving the
///   cluster stops at once; with workers serving it begins a crash-loop episode at once.
public struct RestartPolicy: Sendable, Hashable {
    /// The delay before a slot's second restart in a row (the first is immediate).
    public var initialDelay: Duration
    /// How much longer each further restart of the same slot waits.
    public var factor: Double
    /// The longest delay.
    public var maxDelay: Duration
    /// A worker up this long (since it started) resets its slot's backoff. Default: 30 s.
    public var resetAfter: Duration
    /// The longest delay before restarting a worker that died after it was ready (it may
    /// have been a request's doing); never shorter than ``initialDelay``. Default: 1 s.
    public var maxDelayAfterReady: Duration
    /// Boot failures (exits before ready, or with ``cannotBootExitCode``) tolerated within
    /// ``period``; one more begins a crash-loop episode, or stops the cluster when no
    /// worker serves.
    public var maxBootFailures: Int
    /// The window ``maxBootFailures`` counts in.
    public var period: Duration
    /// During a crash-loop episode, the delay before the first boot attempt; each further
    /// one waits ``factor`` times longer.
    public var degradedDelay: Duration
    /// During a crash-loop episode, the longest delay between boot attempts.
    public var maxDegradedDelay: Duration

    /// The exit code by which a worker says it cannot boot and the cluster should stop
    /// rather than retry: 78, `EX_CONFIG` from sysexits.h.
    public static let cannotBootExitCode: Int32 = 78

    /// A policy; every parameter has a default: immediate, then 100 ms doubling to 15 s
    /// (to 1 s after a worker that was ready), reset after 30 s up; more than 5 boot
    /// failures (exits before ready) within 30 s begin a crash-loop episode, whose boot
    /// attempts wait 1 s doubling to 60 s.
    public init(initialDelay: Duration = .milliseconds(100), factor: Double = 2, maxDelay: Duration = .seconds(15),
                resetAfter: Duration = .seconds(30), maxDelayAfterReady: Duration = .seconds(1), maxBootFailures: Int = 5,
                period: Duration = .seconds(30), degradedDelay: Duration = .seconds(1), maxDegradedDelay: Duration = .seconds(60)) {
        self.initialDelay = initialDelay
        self.factor = max(1, factor)
        self.maxDelay = max(initialDelay, maxDelay)
        self.resetAfter = max(.zero, resetAfter)
        self.maxDelayAfterReady = max(.zero, initialDelay, maxDelayAfterReady)
        self.maxBootFailures = max(0, maxBootFailures)
        self.period = period
        self.degradedDelay = max(.zero, degradedDelay)
        self.maxDegradedDelay = max(self.degradedDelay, maxDegradedDelay)
    }

    /// Restarts at once, forever: Node's basic example.
    public static let immediate = RestartPolicy(initialDelay: .zero, factor: 1, maxDelay: .zero, maxBootFailures: .max)
}

/// What to do about a worker that exited unexpectedly.
enum RestartDecision: Equatable, Sendable {
    /// Start the slot again after this delay.
    case restart(after: Duration)
    /// A crash-loop episode begins while workers still serve: say so once (the reason),
    /// and start the slot again after this delay.
    case degrade(after: Duration, reason: String)
    /// Stop the cluster; the reason names the worker, its exit and the count.
    case stop(reason: String)
}

/// The restart history a ``RestartPolicy`` is applied to: per-slot backoff, the recent
/// boot failures and the crash-loop episode in progress. A pure value, driven by the
/// instants and counts it is given.
struct RestartLedger<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// A run of boot failures past the policy's limit while workers still serve.
    struct Episode: Equatable, Sendable {
        /// When it began.
        let began: Instant
        /// Boot failures since it began, the one that began it included.
        var failures: Int
    }

    let policy: RestartPolicy
    private var attempts: [Int: Int] = [:]
    private var bootFailures: [Instant] = []
    /// Boot failures since the supervisor started (`cluster_boot_failures_total`).
    private(set) var bootFailuresCounted = 0
    /// The crash-loop episode in progress, if any: the cluster is degraded.
    private(set) var episode: Episode?

    init(policy: RestartPolicy) { self.policy = policy }

    /// Records that `worker` in `slot` exited with `status` at `now`, `uptime` after it
    /// started, having been ready for `readyFor` (nil: it never was), while `serving` other
    /// workers are ready, and decides.
    ///
    /// A boot failure is an exit before ready or with ``RestartPolicy/cannotBootExitCode``;
    /// only boot failures begin or prolong an episode, and only a boot failure with no
    /// worker serving stops the cluster.
    mutating func exited(worker: String, slot: Int, status: ExitStatus, uptime: Duration, readyFor: Duration?,
                         serving: Int, at now: Instant) -> RestartDecision {
        let cannotBoot = status.code == RestartPolicy.cannotBootExitCode
        guard readyFor == nil || cannotBoot else {
            return .restart(after: min(slotDelay(slot: slot, uptime: uptime), policy.maxDelayAfterReady))
        }
        let period = policy.period
        bootFailures.append(now)
        bootFailuresCounted += 1
        bootFailures.removeAll { $0.duration(to: now) > period }
        if var current = episode {
            guard serving > 0 else {
                return .stop(reason: "\(Self.exit(of: worker, status, readyFor: readyFor)) and no worker is left serving, in a crash loop that began \(Self.seconds(current.began.duration(to: now))) ago (\(current.failures + 1) boot failures since); stopping the cluster. The workers' output above says why they cannot boot.")
            }
            current.failures += 1
            episode = current
            return .restart(after: degradedDelay(failure: current.failures))
        }
        if cannotBoot {
            guard serving > 0 else {
                return .stop(reason: "\(worker) exited with code \(RestartPolicy.cannotBootExitCode): it cannot boot, so restarting it is pointless; stopping the cluster. Its output above says why.")
            }
            return beginEpisode(at: now, reason: "\(worker) exited with code \(RestartPolicy.cannotBootExitCode): it cannot boot", serving: serving)
        }
        if bootFailures.count > policy.maxBootFailures {
            let failed = "\(Self.exit(of: worker, status, readyFor: readyFor)): \(bootFailures.count) workers failed to boot within \(Self.seconds(policy.period)) (at most \(policy.maxBootFailures) allowed)"
            guard serving > 0 else {
                return .stop(reason: "\(failed); stopping the cluster instead of restarting in a loop. Its output above says why.")
            }
            return beginEpisode(at: now, reason: failed, serving: serving)
        }
        return .restart(after: slotDelay(slot: slot, uptime: uptime))
    }

    /// Records that a worker became ready; returns the crash-loop episode this ends, if
    /// one was in progress.
    mutating func booted() -> Episode? {
        guard episode != nil else { return nil }
        let ended = episode
        episode = nil
        bootFailures.removeAll()
        attempts.removeAll()
        return ended
    }

    /// "worker 3 (pid 9) exited (exit code 1) before it was ready", or "... 5.5 s after it was ready".
    static func exit(of worker: String, _ status: ExitStatus, readyFor: Duration?) -> String {
        guard let readyFor else { return "\(worker) exited (\(status)) before it was ready" }
        return "\(worker) exited (\(status)) \(roughly(readyFor)) after it was ready"
    }

    /// A measured duration for a log line, rounded: "5.5 s", "42 s", "250 ms".
    static func roughly(_ duration: Duration) -> String { duration.rounded }

    private mutating func beginEpisode(at now: Instant, reason: String, serving: Int) -> RestartDecision {
        episode = Episode(began: now, failures: 1)
        let delay = degradedDelay(failure: 1)
        return .degrade(after: delay, reason: "\(reason). The cluster is degraded: \(serving) \(serving == 1 ? "worker keeps" : "workers keep") serving; boot attempts now wait \(Self.seconds(delay)), growing to \(Self.seconds(policy.maxDegradedDelay)), until a worker boots. Its output above says why it cannot boot.")
    }

    /// The next delay of `slot`'s backoff, after a worker up `uptime`.
    private mutating func slotDelay(slot: Int, uptime: Duration) -> Duration {
        if uptime >= policy.resetAfter { attempts[slot] = 0 }
        let attempt = attempts[slot, default: 0]
        attempts[slot] = attempt + 1
        return delay(attempt: attempt)
    }

    /// The delay before restart number `attempt` (0-based) of one slot.
    func delay(attempt: Int) -> Duration {
        guard attempt > 0 else { return .zero }
        return Self.backoff(from: policy.initialDelay, factor: policy.factor, steps: attempt - 1, max: policy.maxDelay)
    }

    /// The delay after boot failure number `failure` (1-based) of a crash-loop episode.
    func degradedDelay(failure: Int) -> Duration {
        Self.backoff(from: policy.degradedDelay, factor: policy.factor, steps: max(0, failure - 1), max: policy.maxDegradedDelay)
    }

    /// `initial` grown by `factor` `steps` times, capped at `max`.
    private static func backoff(from initial: Duration, factor: Double, steps: Int, max ceiling: Duration) -> Duration {
        var delay = initial
        for _ in 0..<min(steps, 64) {
            // Compared in seconds first: a huge factor must reach the ceiling, not trap.
            if delay.inSeconds * factor >= ceiling.inSeconds { return ceiling }
            delay = delay * factor
        }
        return min(delay, ceiling)
    }

    /// A configured or measured duration for a log line, rounded: "30 s", "4.1 s", "250 ms".
    static func seconds(_ duration: Duration) -> String { duration.rounded }
}
