// Node's basic cluster example, in Swift: the primary forks one worker per core and
// replaces any that dies; each worker answers every HTTP request with "Hello World".
//
//     swift run hello            # PORT=8000, WORKERS=cores (0: one process, no cluster), DISTRIBUTION=leastConnections
//     curl localhost:8000
import Cluster
import ClusterNIO
import Glibc

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 8000, in: 0...65535)
    let respond: HTTPResponder = { _, loop in loop.makeSucceededFuture(HTTPResponse(body: "Hello World\n")) }
    switch Cluster.role {
    case .primary(let primary):
        let workers = try Cluster.environmentInteger("WORKERS", default: Cluster.availableCores, in: 0...1024)
        if workers == 0 {
            // The same server in this one process, without a cluster: what the cluster costs.
            log("Serving in one process (pid \(primary.pid)), without workers")
            try await StandaloneHTTPServer.serve(.tcp(port: port), responder: respond)
        }
        primary.setup(PrimarySettings(distribution: try Cluster.environmentDistribution()))
        log("Primary \(primary.pid) is running")
        let events = primary.events
        for _ in 0..<workers { try await primary.fork() }
        for await event in events {
            switch event {
            case .listening(let worker, let address):
                log("Worker \(worker.pid) is listening on \(address)")
            case .exit(let worker, let status):
                log("Worker \(worker.pid) died (\(status))")
                try await primary.fork()
            default:
                break
            }
        }
    case .worker(let worker):
        log("Worker \(getpid()) started")
        try await worker.serveHTTP(.tcp(port: port), responder: respond)
    }
} catch {
    log("hello: \(error)")
    exit(1)
}
