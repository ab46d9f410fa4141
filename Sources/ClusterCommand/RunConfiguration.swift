import Cluster
#if canImport(Glibc)
import Glibc
#endif

/// Everything `cluster run` needs. One table of settings (``RunConfiguration/settings``)
/// reads both the config file's keys and the flags, by the same names, so a flag is a key
/// and the file and the command line cannot drift apart; flags are applied last and win.
struct RunConfiguration: Sendable, Equatable {
    /// How a worker's program says it is ready.
    enum Readiness: String, Sendable, Equatable {
        /// Waiting for connections on its sockets, as /proc shows (``AcceptWatch``).
        case accepting
        /// Running for `ready-after` without exiting (einhorn's timer ACK).
        case started
        /// `READY=1` on `NOTIFY_SOCKET` (systemd's sd_notify).
        case notify
    }

    var command: [String] = []
    var listen: [ListenAddress] = []
    /// Nil: one per core.
    var workers: Int?
    var distribution = Distribution.shared
    var readiness = Readiness.accepting
    var readyAfter: Duration = .seconds(1)
    var bootTimeout: Duration = .seconds(60)
    var drainTimeout: Duration = .seconds(30)
    var drainSignal = Signal.terminate
    var restartDelay: Duration = .milliseconds(100)
    var maxBootFailures = 5
    var bootPeriod: Duration = .seconds(30)
    var maxSurge = 1
    var watchdog: Duration?
    var maxRSS: Int?
    var maxAge: Duration?
    var minWorkers: Int?
    var maxWorkers: Int?
    var scaleDownAfter: Duration = .seconds(30)
    var limits = ResourceLimits()
    var user: String?
    var group: String?
    var admin: ListenAddress?
    var control: String = RunConfiguration.defaultControlPath
    var environment: [String: String] = [:]

    /// `$XDG_RUNTIME_DIR/cluster.sock`, or `/tmp/cluster-UID.sock`.
    static var defaultControlPath: String {
        if let directory = Cluster.environmentValue("XDG_RUNTIME_DIR") { return directory + "/cluster.sock" }
        return "/tmp/cluster-\(getuid()).sock"
    }

    /// The supervision these settings ask for.
    var supervision: Supervision {
        let workers = workers ?? Cluster.availableCores
        var autoscale: (any AutoscalePolicy)?
        if minWorkers != nil || maxWorkers != nil {
            autoscale = Autoscaler(minWorkers: minWorkers ?? workers, maxWorkers: maxWorkers, scaleDownAfter: scaleDownAfter)
        }
        return Supervision(
            workers: autoscale == nil ? workers : (minWorkers ?? workers),
            restart: RestartPolicy(initialDelay: restartDelay, maxBootFailures: maxBootFailures, period: bootPeriod),
            readiness: .explicit,
            bootTimeout: bootTimeout,
            drainTimeout: drainTimeout,
            reload: .init(maxSurge: maxSurge, readyTimeout: bootTimeout),
            // The program's own watchdog pings (WATCHDOG=1) are checked in the worker; the
            // worker's heartbeat keeps the library's watchdog for the worker itself.
            watchdog: Supervision.Watchdog(),
            recycling: .init(maxRSS: maxRSS, maxAge: maxAge),
            autoscale: autoscale)
    }

    /// Checks what no single setting can: a command, and a strategy a program can use.
    func validated() throws -> RunConfiguration {
        guard !command.isEmpty else {
            throw CommandError("no program to run: give it after '--' (cluster run --listen tcp://0.0.0.0:8080 -- python3 app.py) or as 'command' in the config file")
        }
        if let minWorkers, let maxWorkers, minWorkers > maxWorkers {
            throw CommandError("min-workers \(minWorkers) is above max-workers \(maxWorkers)")
        }
        return self
    }

    // MARK: Settings

    /// One setting: its name (a config key and, with `--`, a flag), what it takes, and how
    /// it applies a value. `values` holds one element, or several for a list.
    struct Setting: Sendable {
        let name: String
        let help: String
        let apply: @Sendable (_ values: [String], _ configuration: inout RunConfiguration) throws -> Void
        var isList = false
    }

    static let settings: [Setting] = [
        Setting(name: "command", help: "the program and its arguments", apply: { values, c in c.command = values }, isList: true),
        Setting(name: "listen", help: "tcp://HOST:PORT or unix:PATH, repeatable", apply: { values, c throws in
            c.listen = try values.map { text throws in try ListenAddress(parsing: text) }
        }, isList: true),
        Setting(name: "workers", help: "a count, or auto (one per core)", apply: { values, c throws in
            c.workers = values[0] == "auto" ? nil : try integer(values[0], in: 0...1024, "a count from 0 to 1024, or auto")
        }),
        Setting(name: "distribution", help: "shared or reusePort", apply: { values, c throws in
            let distribution = try Distribution(parsing: values[0])
            guard distribution == .shared || distribution == .reusePort else {
                throw CommandError("\(values[0]) needs the primary to hand each connection to the worker over its channel, which a program that is not a swift-cluster worker cannot take; use shared or reusePort")
            }
            c.distribution = distribution
        }),
        Setting(name: "readiness", help: "accepting (waiting on its sockets), started (running for ready-after) or notify (READY=1 on NOTIFY_SOCKET)", apply: { values, c throws in
            guard let readiness = Readiness(rawValue: values[0]) else { throw invalid(values[0], "accepting, started or notify") }
            c.readiness = readiness
        }),
        Setting(name: "ready-after", help: "with readiness started: how long the program must run (default 1s)", apply: { v, c throws in c.readyAfter = try duration(v[0]) }),
        Setting(name: "boot-timeout", help: "how long a worker may take to be ready (default 60s)", apply: { v, c throws in c.bootTimeout = try duration(v[0]) }),
        Setting(name: "drain-timeout", help: "how long a draining worker may take before SIGKILL (default 30s)", apply: { v, c throws in c.drainTimeout = try duration(v[0]) }),
        Setting(name: "drain-signal", help: "the signal that asks the program to finish (default TERM)", apply: { v, c throws in c.drainSignal = try signal(v[0]) }),
        Setting(name: "restart-delay", help: "the first backoff after a crash (default 100ms; it doubles)", apply: { v, c throws in c.restartDelay = try duration(v[0]) }),
        Setting(name: "max-boot-failures", help: "this many workers failing to boot within boot-period stop the cluster (default 5)", apply: { v, c throws in
            c.maxBootFailures = try integer(v[0], in: 1...10_000, "a count from 1")
        }),
        Setting(name: "boot-period", help: "the window of max-boot-failures (default 30s)", apply: { v, c throws in c.bootPeriod = try duration(v[0]) }),
        Setting(name: "max-surge", help: "replacements a reload starts at once (default 1)", apply: { v, c throws in
            c.maxSurge = try integer(v[0], in: 1...1024, "a count from 1")
        }),
        Setting(name: "watchdog", help: "the program must send WATCHDOG=1 this often (sets WATCHDOG_USEC)", apply: { v, c throws in c.watchdog = try duration(v[0]) }),
        Setting(name: "max-rss", help: "recycle a worker above this many MiB", apply: { v, c throws in
            c.maxRSS = try integer(v[0], in: 1...1 << 30, "MiB from 1") << 20
        }),
        Setting(name: "max-age", help: "recycle a worker after this long", apply: { v, c throws in c.maxAge = try duration(v[0]) }),
        Setting(name: "min-workers", help: "autoscale from this many", apply: { v, c throws in
            c.minWorkers = try integer(v[0], in: 1...1024, "a count from 1 to 1024")
        }),
        Setting(name: "max-workers", help: "autoscale up to this many", apply: { v, c throws in
            c.maxWorkers = try integer(v[0], in: 1...1024, "a count from 1 to 1024")
        }),
        Setting(name: "scale-down-after", help: "autoscale down after this long idle (default 30s)", apply: { v, c throws in c.scaleDownAfter = try duration(v[0]) }),
        Setting(name: "limit-nofile", help: "each worker's open-file limit", apply: { v, c throws in
            c.limits.openFiles = try integer(v[0], in: 16...1 << 30, "a count from 16")
        }),
        Setting(name: "limit-as", help: "each worker's address-space limit in MiB", apply: { v, c throws in
            c.limits.addressSpace = try integer(v[0], in: 16...1 << 30, "MiB from 16") << 20
        }),
        Setting(name: "limit-cpu", help: "each worker's CPU-time limit in seconds", apply: { v, c throws in
            c.limits.cpuSeconds = try integer(v[0], in: 1...1 << 30, "seconds from 1")
        }),
        Setting(name: "user", help: "run workers as this user (after binding)", apply: { v, c in c.user = v[0] }),
        Setting(name: "group", help: "run workers as this group", apply: { v, c in c.group = v[0] }),
        Setting(name: "admin", help: "serve /metrics, /healthz, /readyz on HOST:PORT", apply: { v, c throws in
            c.admin = try ListenAddress(parsing: v[0].contains("://") ? v[0] : "tcp://" + v[0])
        }),
        Setting(name: "control", help: "the control socket's path", apply: { v, c in c.control = v[0] }),
        Setting(name: "env", help: "NAME=VALUE for the program, repeatable", apply: { values, c throws in
            for value in values {
                guard let equals = value.firstIndex(of: "="), equals != value.startIndex else { throw invalid(value, "NAME=VALUE") }
                c.environment[String(value[..<equals])] = String(value[value.index(after: equals)...])
            }
        }, isList: true),
    ]

    static func setting(named name: String) -> Setting? { settings.first { $0.name == name } }

    // MARK: Values

    static func invalid(_ value: String, _ expected: String) -> CommandError {
        CommandError("'\(value)' is not \(expected)")
    }

    static func integer(_ text: String, in range: ClosedRange<Int>, _ expected: String) throws -> Int {
        guard let value = Int(text), range.contains(value) else { throw invalid(text, expected) }
        return value
    }

    /// "250ms", "2s", "5m", "1h", or a number of seconds.
    static func duration(_ text: String) throws -> Duration {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("", 1)]
        for (unit, seconds) in units where text.hasSuffix(unit) {
            if let number = Double(text.dropLast(unit.count)), number >= 0, number.isFinite {
                return .milliseconds(Int((number * seconds * 1000).rounded()))
            }
        }
        throw invalid(text, "a duration such as 500ms, 2s, 5m or 1h")
    }

    /// "TERM", "SIGTERM" or "15".
    static func signal(_ text: String) throws -> Signal {
        guard let signal = Signal(name: text) else { throw invalid(text, "a signal such as TERM, INT, QUIT, HUP, USR1 or a number") }
        return signal
    }
}

/// A mistake in what the operator gave `cluster`: said plainly, with what to do.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
