// Node's basic cluster example, in Swift: the primary forks one worker per core and
// replaces any that dies; each worker answers every HTTP request with "Hello World".
// Supervised with every default: SIGHUP reloads worker by worker, SIGTERM and SIGINT
// drain and stop, SIGTTIN/SIGTTOU add or remove a worker.
//
//     swift run hello            # PORT=8000, WORKERS=cores (0: one process, no cluster), DISTRIBUTION=leastConnections
//                                # DRAIN_TIMEOUT_MS=30000: how long a draining worker may take before SIGKILL
//                                # RESTART=immediate: restart every dead worker at once, forever (Node's
//                                # example; Benchmarks/crash.sh), instead of with backoff and a crash-loop guard
//                                # HTTP limits: HTTP_HEADER_TIMEOUT_MS, HTTP_MAX_BODY_BYTES... (Sources/ClusterNIO/ClusterNIO.docc/HTTPLimits.md)
//     curl localhost:8000
//     kill -HUP <primary pid>    # rolling reload
import Cluster
import ClusterAdmin
import ClusterNIO
import Glibc

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 8000, in: 0...65535)
    let limits = try HTTPServerLimits.fromEnvironment()
    let respond: ClusterHTTPResponder = { _, loop in loop.makeSucceededFuture(ClusterHTTPResponse(body: "Hello World\n")) }
    switch Cluster.role {
    case .primary(let primary):
        let workers = try Cluster.environmentInteger("WORKERS", default: Cluster.availableCores, in: 0...1024)
        if workers == 0 {
            // The same server in this one process, without a cluster: what the cluster costs.
            log("Serving in one process (pid \(primary.pid)), without workers")
            try await StandaloneHTTPServer.serve(.tcp(port: port), limits: limits, responder: respond)
        }
        primary.setup(PrimarySettings(distribution: try Cluster.environmentDistribution()))
        log("Primary \(primary.pid) is running")
        // The supervisor restarts dead workers with backoff, drains on SIGTERM/SIGINT,
        // reloads worker by worker on SIGHUP and scales on SIGTTIN/SIGTTOU.
        let drainTimeout = try Cluster.environmentInteger("DRAIN_TIMEOUT_MS", default: 30_000, in: 0...86_400_000)
        let restart: RestartPolicy
        switch Cluster.environmentValue("RESTART") {
        case nil, "backoff": restart = RestartPolicy()
        case "immediate": restart = .immediate
        case let other?: throw ClusterError(.invalidConfiguration, "RESTART=\(other) is not backoff (the default) or immediate")
        }
        let supervision = Supervision(workers: workers, restart: restart, drainTimeout: .milliseconds(drainTimeout))
        let supervisor = Supervisor(primary: primary, supervision: supervision)
        // ADMIN_PORT=9090: /metrics (Prometheus), /healthz, /readyz (degraded too) on the primary.
        if let admin = try await AdminServer.startFromEnvironment(primary: primary, supervisor: supervisor) {
            log("Admin endpoints on \(admin.localAddress.map { "\($0)" } ?? "?")")
        }
        let events = primary.events
        Task {
            for await event in events {
                switch event {
                case .listening(let worker, let address): log("Worker \(worker.pid) is listening on \(address)")
                case .exit(let worker, let status): log("Worker \(worker.pid) died (\(status))")
                default: break
                }
            }
        }
        let outcome = await supervisor.supervise()
        log("Primary \(primary.pid) \(outcome)")
        exit(outcome.exitCode)
    case .worker(let worker):
        log("Worker \(getpid()) started")
        try await worker.serveHTTP(.tcp(port: port), limits: limits, responder: respond)
    }
} catch {
    log("hello: \(error)")
    exit(1)
}
