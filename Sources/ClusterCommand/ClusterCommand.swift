import ArgumentParser
import Cluster
import ClusterAdmin
import Foundation

@main
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Runs any server program as a supervised cluster of workers that share its listening sockets.",
        discussion: """
            cluster run --listen tcp://0.0.0.0:8080 --workers 4 -- python3 app.py
            cluster status        cluster reload        cluster scale 8        cluster stop
            Signals to the primary: TERM/INT drain and stop, HUP reloads, TTIN/TTOU add or remove a worker.
            """,
        subcommands: [Run.self, Validate.self, Status.self, Reload.self, Scale.self, Stop.self, SendSignal.self, Logs.self])
}

/// The flags of `run`, each also a config-file key of the same name.
struct RunOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "A YAML file of settings; flags override it.") var config: String?
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "Where to listen: tcp://HOST:PORT, unix:PATH, or a socket systemd passed (fd://3, fd:NAME). Repeatable.") var listen: [String] = []
    @Option(name: .long, parsing: .unconditional, help: "How many workers, 1 to 1024, or auto (one per core).") var workers: String?
    @Option(name: .long, parsing: .unconditional, help: "shared (default) or reusePort.") var distribution: String?
    @Option(name: .long, parsing: .unconditional, help: "accepting (default: waiting on its sockets), started (running for --ready-after) or notify (sd_notify READY=1).") var readiness: String?
    @Option(name: .customLong("ready-after"), parsing: .unconditional, help: "With readiness started: how long a program must run to be ready (1s; 0s to 1h).") var readyAfter: String?
    @Option(name: .customLong("boot-timeout"), parsing: .unconditional, help: "How long a worker may take to be ready (60s; 1s to 24h).") var bootTimeout: String?
    @Option(name: .customLong("drain-timeout"), parsing: .unconditional, help: "How long a draining program may take before SIGKILL (30s; 0s to 24h).") var drainTimeout: String?
    @Option(name: .customLong("upgrade-timeout"), parsing: .unconditional, help: "How long a hot upgrade's new primary may take to take over before it is killed (90s; 1s to 24h).") var upgradeTimeout: String?
    @Option(name: .customLong("drain-signal"), parsing: .unconditional, help: "The signal that asks a program to finish (TERM).") var drainSignal: String?
    @Option(name: .customLong("restart-delay"), parsing: .unconditional, help: "The first backoff after a crash (100ms, doubling; 0s to 1h).") var restartDelay: String?
    @Option(name: .customLong("max-boot-failures"), parsing: .unconditional, help: "Boot failures within boot-period that stop the cluster (5; 1 to 10000).") var maxBootFailures: String?
    @Option(name: .customLong("boot-period"), parsing: .unconditional, help: "The window of max-boot-failures (30s; 1s to 24h).") var bootPeriod: String?
    @Option(name: .customLong("reset-after"), parsing: .unconditional, help: "A worker up this long resets its slot's backoff (30s; 0s to 24h).") var resetAfter: String?
    @Option(name: .customLong("max-surge"), parsing: .unconditional, help: "Replacements a reload starts at once (1; 1 to 1024).") var maxSurge: String?
    @Option(name: .long, parsing: .unconditional, help: "Programs must send WATCHDOG=1 this often, 1s to 24h (WATCHDOG_USEC).") var watchdog: String?
    @Option(name: .customLong("max-rss"), parsing: .unconditional, help: "Recycle a worker above this many MiB (1 to 1048576).") var maxRSS: String?
    @Option(name: .customLong("max-age"), parsing: .unconditional, help: "Recycle a worker after this long (10s to 365d).") var maxAge: String?
    @Option(name: .customLong("min-workers"), parsing: .unconditional, help: "Autoscale from this many workers (1 to 1024).") var minWorkers: String?
    @Option(name: .customLong("max-workers"), parsing: .unconditional, help: "Autoscale up to this many workers (1 to 1024).") var maxWorkers: String?
    @Option(name: .customLong("scale-down-after"), parsing: .unconditional, help: "Autoscale down after this long idle (30s; 1s to 24h).") var scaleDownAfter: String?
    @Option(name: .customLong("limit-nofile"), parsing: .unconditional, help: "Each worker's open-file limit (16 to 1048576).") var limitNofile: String?
    @Option(name: .customLong("limit-as"), parsing: .unconditional, help: "Each worker's address-space limit, MiB (16 to 1048576).") var limitAS: String?
    @Option(name: .customLong("limit-cpu"), parsing: .unconditional, help: "Each worker's CPU-time limit, seconds (1 to 31536000).") var limitCPU: String?
    @Option(name: .long, parsing: .unconditional, help: "Run workers as this user, a name or a uid (the primary binds first).") var user: String?
    @Option(name: .long, parsing: .unconditional, help: "Run workers as this group, a name or a gid.") var group: String?
    @Option(name: .long, parsing: .unconditional, help: "Serve /metrics, /healthz and /readyz on HOST:PORT.") var admin: String?
    @Option(name: .long, parsing: .unconditional, help: "The control socket's path.") var control: String?
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "NAME=VALUE for the program. Repeatable.") var env: [String] = []

    /// The file's settings, then the flags' and `command` (when not empty).
    func configuration(command: [String]) throws -> RunConfiguration {
        var configuration = RunConfiguration()
        if let config { try ConfigFile.apply(config, to: &configuration) }
        let given: [(String, [String])] = [
            ("listen", listen), ("env", env), ("command", command),
        ].filter { !$0.1.isEmpty } + [
            ("workers", workers), ("distribution", distribution), ("readiness", readiness), ("ready-after", readyAfter),
            ("boot-timeout", bootTimeout), ("drain-timeout", drainTimeout), ("upgrade-timeout", upgradeTimeout), ("drain-signal", drainSignal),
            ("restart-delay", restartDelay), ("max-boot-failures", maxBootFailures), ("boot-period", bootPeriod), ("reset-after", resetAfter),
            ("max-surge", maxSurge), ("watchdog", watchdog), ("max-rss", maxRSS), ("max-age", maxAge),
            ("min-workers", minWorkers), ("max-workers", maxWorkers), ("scale-down-after", scaleDownAfter),
            ("limit-nofile", limitNofile), ("limit-as", limitAS), ("limit-cpu", limitCPU), ("user", user),
            ("group", group), ("admin", admin), ("control", control),
        ].compactMap { name, value in value.map { (name, [$0]) } }
        for (name, values) in given {
            do {
                try RunConfiguration.setting(named: name)!.apply(values, &configuration)
            } catch {
                throw CommandError("--\(name): \(error)")
            }
        }
        return try configuration.validated()
    }
}

extension ClusterCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Starts the primary: binds the listeners and runs the program in every worker.",
            discussion: """
                Each program gets its sockets as systemd socket activation gives them: LISTEN_FDS, LISTEN_PID (its \
                own pid), LISTEN_FDNAMES and descriptors from 3; and PORT, the first TCP port.
                """)

        @OptionGroup var options: RunOptions
        @Argument(parsing: .postTerminator, help: "The program and its arguments, after --.") var command: [String] = []

        func run() async throws {
            let configuration: RunConfiguration
            do {
                configuration = try options.configuration(command: command)
            } catch {
                throw ValidationError("\(error)")
            }
            switch Cluster.role {
            case .worker(let worker):
                try await ProgramWorker(worker: worker, configuration: configuration).run()
            case .primary(let primary):
                try await runPrimary(primary, configuration)
            }
        }

        private func runPrimary(_ primary: Primary, _ configuration: RunConfiguration) async throws {
            let logs = LogBuffer()
            var settings = PrimarySettings(environment: configuration.environment, user: configuration.user, group: configuration.group,
                                           output: .prefixed, distribution: configuration.distribution, limits: configuration.limits)
            settings.onOutput = { worker, line in logs.append(worker: worker, line: line) }
            // A worker ends by TERM when the primary dies, and kills its program's tree first.
            settings.environment["CLUSTER_DEATH_SIGNAL"] = String(SIGTERM)
            // A program's connections are its own: it cannot be asked to shed some.
            settings.balanceConnections = false
            primary.setup(settings)
            for address in configuration.listen {
                let bound = try await primary.listen(address, distribution: configuration.distribution)
                say("listening on \(bound) (\(configuration.distribution))")
            }
            let registry = configuration.admin.map { _ in AdminServer.bootstrapMetrics() }
            let supervisor = Supervisor(primary: primary, supervision: configuration.supervision)
            if let address = configuration.admin, let registry {
                let channel = try await AdminServer.start(on: address, primary: primary, supervisor: supervisor, registry: registry)
                say("admin endpoints on \(channel.localAddress.map { "\($0)" } ?? "\(address)")")
            }
            let control = try ControlServer(path: configuration.control, supervisor: supervisor, logs: logs,
                                            takingOver: primary.upgradedFrom != nil)
            control.start()
            say("control socket \(control.path); primary \(getpid()) runs \(configuration.command.joined(separator: " "))")
            let events = primary.events
            let groups = control.programs
            Task {
                for await event in events {
                    switch event {
                    case .message(let worker, let message):
                        if let started = try? message.decode(ProgramWorker.Started.self) {
                            groups.record(started.program, of: worker.id)
                        }
                    case .exit(let worker, _):
                        groups.ended(worker.id)
                    default:
                        break
                    }
                }
            }
            let outcome = await supervisor.supervise()
            groups.endAll()
            control.remove()
            say("primary \(getpid()) \(outcome)")
            Foundation.exit(outcome.exitCode)
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Checks a config file (and any flags) without starting anything.")

        @Argument(help: "The config file.") var file: String?
        @OptionGroup var options: RunOptions
        @Argument(parsing: .postTerminator, help: "The program and its arguments, after --.") var command: [String] = []

        func run() throws {
            var options = options
            if let file { options.config = file }
            do {
                let configuration = try options.configuration(command: command)
                print("ok: \(configuration.supervision.workers) workers of '\(configuration.command.joined(separator: " "))' on \(configuration.listen.map(\.description).joined(separator: ", ")) (\(configuration.distribution))")
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }
}

/// `--control PATH`, which every control subcommand takes.
struct ControlOptions: ParsableArguments {
    @Option(name: .long, help: "The control socket of the cluster (default \(RunConfiguration.defaultControlPath)).")
    var control: String = RunConfiguration.defaultControlPath

    /// Sends `command` and prints the reply's message; fails when the cluster refused.
    func send(_ command: String, _ arguments: [String] = []) throws -> ControlReply {
        var reply: ControlReply?
        try ControlClient.send(ControlRequest(command: command, arguments: arguments), to: control) { line in
            reply = try? JSONDecoder().decode(ControlReply.self, from: Data(line.utf8))
        }
        guard let reply else { throw CommandError("the cluster at \(control) gave no answer") }
        guard reply.ok else { throw CommandError(reply.message) }
        return reply
    }
}

extension ClusterCommand {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows every worker: pid, slot, generation, state, uptime, restarts, CPU, memory, load.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print JSON, for scripts.") var json = false

        func run() throws {
            let reply = try control.send("status")
            guard let status = reply.status else { throw CommandError("the cluster sent no status") }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
            } else {
                print(StatusTable.render(status))
            }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replaces every worker, one at a time, with no request dropped.")
        @OptionGroup var control: ControlOptions
        func run() throws { print(try control.send("reload").message) }
    }

    struct Scale: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sets the number of workers.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The worker count.") var workers: Int
        func run() throws { print(try control.send("scale", [String(workers)]).message) }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drains every worker and stops the cluster.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Do not drain: kill the workers now.") var now = false
        func run() throws { print(try control.send("stop", now ? ["now"] : []).message) }
    }

    struct SendSignal: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "signal", abstract: "Sends a signal to one worker's program.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The worker id (cluster status).") var id: Int
        @Argument(help: "The signal: TERM, USR1, HUP, ... or a number.") var signal: String
        func run() throws { print(try control.send("signal", [String(id), signal]).message) }
    }

    struct Logs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints the workers' recent output, each line prefixed with the worker id.")
        @OptionGroup var control: ControlOptions
        @Flag(name: .shortAndLong, help: "Keep printing new lines.") var follow = false

        func run() throws {
            let colour = isatty(1) == 1
            try ControlClient.send(ControlRequest(command: "logs", arguments: follow ? ["follow"] : []), to: control.control) { line in
                print(colour ? StatusTable.colourPrefix(line) : line)
                fflush(nil)
            }
        }
    }
}

/// Prints a line of the primary's at once, even when output is a pipe, prefixed `[cluster]`.
func say(_ line: String) {
    print("[cluster] " + line)
    fflush(nil)
}
