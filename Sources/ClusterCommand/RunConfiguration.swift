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
    var upgradeTimeout: Duration = .seconds(90)
    var drainSignal = Signal.terminate
    var restartDelay: Duration = .milliseconds(100)
    /// How long a program must stay up for its slot's backoff to start over.
    var resetAfter: Duration = .seconds(30)
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

    /// `$XDG_RUNTIME_DIR/cluster.sock`, or `/tmp/cluster-UID/cluster.sock`: in a directory
    /// only this user may write (``ControlPath/prepareDefaultDirectory()`` checks it).
    static var defaultControlPath: String { ControlPath.defaultPath }

    /// The supervision these settings ask for.
    var supervision: Supervision {
        let workers = workers ?? Cluster.availableCores
        var autoscale: (any AutoscalePolicy)?
        if minWorkers != nil || maxWorkers != nil {
            autoscale = Autoscaler(minWorkers: minWorkers ?? workers, maxWorkers: maxWorkers, scaleDownAfter: scaleDownAfter)
        }
        return Supervision(
            workers: autoscale == nil ? workers : (minWorkers ?? workers),
            restart: RestartPolicy(initialDelay: restartDelay, resetAfter: resetAfter, maxBootFailures: maxBootFailures, period: bootPeriod),
            readiness: .explicit,
            bootTimeout: bootTimeout,
            drainTimeout: drainTimeout,
            reload: .init(maxSurge: maxSurge, readyTimeout: bootTimeout),
            upgradeTimeout: upgradeTimeout,
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
        Setting(name: "listen", help: "tcp://HOST:PORT, unix:PATH, or a socket the service manager passed: fd://N or fd:NAME (LISTEN_FDS); then ?proxy=v1 or ?proxy=v2 behind a PROXY protocol balancer; repeatable", apply: { values, c throws in
            c.listen = try values.map { text throws in try listenAddress(text) }
        }, isList: true),
        Setting(name: "workers", help: "a count from 1 to 1024, or auto (one per core)", apply: { values, c throws in
            c.workers = values[0] == "auto" ? nil : try integer(values[0], in: 1...1024, "a worker count from 1 to 1024, or auto")
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
        Setting(name: "ready-after", help: "with readiness started: how long the program must run (default 1s, 0s to 1h)", apply: { v, c throws in
            c.readyAfter = try duration(v[0], in: .zero ... .seconds(3600))
        }),
        Setting(name: "boot-timeout", help: "how long a worker may take to be ready (default 60s, 1s to 24h)", apply: { v, c throws in
            c.bootTimeout = try duration(v[0], in: .seconds(1) ... .seconds(day))
        }),
        Setting(name: "upgrade-timeout", help: "how long a hot upgrade's new primary may take to take over before it is killed (default 90s, 1s to 24h)", apply: { v, c throws in
            c.upgradeTimeout = try duration(v[0], in: .seconds(1) ... .seconds(day))
        }),
        Setting(name: "drain-timeout", help: "how long a draining worker may take before SIGKILL (default 30s, 0s to 24h)", apply: { v, c throws in
            c.drainTimeout = try duration(v[0], in: .zero ... .seconds(day))
        }),
        Setting(name: "drain-signal", help: "the signal that asks the program to finish (default TERM)", apply: { v, c throws in c.drainSignal = try signal(v[0]) }),
        Setting(name: "restart-delay", help: "the first backoff after a crash (default 100ms, 0s to 1h; it doubles)", apply: { v, c throws in
            c.restartDelay = try duration(v[0], in: .zero ... .seconds(3600))
        }),
        Setting(name: "reset-after", help: "how long a program must stay up for its slot's backoff to start over; after a program that was ready the backoff is 1s at most (default 30s, 0s to 24h)", apply: { v, c throws in
            c.resetAfter = try duration(v[0], in: .zero ... .seconds(day))
        }),
        Setting(name: "max-boot-failures", help: "this many workers failing to boot within boot-period stop the cluster (default 5, 1 to 10000)", apply: { v, c throws in
            c.maxBootFailures = try integer(v[0], in: 1...10_000, "a count from 1 to 10000")
        }),
        Setting(name: "boot-period", help: "the window of max-boot-failures (default 30s, 1s to 24h)", apply: { v, c throws in
            c.bootPeriod = try duration(v[0], in: .seconds(1) ... .seconds(day))
        }),
        Setting(name: "max-surge", help: "replacements a reload starts at once (default 1, 1 to 1024)", apply: { v, c throws in
            c.maxSurge = try integer(v[0], in: 1...1024, "a count from 1 to 1024")
        }),
        Setting(name: "watchdog", help: "the program must send WATCHDOG=1 this often, 1s to 24h (sets WATCHDOG_USEC)", apply: { v, c throws in
            c.watchdog = try duration(v[0], in: .seconds(1) ... .seconds(day))
        }),
        Setting(name: "max-rss", help: "recycle a worker above this many MiB (1 to 1048576)", apply: { v, c throws in
            c.maxRSS = try integer(v[0], in: 1...1 << 20, "MiB from 1 to 1048576 (1 TiB)") << 20
        }),
        Setting(name: "max-age", help: "recycle a worker after this long (10s to 365d)", apply: { v, c throws in
            c.maxAge = try duration(v[0], in: .seconds(10) ... .seconds(365 * day))
        }),
        Setting(name: "min-workers", help: "autoscale from this many (1 to 1024)", apply: { v, c throws in
            c.minWorkers = try integer(v[0], in: 1...1024, "a worker count from 1 to 1024")
        }),
        Setting(name: "max-workers", help: "autoscale up to this many (1 to 1024)", apply: { v, c throws in
            c.maxWorkers = try integer(v[0], in: 1...1024, "a worker count from 1 to 1024")
        }),
        Setting(name: "scale-down-after", help: "autoscale down after this long idle (default 30s, 1s to 24h)", apply: { v, c throws in
            c.scaleDownAfter = try duration(v[0], in: .seconds(1) ... .seconds(day))
        }),
        Setting(name: "limit-nofile", help: "each worker's open-file limit (16 to 1048576)", apply: { v, c throws in
            c.limits.openFiles = try integer(v[0], in: 16...1 << 20, "a count from 16 to 1048576")
        }),
        Setting(name: "limit-as", help: "each worker's address-space limit in MiB (16 to 1048576)", apply: { v, c throws in
            c.limits.addressSpace = try integer(v[0], in: 16...1 << 20, "MiB from 16 to 1048576 (1 TiB)") << 20
        }),
        Setting(name: "limit-cpu", help: "each worker's CPU-time limit in seconds (1 to 31536000)", apply: { v, c throws in
            c.limits.cpuSeconds = try integer(v[0], in: 1...365 * day, "seconds from 1 to 31536000 (365 days)")
        }),
        Setting(name: "user", help: "run workers as this user (after binding): a name or a uid", apply: { v, c throws in c.user = try user(v[0]) }),
        Setting(name: "group", help: "run workers as this group: a name or a gid", apply: { v, c throws in c.group = try group(v[0]) }),
        Setting(name: "admin", help: "serve /metrics, /healthz, /readyz on HOST:PORT", apply: { v, c throws in
            c.admin = try listenAddress(v[0].contains(":/") || v[0].hasPrefix("unix:") ? v[0] : "tcp://" + v[0])
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

    /// Seconds in a day: the unit of the longest ranges.
    static let day = 86_400

    /// The units a duration is written in, the longest suffix first ("ms" before "m" and "s").
    private static let durationUnits: [(suffix: String, milliseconds: Double)] = [
        ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("", 1000),
    ]

    /// "250ms", "2s", "1.5m", "1h", "7d", or a number of seconds, within `range` (rounded to
    /// the millisecond). The range is checked on the number as written, before anything is
    /// converted, so no value (1e308s, 99999999999999999999h) can overflow.
    static func duration(_ text: String, in range: ClosedRange<Duration>) throws -> Duration {
        let expected = "a duration from \(written(range.lowerBound)) to \(written(range.upperBound)), such as 500ms, 2s, 5m or 1h"
        if text.hasPrefix("-") { throw CommandError("'\(text)' is negative; give \(expected)") }
        for unit in durationUnits where text.hasSuffix(unit.suffix) {
            let number = text.dropLast(unit.suffix.count)
            // Plain decimals only: no sign, exponent, hex, inf or nan.
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  number.filter({ $0 == "." }).count <= 1, number.contains(where: \.isNumber),
                  let value = Double(number) else { continue }
            let milliseconds = (value * unit.milliseconds).rounded()
            guard milliseconds.isFinite, milliseconds >= range.lowerBound / .milliseconds(1), milliseconds <= range.upperBound / .milliseconds(1) else {
                throw CommandError("'\(text)' is out of range; give \(expected)")
            }
            return .milliseconds(Int64(milliseconds))
        }
        throw invalid(text, expected)
    }

    /// A duration as it is written on the command line: 0s, 100ms, 24h, 365d (days from two).
    static func written(_ duration: Duration) -> String {
        let milliseconds = Int64(duration / .milliseconds(1))
        for (suffix, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] as [(String, Int64)]
        where milliseconds >= size * (suffix == "d" ? 2 : 1) && milliseconds % size == 0 {
            return "\(milliseconds / size)\(suffix)"
        }
        return milliseconds == 0 ? "0s" : "\(milliseconds)ms"
    }

    /// `tcp://HOST:PORT`, `HOST:PORT`, `:PORT` or `unix:PATH`, and no other scheme: a URL
    /// such as http://host:80 is an error, not a host named "http://host".
    static func listenAddress(_ text: String) throws -> ListenAddress {
        if !text.hasPrefix("unix:"), !text.hasPrefix("tcp://"), !text.hasPrefix("fd:"), let scheme = text.range(of: ":/") {
            throw CommandError("'\(text)' has the scheme '\(text[..<scheme.lowerBound])', which cluster does not listen with; write tcp://HOST:PORT, unix:PATH, fd://N or fd:NAME")
        }
        let address = try ListenAddress(parsing: text)
        if let host = address.host, host.isEmpty || host.contains(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || "-.:%_".contains($0))) }) {
            throw CommandError("'\(text)' has no valid host ('\(host)'); write tcp://HOST:PORT with a name or an address such as 127.0.0.1 or [::1]")
        }
        return address
    }

    /// A user that exists here (by name in the user database) or a uid.
    static func user(_ text: String) throws -> String {
        if let uid = uid_t(text), uid != uid_t.max { return text }
        guard !text.isEmpty, getpwnam(text) != nil else {
            throw CommandError("no user named '\(text)' exists on this machine; give a name that `getent passwd` lists, or a numeric uid")
        }
        return text
    }

    /// A group that exists here (by name in the group database) or a gid.
    static func group(_ text: String) throws -> String {
        if let gid = gid_t(text), gid != gid_t.max { return text }
        guard !text.isEmpty, getgrnam(text) != nil else {
            throw CommandError("no group named '\(text)' exists on this machine; give a name that `getent group` lists, or a numeric gid")
        }
        return text
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
