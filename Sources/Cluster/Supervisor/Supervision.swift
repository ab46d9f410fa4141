/// What a ``Supervisor`` keeps true: how many workers, how they restart, when they count
/// as ready, how they are replaced on reload, and when a hung or leaking one is replaced.
/// Every value has a default an operator can start with.
public struct Supervision: Sendable {
    /// When a worker counts as ready.
    public enum Readiness: Sendable, Hashable {
        /// When it starts accepting on a listener (the default).
        case listening
        /// When it calls ``ClusterWorker/ready()``: for workers that warm caches or
        /// connect to databases before they should get traffic.
        case explicit
    }

    /// Replacing every worker with one of a new generation.
    public struct Reload: Sendable, Hashable {
        /// How many replacements start at once.
        public var maxSurge: Int
        /// A replacement not ready this long after it started aborts the reload; the old
        /// workers keep serving.
        public var readyTimeout: Duration

        /// Default: one at a time, 60 s to get ready.
        public init(maxSurge: Int = 1, readyTimeout: Duration = .seconds(60)) {
            self.maxSurge = max(1, maxSurge)
            self.readyTimeout = readyTimeout
        }
    }

    /// Replacing a worker whose event loop stopped turning.
    public struct Watchdog: Sendable, Hashable {
        /// A worker silent this long, or whose event loop lags this much, gets SIGABRT.
        public var timeout: Duration
        /// Then SIGKILL this much later, if it is still there.
        public var killAfter: Duration

        /// Default: 30 s, then SIGKILL 1 s after SIGABRT.
        public init(timeout: Duration = .seconds(30), killAfter: Duration = .seconds(1)) {
            self.timeout = timeout
            self.killAfter = killAfter
        }
    }

    /// Replacing workers before they leak or age too far, through the same path as a
    /// reload (the replacement is ready before the worker retires).
    public struct Recycling: Sendable, Hashable {
        /// After this many requests (plus a random share of ``jitter``); nil: never.
        public var maxRequests: Int?
        /// Up to this many requests more, chosen per worker, so workers do not all
        /// recycle at once.
        public var jitter: Int
        /// When its resident memory (sampled every second) exceeds this many bytes; nil: never.
        public var maxRSS: Int?
        /// When it has been up this long; nil: never.
        public var maxAge: Duration?

        /// Default: never.
        public init(maxRequests: Int? = nil, jitter: Int = 0, maxRSS: Int? = nil, maxAge: Duration? = nil) {
            self.maxRequests = maxRequests
            self.jitter = max(0, jitter)
            self.maxRSS = maxRSS
            self.maxAge = maxAge
        }

        var isEnabled: Bool { maxRequests != nil || maxRSS != nil || maxAge != nil }
    }

    /// Workers to keep running. Default: one per available core.
    public var workers: Int
    /// Restarts, backoff and crash-loop protection.
    public var restart: RestartPolicy
    /// When a worker counts as ready.
    public var readiness: Readiness
    /// A worker not ready this long after it started is killed (and counts as a boot failure).
    public var bootTimeout: Duration
    /// How long a drain (shutdown, reload, scale down, recycling) may take before SIGKILL.
    public var drainTimeout: Duration
    /// How reloads roll.
    public var reload: Reload
    /// How long a hot upgrade may take: a new primary that has not taken over this long
    /// after it started is killed (its workers die with it) and this primary carries on.
    /// Default: 90 s, room for its workers' boot (each has ``bootTimeout``, started together).
    public var upgradeTimeout: Duration
    /// The hung-worker watchdog; nil: off.
    public var watchdog: Watchdog?
    /// When workers are recycled.
    public var recycling: Recycling
    /// Scales the workers with load between the policy's bounds; nil: the count is fixed
    /// (``Supervisor/scale(to:)`` and SIGTTIN/SIGTTOU still change it).
    public var autoscale: (any AutoscalePolicy)?
    /// Whether the supervisor handles the primary's signals: TERM and INT drain and stop,
    /// QUIT (or a second INT) stops at once, HUP reloads, TTIN and TTOU add and remove a
    /// worker, USR2 hands over to a new primary. Default: yes.
    public var handlesSignals: Bool

    /// Supervision with every default.
    public init(workers: Int = Cluster.availableCores, restart: RestartPolicy = RestartPolicy(),
                readiness: Readiness = .listening, bootTimeout: Duration = .seconds(60),
                drainTimeout: Duration = .seconds(30), reload: Reload = Reload(), upgradeTimeout: Duration = .seconds(90),
                watchdog: Watchdog? = Watchdog(), recycling: Recycling = Recycling(),
                autoscale: (any AutoscalePolicy)? = nil, handlesSignals: Bool = true) {
        self.workers = max(0, workers)
        self.restart = restart
        self.readiness = readiness
        self.bootTimeout = bootTimeout
        self.drainTimeout = drainTimeout
        self.reload = reload
        self.upgradeTimeout = max(.zero, upgradeTimeout)
        self.watchdog = watchdog
        self.recycling = recycling
        self.autoscale = autoscale
        self.handlesSignals = handlesSignals
    }
}

/// One worker as its supervisor sees it (``Supervisor/status``).
public struct SupervisedWorker: Sendable {
    /// Where it is in its supervised life.
    public enum Role: String, Sendable {
        /// Started, not ready yet.
        case starting
        /// Ready and counted.
        case ready
        /// Ready, and its replacement is starting (a reload or a recycle).
        case replaced
        /// Told to drain; its exit is intended.
        case retiring
    }

    /// The worker: id, pid, slot, state and its last heartbeat's ``Worker/stats``.
    public let worker: Worker
    /// The generation it was started in (each reload adds one).
    public let generation: Int
    /// Where it is in its supervised life.
    public let role: Role
    /// Time since it was started.
    public let uptime: Duration
    /// Unplanned restarts of its slot since the supervisor started.
    public let restarts: Int
}
