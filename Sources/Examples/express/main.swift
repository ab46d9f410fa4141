// Node's Express cluster example, in Swift with Hummingbird: the primary forks one worker
// per core and replaces any that dies; each worker serves a Hummingbird app whose `/` runs
// a CPU-bound loop, so a busy worker ties up one core while the others keep answering.
// SIGINT or SIGTERM drains the cluster: every worker finishes the requests in flight and
// exits (then its background service stops), then the primary exits.
//
//     swift run express   # PORT=3000, WORKERS=cores, WORK=10000000 iterations, DISTRIBUTION=leastConnections
//     curl 'localhost:3000/?n=1000'
import Cluster
import ClusterAdmin
import ClusterHummingbird
import Dispatch
import Glibc
import Hummingbird
import ServiceLifecycle
import Synchronization

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

/// Calls `handler` on a Dispatch queue for each of `numbers` the process receives, instead
/// of the default action. Keep the sources for as long as the handler should run.
func onSignals(_ numbers: [Int32], _ handler: @escaping @Sendable (Int32) -> Void) -> [any DispatchSourceSignal] {
    numbers.map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number)
        source.setEventHandler { handler(number) }
        source.resume()
        return source
    }
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
struct RequestLogger<Context: RequestContext>: RouterMiddleware {
    /// `Worker ID (pid PID)`.
    let worker: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            log("\(worker): \(request.method) \(request.uri) \(response.status.code) \(milliseconds(since: start))")
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            log("\(worker): \(request.method) \(request.uri) \(status) \(milliseconds(since: start))")
            throw error
        }
    }

    private func milliseconds(since start: ContinuousClock.Instant) -> String {
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        let tenths = seconds * 10_000 + attoseconds / 100_000_000_000_000
        return "\(tenths / 10).\(tenths % 10) ms"
    }
}

/// What an app runs beside its server (a queue consumer, a cache refresher): here it only
/// says when it starts and stops.
struct BackgroundJobs: Service {
    /// `Worker ID (pid PID)`.
    let worker: String

    func run() async throws {
        log("\(worker) background jobs running")
        try? await gracefulShutdown()
        log("\(worker) background jobs stopped")
    }
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 3000, in: 0...65535)
    let defaultWork = try Cluster.environmentInteger("WORK", default: 10_000_000, in: 0...maximumWork)
    switch Cluster.role {
    case .primary(let primary):
        let workers = try Cluster.environmentInteger("WORKERS", default: Cluster.availableCores, in: 1...1024)
        primary.setup(PrimarySettings(distribution: try Cluster.environmentDistribution()))
        log("Primary \(primary.pid) is running")
        // ADMIN_PORT=9090: /metrics (Prometheus), /healthz, /readyz on the primary.
        if let admin = try await AdminServer.startFromEnvironment(primary: primary) {
            log("Admin endpoints on \(admin.localAddress.map { "\($0)" } ?? "?")")
        }
        let events = primary.events
        var live: Set<Int> = []  // ids of the workers whose exit has not been seen yet
        for _ in 0..<workers { live.insert(try await primary.fork().id) }

        // SIGINT or SIGTERM: drain every worker, then exit once all have.
        let draining = Atomic(false)
        let signals = onSignals([SIGINT, SIGTERM]) { number in
            guard !draining.exchange(true, ordering: .sequentiallyConsistent) else { return }
            let count = primary.workers.count
            log("Primary \(primary.pid) got \(Signal(rawValue: number)); draining \(count) worker\(count == 1 ? "" : "s")")
            Task { await primary.disconnect(timeout: .seconds(10)) }
        }
        defer { signals.forEach { $0.cancel() } }

        events: for await event in events {
            switch event {
            case .listening(let worker, let address):
                log("Worker \(worker.id) (pid \(worker.pid)) is listening on \(address)")
            case .exit(let worker, let status):
                live.remove(worker.id)
                if worker.exitedAfterDisconnect {
                    log("Worker \(worker.pid) exited (\(status)) after a disconnect")
                } else {
                    log("Worker \(worker.pid) died (\(status))")
                    if !draining.load(ordering: .sequentiallyConsistent) {
                        let replacement = try await primary.fork()
                        live.insert(replacement.id)
                        // A drain that began while it started did not see it.
                        if draining.load(ordering: .sequentiallyConsistent) { replacement.disconnect(timeout: .seconds(10)) }
                    }
                }
                if live.isEmpty, draining.load(ordering: .sequentiallyConsistent) { break events }
            default:
                break
            }
        }
        log("Primary \(primary.pid) exiting")
    case .worker(let worker):
        // Ctrl-C reaches the whole process group; the primary decides and drains us.
        signal(SIGINT, SIG_IGN)
        let name = "Worker \(worker.id) (pid \(getpid()))"
        log("\(name) started")
        worker.onDrain { log("\(name) draining") }

        // ClusterRequestContext: remoteAddress is the client, also behind a PROXY balancer.
        let router = Router(context: ClusterRequestContext.self)
        router.middlewares.add(RequestLogger(worker: name))
        router.get("/client") { _, context -> String in "\(context.remoteAddress?.ipAddress ?? "unknown")\n" }
        router.get("/") { request, _ -> String in
            var n = defaultWork
            if let text = request.uri.queryParameters["n"] {
                guard let value = Int(text), (0...maximumWork).contains(value) else {
                    throw HTTPError(.badRequest, message: "n must be a whole number from 0 to \(maximumWork)")
                }
                n = value
            }
            return "Result: \(work(n))\n"
        }
        // The Hummingbird application as it would run alone (`app.runService()`), with a
        // service beside the server; the worker serves it on the primary's listener, and on
        // drain the service stops once the server has answered what was in flight.
        // PROXY=v2 (or v1): behind a load balancer that sends HAProxy's PROXY protocol.
        let proxy = try getenv("PROXY").map { name throws in try ProxyProtocol(parsing: String(cString: name)) }
        let app = Application(router: router, services: [BackgroundJobs(worker: name)])
        try await worker.run(app, on: .tcp(port: port, proxyProtocol: proxy))
    }
} catch {
    log("express: \(error)")
    exit(1)
}
