public import Logging

/// How the primary starts workers, as Node's `cluster.setupPrimary` sets it.
///
/// A value records which settings it *names*: those passed to the initializer (other than
/// nil) and those assigned since. `primary.setup(_:)` changes only
/// those, as Node's `setupPrimary` changes only the fields it is given; the rest keep
/// what earlier calls set, or their defaults:
///
/// ```swift
/// primary.setup(PrimarySettings(user: "web"))
/// primary.setup(PrimarySettings(output: .prefixed))   // user is still "web"
/// primary.setup { $0.group = nil }                    // edits the effective settings
/// primary.settings.executable                         // the binary workers run, defaults filled in
/// ```
public struct PrimarySettings: Sendable {
    /// The settings a value can name, for merging.
    enum Field: Sendable, Hashable, CaseIterable {
        case onOutput, executable, arguments, environment, workingDirectory, user, group, output, disconnectTimeout,
             distribution, limits, balanceConnections, listenRequests, logger
    }

    /// The settings this value names: given to the initializer or assigned since.
    /// `primary.setup(_:)` applies these and no others.
    private(set) var named: Set<Field> = []

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
    public var onOutput: (@Sendable (_ worker: Int, _ line: String) -> Void)? { didSet { named.insert(.onOutput) } }

    /// The program workers run. Default: the primary's own executable, looked up by path at
    /// each fork, so a binary replaced on disk takes effect for new workers.
    public var executable: String? { didSet { named.insert(.executable) } }
    /// Arguments after argv[0]. Default: the primary's own.
    public var arguments: [String]? { didSet { named.insert(.arguments) } }
    /// Variables added to every worker's environment (over the primary's own).
    public var environment: [String: String] { didSet { named.insert(.environment) } }
    /// The workers' working directory. Default: the primary's.
    public var workingDirectory: String? { didSet { named.insert(.workingDirectory) } }
    /// The user workers run as (name or number); the primary must be allowed to switch.
    public var user: String? { didSet { named.insert(.user) } }
    /// The group workers run as (name or number). Default with `user`: that user's group.
    public var group: String? { didSet { named.insert(.group) } }
    /// Where worker output goes. Default: inherited.
    public var output: Output { didSet { named.insert(.output) } }
    /// How long `disconnect()` waits for a worker to finish before SIGKILL.
    public var disconnectTimeout: Duration { didSet { named.insert(.disconnectTimeout) } }
    /// How connections reach workers on a listener bound without saying (a worker's
    /// `listener(_:)` request, or `listen(_:)` without a distribution). Default:
    /// leastConnections, the one strategy that keeps serving well when a worker is slow
    /// (Sources/Cluster/Cluster.docc/StrategiesMeasured.md has the measurements).
    public var distribution: Distribution { didSet { named.insert(.distribution) } }
    /// Resource limits each worker gets. Default: the primary's own.
    public var limits: ResourceLimits { didSet { named.insert(.limits) } }
    /// Whether a worker that has held well over its share of open connections for two
    /// seconds is asked to close its excess gracefully, so those clients reconnect and
    /// spread (`shared` and `reusePort` listeners place long-lived connections unevenly;
    /// never with a `sticky` listener, whose clients would only come back). Default: on.
    public var balanceConnections = true { didSet { named.insert(.balanceConnections) } }
    /// Which new listeners a worker may have the primary bind for it. Default: up to 64
    /// listeners in all, none privileged when workers run as another user.
    public var listenRequests = ListenRequests.default { didSet { named.insert(.listenRequests) } }
    /// Where the primary logs (its listeners, channels, workers' hand-offs; a ``Supervisor``
    /// takes a logger of its own). Default: the label `cluster.primary`.
    public var logger = Logger(label: "cluster.primary") { didSet { named.insert(.logger) } }

    /// Settings that name what is given here (and whatever is assigned later); everything
    /// else keeps its default, or, passed to `primary.setup(_:)`, what
    /// earlier calls set. A nil argument names nothing: to put a setting back to its
    /// default, assign it (`settings.user = nil`) or use `primary.setup { … }`.
    public init(executable: String? = nil, arguments: [String]? = nil, environment: [String: String]? = nil,
                workingDirectory: String? = nil, user: String? = nil, group: String? = nil,
                output: Output? = nil, disconnectTimeout: Duration? = nil,
                distribution: Distribution? = nil, limits: ResourceLimits? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment ?? [:]
        self.workingDirectory = workingDirectory
        self.user = user
        self.group = group
        self.output = output ?? .inherit
        self.disconnectTimeout = disconnectTimeout ?? .seconds(10)
        self.distribution = distribution ?? .leastConnections
        self.limits = limits ?? ResourceLimits()
        let given: [(Field, Bool)] = [
            (.executable, executable != nil), (.arguments, arguments != nil), (.environment, environment != nil),
            (.workingDirectory, workingDirectory != nil), (.user, user != nil), (.group, group != nil),
            (.output, output != nil), (.disconnectTimeout, disconnectTimeout != nil),
            (.distribution, distribution != nil), (.limits, limits != nil),
        ]
        named = Set(given.filter(\.1).map(\.0))
    }

    /// These settings with what `changes` names taken from it (Node's `setupPrimary`:
    /// later calls override only the fields they give).
    func merging(_ changes: PrimarySettings) -> PrimarySettings {
        var merged = self
        for field in changes.named {
            switch field {
            case .onOutput: merged.onOutput = changes.onOutput
            case .executable: merged.executable = changes.executable
            case .arguments: merged.arguments = changes.arguments
            case .environment: merged.environment = changes.environment
            case .workingDirectory: merged.workingDirectory = changes.workingDirectory
            case .user: merged.user = changes.user
            case .group: merged.group = changes.group
            case .output: merged.output = changes.output
            case .disconnectTimeout: merged.disconnectTimeout = changes.disconnectTimeout
            case .distribution: merged.distribution = changes.distribution
            case .limits: merged.limits = changes.limits
            case .balanceConnections: merged.balanceConnections = changes.balanceConnections
            case .listenRequests: merged.listenRequests = changes.listenRequests
            case .logger: merged.logger = changes.logger
            }
        }
        return merged
    }

    /// These settings as they take effect, naming nothing: the executable and arguments
    /// filled in with the primary's own (Node's `cluster.settings` shows `exec` and `args`).
    func effective(executable currentExecutable: @autoclosure () -> String,
                   arguments currentArguments: @autoclosure () -> [String]) -> PrimarySettings {
        var effective = self
        if effective.executable == nil { effective.executable = currentExecutable() }
        if effective.arguments == nil { effective.arguments = currentArguments() }
        effective.named = []
        return effective
    }
}
