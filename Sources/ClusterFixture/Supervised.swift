// The "supervised" scenario: a primary under a Supervisor configured from the
// environment, and HTTP workers with routes that misbehave on purpose.
//
// Primary environment: WORKERS, PORT (or LISTEN, an address as `cluster run --listen` takes it),
// DISTRIBUTION (default shared), READINESS=explicit,
// RESTART_DELAY_MS, RESET_AFTER_MS, MAX_BOOT_FAILURES, BOOT_PERIOD_MS, DEGRADED_DELAY_MS, MAX_DEGRADED_DELAY_MS,
// BOOT_TIMEOUT_MS, DRAIN_TIMEOUT_MS, READY_TIMEOUT_MS, MAX_SURGE, UPGRADE_TIMEOUT_MS, WATCHDOG_MS, KILL_AFTER_MS, MAX_REQUESTS, MAX_RSS_MB,
// MAX_AGE_MS, RUN_AS (a user), LIMIT_NOFILE, ADMIN_PORT (prints {"event":"admin","port":N}). Commands on standard input: "reload", "scale N", "stop", "stop now",
// "status" (prints {"event":"status","generation":N,"reload":"..."}), "cancel" (cancels the
// task that supervises, then supervises again: {"event":"again","outcome":"..."}).
// AS_SERVICE=1 runs the supervisor in a ServiceGroup instead (SupervisedService.swift).
// It prints the events as JSON lines, and {"event":"outcome",...} before it exits.
//
// Worker: when the file FAIL_FILE names exists at start, its content says how to fail:
// "exit N" exits with code N, "hang" never gets ready. With READINESS=explicit it calls
// ready() after READY_DELAY_MS. Routes: / (who answers), /slow?ms=N and /slow?until=PATH
// (answers once PATH exists; both print {"event":"request"}), /spin (blocks its
// event loop forever), /leak?mb=N (keeps N MiB), /orphan (leaves an orphan for PID 1),
// /crash (traps), /cancel (cancels the serving task). A worker prints {"event":"served",
// "cancelled":"yes" or "no"} when it has served and drained, just before it exits 0.
// /count (counts app_hits_total and times itself in app_count_seconds, through swift-metrics).
// WORKER_SERVICES=1 runs a "recorder" service beside the server (ClusterWorker.run(services:)).
import Cluster
import ClusterAdmin
import ClusterNIO
import Foundation
import Logging
import Metrics
import NIOCore
import Synchronization

private func duration(_ name: String) -> Duration? {
    environment[name].flatMap(Int.init).map { .milliseconds($0) }
}

private func integer(_ name: String) -> Int? {
    environment[name].flatMap(Int.init)
}

/// LISTEN parsed as an address (`tcp://HOST:PORT` and any options the parser knows), or
/// 0.0.0.0:PORT.
private func listenAddress() throws -> ListenAddress {
    guard let text = environment["LISTEN"] else { return .tcp(host: "0.0.0.0", port: integer("PORT") ?? 0) }
    return try ListenAddress(parsing: text)
}

func runSupervisedPrimary(_ primary: Primary) async throws {
    primary.setup(PrimarySettings(user: environment["RUN_AS"], limits: ResourceLimits(openFiles: integer("LIMIT_NOFILE"))))
    let distribution = try Cluster.environmentDistribution(default: .shared)
    try await primary.listen(listenAddress(), distribution: distribution)
    let defaults = Supervision()
    let supervision = Supervision(
        workers: integer("WORKERS") ?? 2,
        restart: RestartPolicy(initialDelay: duration("RESTART_DELAY_MS") ?? .milliseconds(100),
                               resetAfter: duration("RESET_AFTER_MS") ?? defaults.restart.resetAfter,
                               maxBootFailures: integer("MAX_BOOT_FAILURES") ?? 5,
                               period: duration("BOOT_PERIOD_MS") ?? .seconds(30),
                               degradedDelay: duration("DEGRADED_DELAY_MS") ?? defaults.restart.degradedDelay,
                               maxDegradedDelay: duration("MAX_DEGRADED_DELAY_MS") ?? defaults.restart.maxDegradedDelay),
        readiness: environment["READINESS"] == "explicit" ? .explicit : .listening,
        bootTimeout: duration("BOOT_TIMEOUT_MS") ?? defaults.bootTimeout,
        drainTimeout: duration("DRAIN_TIMEOUT_MS") ?? defaults.drainTimeout,
        reload: .init(maxSurge: integer("MAX_SURGE") ?? 1, readyTimeout: duration("READY_TIMEOUT_MS") ?? .seconds(60)),
        upgradeTimeout: duration("UPGRADE_TIMEOUT_MS") ?? defaults.upgradeTimeout,
        watchdog: .init(timeout: duration("WATCHDOG_MS") ?? .seconds(30), killAfter: duration("KILL_AFTER_MS") ?? .seconds(1)),
        recycling: .init(maxRequests: integer("MAX_REQUESTS"), maxRSS: integer("MAX_RSS_MB").map { $0 << 20 },
                         maxAge: duration("MAX_AGE_MS")))
    let supervisor = Supervisor(primary: primary, supervision: supervision)
    let events = primary.events
    Task {
        for await event in events {
            if case .message = event { continue }
            emit(describe(event))
        }
    }
    Thread.detachNewThread {
        while let line = readLine() {
            let words = line.split(separator: " ").map(String.init)
            switch words.first {
            case "reload": supervisor.reload()
            case "scale": supervisor.scale(to: Int(words.last ?? "") ?? 1)
            case "stop": supervisor.stop(immediately: words.last == "now")
            case "cancel": supervising.withLock { $0?.cancel() }
            case "status":
                Task {
                    let generation = await supervisor.currentGeneration
                    let reload = await supervisor.lastReload.map { "\($0)" } ?? "none"
                    emit(["event": "status", "generation": generation, "reload": reload])
                }
            default: emit(["error": "unknown command \(line)"])
            }
        }
    }
    if let admin = try await AdminServer.startFromEnvironment(primary: primary, supervisor: supervisor) {
        emit(["event": "admin", "port": admin.localAddress?.port ?? 0])
    }
    emit(["event": "supervising", "pid": Int(getpid())])
    if environment["AS_SERVICE"] != nil { try await superviseAsService(supervisor) }
    let task = Task { await supervisor.supervise() }
    supervising.withLock { $0 = task }
    let outcome = await task.value
    if task.isCancelled {
        emit(["event": "again", "outcome": "\(await supervisor.supervise())"])
    }
    emit(["event": "outcome", "outcome": outcome.description, "code": Int(outcome.exitCode)])
    exit(outcome.exitCode)
}

/// The task that supervises, for the "cancel" command.
private let supervising = Mutex<Task<Supervisor.Outcome, Never>?>(nil)

/// Memory /leak keeps, so the RSS limit has something to find.
private let leaked = Mutex<[[UInt8]]>([])

func runSupervisedWorker(_ worker: ClusterWorker) async throws {
    if let path = environment["FAIL_FILE"], let failure = try? String(contentsOfFile: path, encoding: .utf8) {
        let words = failure.split(whereSeparator: \.isWhitespace)
        if words.first == "exit" { exit(Int32(words.last ?? "1") ?? 1) }
        if words.first == "hang" { while true { sleep(60) } }
    }
    worker.bootstrapMetrics()
    emit(["event": "started", "id": worker.id, "pid": Int(getpid())])
    if environment["READINESS"] == "explicit" {
        let delay = duration("READY_DELAY_MS") ?? .zero
        Task {
            try await Task.sleep(for: delay)
            worker.ready()
        }
    }
    let accept = try fixtureAcceptMode()
    let serve: @Sendable () async throws -> Void = { try await serveRoutes(worker, accept: accept) }
    if environment["WORKER_SERVICES"] != nil {
        try await worker.run(services: [Recorder(name: "worker \(worker.id)")], logger: Logger(label: "fixture.worker"), server: serve)
        emit(["event": "served", "cancelled": "no", "id": worker.id])
        return
    }
    let task = Task { try await serve() }
    serving.withLock { $0 = task }
    try await task.value
    emit(["event": "served", "cancelled": task.isCancelled ? "yes" : "no", "id": worker.id])
}

/// The worker's serving task, for /cancel.
private let serving = Mutex<Task<Void, any Error>?>(nil)

private func serveRoutes(_ worker: ClusterWorker, accept: AcceptMode) async throws {
    try await worker.serveHTTP(listenAddress(), accept: accept) { request, loop in
        let components = URLComponents(string: request.head.uri)
        let query = { (name: String) in components?.queryItems?.first { $0.name == name }?.value.flatMap(Int.init) }
        let body = "worker \(worker.id) pid \(getpid())\n"
        switch components?.path {
        case "/slow":
            emit(["event": "request", "path": "/slow", "worker": worker.id])
            if let path = components?.queryItems?.first(where: { $0.name == "until" })?.value {
                return whenExists(path, on: loop).map { ClusterHTTPResponse(body: "slow " + body) }
            }
            return loop.scheduleTask(in: .milliseconds(Int64(query("ms") ?? 1000))) { ClusterHTTPResponse(body: "slow " + body) }.futureResult
        case "/spin":
            while true { usleep(1000) }
        case "/leak":
            let megabytes = query("mb") ?? 16
            leaked.withLock { $0.append([UInt8](repeating: 1, count: megabytes << 20)) }
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: "leaked \(megabytes) MiB " + body))
        case "/orphan":
            // A grandchild whose parent exits at once: the kernel hands it to PID 1.
            var pid: pid_t = 0
            let words = ["/bin/sh", "-c", "sleep 1 & exit 0"]
            let argv: [UnsafeMutablePointer<CChar>?] = words.map { word in word.withCString { strdup($0) } } + [nil]
            if posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0 {
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
            argv.forEach { free($0) }
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: body))
        case "/crash":
            fatalError("the /crash route traps on purpose")
        case "/count":
            let started = ContinuousClock.now
            Counter(label: "app_hits_total", dimensions: [("route", "count")]).increment()
            Metrics.Timer(label: "app_count_seconds").record(duration: started.duration(to: .now))
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: "counted " + body))
        case "/cancel":
            // Cancels the task that serves: it quiesces and returns, and so does main.
            serving.withLock { $0?.cancel() }
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: "cancelling " + body))
        default:
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: body))
        }
    }
}

/// Succeeds once `path` exists, looking every 10 ms.
private func whenExists(_ path: String, on loop: any EventLoop) -> EventLoopFuture<Void> {
    if FileManager.default.fileExists(atPath: path) { return loop.makeSucceededVoidFuture() }
    return loop.flatScheduleTask(in: .milliseconds(10)) { whenExists(path, on: loop) }.futureResult
}
