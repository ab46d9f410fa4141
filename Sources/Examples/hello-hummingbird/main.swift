// `hello` with Hummingbird: the same "Hello World" route as a Hummingbird router, served
// by a cluster of workers or, with WORKERS=0, by Hummingbird's own `Application` in one
// process on an event loop group of one thread per core: what a Hummingbird app costs
// with the cluster and without it.
//
//     swift run hello-hummingbird   # PORT=8000, WORKERS=cores (0: one process, no cluster), DISTRIBUTION=leastConnections
//     curl localhost:8000
import Cluster
import ClusterHummingbird
import Glibc
import Hummingbird
import NIOPosix

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

/// The application: one route, `GET /`, answered "Hello World".
func makeApplication(port: Int, eventLoops: EventLoopGroupProvider = .singleton) -> some ApplicationProtocol {
    let router = Router()
    router.get("/") { _, _ in "Hello World\n" }
    let configuration = ApplicationConfiguration(address: .hostname("0.0.0.0", port: port))
    return Application(router: router, configuration: configuration, eventLoopGroupProvider: eventLoops)
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 8000, in: 0...65535)
    switch Cluster.role {
    case .primary(let primary):
        let workers = try Cluster.environmentInteger("WORKERS", default: Cluster.availableCores, in: 0...1024)
        if workers == 0 {
            // Hummingbird alone, as an app without the cluster would run.
            log("Serving in one process (pid \(primary.pid)), without workers")
            let group = MultiThreadedEventLoopGroup(numberOfThreads: Cluster.availableCores)
            try await makeApplication(port: port, eventLoops: .shared(group)).runService()
            exit(0)
        }
        primary.setup(PrimarySettings(distribution: try Cluster.environmentDistribution()))
        log("Primary \(primary.pid) is running")
        let supervisor = Supervisor(primary: primary, supervision: Supervision(workers: workers))
        let outcome = await supervisor.supervise()
        log("Primary \(primary.pid) \(outcome)")
        exit(outcome.exitCode)
    case .worker(let worker):
        log("Worker \(getpid()) started")
        try await worker.run(makeApplication(port: port), on: .tcp(port: port))
    }
} catch {
    log("hello-hummingbird: \(error)")
    exit(1)
}
