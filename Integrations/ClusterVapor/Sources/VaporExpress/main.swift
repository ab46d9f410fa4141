// Node's Express cluster example as a clustered Vapor app (the root package's `express`
// does it with Hummingbird): the primary supervises one worker per core; each worker
// serves a Vapor application whose `/` runs a CPU-bound loop, so a busy worker ties up one
// core while the others keep answering. SIGINT or SIGTERM drains the cluster: every worker
// answers what is in flight, Vapor shuts the application down (its lifecycle handlers
// run), and the primary exits 0. A worker that dies is replaced.
//
//     swift run vapor-express   # PORT=3000, WORKERS=cores (0: Vapor alone in one process),
//                               # WORK=10000000 iterations, DISTRIBUTION=leastConnections, PROXY=v1|v2, ADMIN_PORT
//     curl 'localhost:3000/?n=1000'
//     curl localhost:3000/hello
import Cluster
import ClusterAdmin
import ClusterVapor
import Glibc
import NIOPosix
import Vapor

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

/// The most iterations a request may ask for (Node's example caps it at 5e9 as well).
let maximumWork = 5_000_000_000

/// CPU-bound work the optimizer can neither skip nor fold into a formula: each step mixes
/// the counter into the running value (xor, then multiply by the 64-bit FNV prime), so the
/// result depends on every one of the `n` iterations.
func work(_ n: Int) -> UInt64 {
    var value: UInt64 = 0
    for step in 0..<UInt64(n) {
        value = (value ^ step) &* 0x100_0000_01B3
    }
    return value
}

/// Logs every request once answered, as `Worker 2 (pid 123): GET /?n=1000 200 0.4 ms`.
struct RequestLogger: AsyncMiddleware {
    /// `Worker ID (pid PID)`.
    let worker: String

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next.respond(to: request)
            log("\(worker): \(request.method) \(request.url) \(response.status.code) \(milliseconds(since: start))")
            return response
        } catch {
            let status = (error as? any AbortError)?.status.code ?? 500
            log("\(worker): \(request.method) \(request.url) \(status) \(milliseconds(since: start))")
            throw error
        }
    }

    private func milliseconds(since start: ContinuousClock.Instant) -> String {
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        let tenths = seconds * 10_000 + attoseconds / 100_000_000_000_000
        return "\(tenths / 10).\(tenths % 10) ms"
    }
}

/// What an app runs beside its server (a queue consumer, a cache refresher), as a Vapor
/// lifecycle handler: here it only says when the application boots and shuts down.
struct BackgroundJobs: LifecycleHandler {
    /// `Worker ID (pid PID)`.
    let worker: String

    func didBootAsync(_ application: Application) async throws { log("\(worker) background jobs running") }
    func shutdownAsync(_ application: Application) async { log("\(worker) background jobs stopped") }
}

/// The application: `/?n=N` (the CPU route) and `/client` (the client's address, also
/// behind a PROXY protocol balancer), each request logged by `name`; `/hello`, unlogged
/// (the HTTP benchmark's route).
func configure(_ app: Application, name: String, defaultWork: Int) {
    // Vapor's default middleware less its route logging: RequestLogger says more.
    app.middleware = Middlewares()
    app.middleware.use(ErrorMiddleware.default(environment: app.environment))
    let logged = app.grouped(RequestLogger(worker: name))
    logged.get { request -> String in
        var n = defaultWork
        if let text = request.query[String.self, at: "n"] {
            guard let value = Int(text), (0...maximumWork).contains(value) else {
                throw Abort(.badRequest, reason: "n must be a whole number from 0 to \(maximumWork)")
            }
            n = value
        }
        return "Result: \(work(n))\n"
    }
    logged.get("client") { request in "\(request.remoteAddress?.ipAddress ?? "unknown")\n" }
    app.get("hello") { _ in "Hello World\n" }
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 3000, in: 0...65535)
    let defaultWork = try Cluster.environmentInteger("WORK", default: 10_000_000, in: 0...maximumWork)
    switch Cluster.role {
    case .primary(let primary):
        let workers = try Cluster.environmentInteger("WORKERS", default: Cluster.availableCores, in: 0...1024)
        if workers == 0 {
            // Vapor alone in this one process, its own server on an event loop per core:
            // what the cluster is measured against.
            log("Serving in one process (pid \(primary.pid)), without workers")
            let app = try await Application.make(.detect())
            configure(app, name: "Process \(primary.pid)", defaultWork: defaultWork)
            app.http.server.configuration.hostname = "0.0.0.0"
            app.http.server.configuration.port = port
            do { try await app.execute() } catch { try? await app.asyncShutdown(); throw error }
            try await app.asyncShutdown()
            exit(0)
        }
        primary.setup(PrimarySettings(distribution: try Cluster.environmentDistribution()))
        log("Primary \(primary.pid) is running")
        // Restarts dead workers, drains on SIGTERM/SIGINT, reloads on SIGHUP.
        let supervisor = Supervisor(primary: primary, supervision: Supervision(workers: workers))
        // ADMIN_PORT=9090: /metrics (Prometheus), /healthz, /readyz on the primary.
        if let admin = try await AdminServer.startFromEnvironment(primary: primary, supervisor: supervisor) {
            log("Admin endpoints on \(admin.localAddress.map { "\($0)" } ?? "?")")
        }
        let events = primary.events
        Task {
            for await event in events {
                switch event {
                case .listening(let worker, let address):
                    log("Worker \(worker.id) (pid \(worker.pid)) is listening on \(address)")
                case .exit(let worker, let status):
                    log("Worker \(worker.pid) \(worker.exitedAfterDisconnect ? "exited" : "died") (\(status))")
                default:
                    break
                }
            }
        }
        let outcome = await supervisor.supervise()
        log("Primary \(primary.pid) \(outcome)")
        exit(outcome.exitCode)
    case .worker(let worker):
        let name = "Worker \(worker.id) (pid \(getpid()))"
        log("\(name) started")
        worker.onDrain { log("\(name) draining") }
        // One thread for Vapor and the server alike: a cluster runs one worker per core.
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let app = try await Application.make(.detect(), .shared(loops))
        configure(app, name: name, defaultWork: defaultWork)
        app.lifecycle.use(BackgroundJobs(worker: name))
        // PROXY=v2 (or v1): behind a load balancer that sends HAProxy's PROXY protocol.
        let proxy = try getenv("PROXY").map { name throws in try ProxyProtocol(parsing: String(cString: name)) }
        try await worker.run(app, on: .tcp(port: port, proxyProtocol: proxy), group: loops)
        try await loops.shutdownGracefully()
        log("\(name) exiting")
    }
} catch {
    log("vapor-express: \(error)")
    exit(1)
}
