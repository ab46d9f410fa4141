// The seed's auto-scaling example, rebuilt: an HTTP server whose requests each burn a
// varying amount of CPU, with the supervisor's autoscaler on. It starts at MIN_WORKERS,
// adds workers within seconds of a load step (several at once when far behind), holds
// steady under steady load, and returns to MIN_WORKERS once idle for IDLE_SECONDS. Each
// decision is printed with its reason.
//
//     swift run autoscale       # PORT=8000, MIN_WORKERS=1 (or WORKERS), MAX_WORKERS=2×cores,
//                               # IDLE_SECONDS=30, WORK_MS=5 (mean CPU per request),
//                               # BLOCK_MS=0 (a blocking call per request, as a synchronous
//                               # database driver makes: the event loop waits, the CPU idles),
//                               # AUTOSCALER=seed for the seed's policy, ADMIN_PORT for /metrics,
//                               # AUTOSCALE_TRACE=FILE to record every load sample as CSV
//     wrk -t2 -c16 -d30s http://127.0.0.1:8000/
import Cluster
import ClusterAdmin
import ClusterNIO
import Glibc

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

/// Spins for about `milliseconds` of CPU and returns a value the optimizer cannot fold.
func work(milliseconds: Double) -> UInt64 {
    let until = ContinuousClock.now + .microseconds(Int(milliseconds * 1000))
    var value: UInt64 = 0x9E37_79B9_7F4A_7C15
    while ContinuousClock.now < until {
        for _ in 0..<256 { value = value &* 6_364_136_223_846_793_005 &+ 1 }
    }
    return value
}

/// Wraps a policy and appends every load sample it sees to a CSV file, so a real run can
/// be replayed through any policy (the benchmark does; the unit tests keep one).
struct Recording: AutoscalePolicy {
    var policy: any AutoscalePolicy
    let file: Int32
    var interval: Duration { policy.interval }

    init(_ policy: any AutoscalePolicy, to path: String) {
        self.policy = policy
        file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if file < 0 {
            log("autoscale: AUTOSCALE_TRACE=\(path) cannot be written: \(String(cString: strerror(errno)))")
            exit(1)
        }
        write("seconds,workers,utilization,loop_busy,lag_p99_ms,waiting,host_idle,load_average,decision\n")
    }

    mutating func decide(_ load: ClusterLoad, at now: Duration) -> AutoscaleDecision? {
        let decision = policy.decide(load, at: now)
        let fields: [String] = [
            String(now.inSeconds), String(load.workers), String(load.utilization), String(load.eventLoopBusy),
            String(load.lagP99.inSeconds * 1000), String(load.waitingConnections), load.hostIdle.map { String($0) } ?? "", String(load.loadAverage),
            decision.map { String($0.workers) } ?? "",
        ]
        write(fields.joined(separator: ",") + "\n")
        return decision
    }

    private func write(_ line: String) {
        var bytes = Array(line.utf8)
        _ = Glibc.write(file, &bytes, bytes.count)
    }
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 8000, in: 0...65535)
    let workMilliseconds = Double(try Cluster.environmentInteger("WORK_MS", default: 5, in: 0...10_000))
    let blockMilliseconds = try Cluster.environmentInteger("BLOCK_MS", default: 0, in: 0...10_000)
    switch Cluster.role {
    case .primary(let primary):
        let minimum = try Cluster.environmentInteger("MIN_WORKERS", default: try Cluster.environmentInteger("WORKERS", default: 1, in: 1...1024), in: 1...1024)
        let maximum = try Cluster.environmentInteger("MAX_WORKERS", default: max(minimum, 2 * Cluster.availableCores), in: minimum...1024)
        let idle = try Cluster.environmentInteger("IDLE_SECONDS", default: 30, in: 1...86_400)
        var policy: any AutoscalePolicy
        let described: String
        switch Cluster.environmentValue("AUTOSCALER") ?? "cluster" {
        case "seed": (policy, described) = (SeedAutoscaler(), "the seed's policy")
        case "cluster": (policy, described) = (Autoscaler(minWorkers: minimum, maxWorkers: maximum, scaleDownAfter: .seconds(idle)), "idle after \(idle) s")
        case let other:
            log("autoscale: AUTOSCALER=\(other) is not a policy; use cluster (the default) or seed")
            exit(1)
        }
        if let path = Cluster.environmentValue("AUTOSCALE_TRACE") {
            policy = Recording(policy, to: path)
        }
        primary.setup(PrimarySettings(distribution: try Cluster.environmentDistribution()))
        log("Primary \(primary.pid) is running: \(minimum) to \(maximum) workers, \(described)")
        let supervisor = Supervisor(primary: primary, supervision: Supervision(workers: minimum, autoscale: policy))
        if let admin = try await AdminServer.startFromEnvironment(primary: primary, supervisor: supervisor) {
            log("Admin endpoints on \(admin.localAddress.map { "\($0)" } ?? "?")")
        }
        let events = primary.events
        Task {
            for await event in events {
                switch event {
                case .listening(let worker, let address): log("Worker \(worker.pid) is listening on \(address)")
                case .exit(let worker, let status): log("Worker \(worker.pid) exited (\(status))")
                default: break
                }
            }
        }
        let outcome = await supervisor.supervise()
        log("Primary \(primary.pid) \(outcome)")
        exit(outcome.exitCode)
    case .worker(let worker):
        try await worker.serveHTTP(.tcp(port: port)) { _, loop in
            // 0.5x to 1.5x the mean, so requests vary as real ones do.
            let result = work(milliseconds: workMilliseconds * Double.random(in: 0.5...1.5))
            if blockMilliseconds > 0 { usleep(UInt32(blockMilliseconds * 1000)) }
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: "worker \(worker.id) result \(result % 1000)\n"))
        }
    }
} catch {
    log("autoscale: \(error)")
    exit(1)
}
