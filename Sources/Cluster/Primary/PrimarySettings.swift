/// How the primary starts workers, as Node's `cluster.setupPrimary` sets it.
public struct PrimarySettings: Sendable {
    /// Where worker output goes.
    public struct Output: Hashable, Sendable {
        enum Mode: Hashable, Sendable { case inherit, prefixed }
        let mode: Mode
        /// Workers write to the primary's own standard output and error.
        public static let inherit = Output(mode: .inherit)
        /// The primary reads each worker's output and writes it line by line, each line
        /// prefixed with `[worker ID] `.
        public static let prefixed = Output(mode: .prefixed)
    }

    /// With ``Output/prefixed``, also called on the primary's I/O thread with each whole
    /// line a worker writes (without the prefix or the newline): for a log view.
    public var onOutput: (@Sendable (_ worker: Int, _ line: String) -> Void)?

    /// The program workers run. Default: the primary's own executable, looked up by path at
    /// each fork, so a binary replaced on disk takes effect for new workers.
    public var executable: String?
    /// Arguments after argv[0]. Default: the primary's own.
    public var arguments: [String]?
    /// Variables added to every worker's environment (over the primary's own).
    public var environment: [String: String]
    /// The workers' working directory. Default: the primary's.
    public var workingDirectory: String?
    /// The user workers run as (name or number); the primary must be allowed to switch.
    public var user: String?
    /// The group workers run as (name or number). Default with `user`: that user's group.
    public var group: String?
    /// Where worker output goes. Default: inherited.
    public var output: Output
    /// How long `disconnect()` waits for a worker to finish before SIGKILL.
    public var disconnectTimeout: Duration
    /// How connections reach workers on a listener bound without saying (a worker's
    /// `listener(_:)` request, or `listen(_:)` without a distribution). Default:
    /// leastConnections, the one strategy that keeps serving well when a worker is slow
    /// (docs/distribution.md has the measurements).
    public var distribution: Distribution
    /// Resource limits each worker gets. Default: the primary's own.
    public var limits: ResourceLimits
    /// Whether a worker that has held well over its share of open connections for two
    /// seconds is asked to close its excess gracefully, so those clients reconnect and
    /// spread (`shared` and `reusePort` listeners place long-lived connections unevenly;
    /// never with a `sticky` listener, whose clients would only come back). Default: on.
    public var balanceConnections = true
    /// Which new listeners a worker may have the primary bind for it. Default: up to 64
    /// listeners in all, none privileged when workers run as another user.
    public var listenRequests = ListenRequests.default

    /// Settings with every default.
    public init(executable: String? = nil, arguments: [String]? = nil, environment: [String: String] = [:],
                workingDirectory: String? = nil, user: String? = nil, group: String? = nil,
                output: Output = .inherit, disconnectTimeout: Duration = .seconds(10),
                distribution: Distribution = .leastConnections, limits: ResourceLimits = ResourceLimits()) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
        self.group = group
        self.output = output
        self.disconnectTimeout = disconnectTimeout
        self.distribution = distribution
        self.limits = limits
    }
}
