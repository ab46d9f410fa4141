// Node's messaging example, in Swift: each worker tells the primary about every request it
// handles; every 5 seconds the primary sends a random worker a message. Both sides log
// what they receive.
//
//     swift run messages         # PORT=8000, WORKERS=cores, DISTRIBUTION=leastConnections
//     curl localhost:8000
import Cluster
import ClusterAdmin
import ClusterNIO
import Glibc

/// Prints a line at once, even when output is a pipe.
func log(_ line: String) {
    print(line)
    fflush(nil)
}

/// What a worker tells the primary.
struct Notice: Codable, Sendable {
    var cmd: String
    var path: String
}

/// What the primary tells a worker.
struct Greeting: Codable, Sendable {
    var text: String
    var sequence: Int
}

do {
    let port = try Cluster.environmentInteger("PORT", default: 8000, in: 0...65535)
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
        for _ in 0..<workers { try await primary.fork() }

        let greeter = Task {
            var sequence = 0
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(5))
                guard let worker = primary.workers.values.randomElement() else { continue }
                sequence += 1
                try? await worker.send(Greeting(text: "hello from the primary", sequence: sequence))
            }
        }
        defer { greeter.cancel() }

        var handled = 0
        for await event in events {
            switch event {
            case .message(let worker, let message):
                if let notice = try? message.decode(Notice.self), notice.cmd == "notifyRequest" {
                    handled += 1
                    log("Message from worker \(worker.pid): \(notice.cmd) \(notice.path); \(handled) requests so far")
                } else {
                    log("Message from worker \(worker.pid): \(message.string)")
                }
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
        let listening = Task {
            for await message in worker.messages {
                let greeting = try? message.decode(Greeting.self)
                log("Worker \(getpid()) received message: \(greeting.map { "\($0.text) #\($0.sequence)" } ?? message.string)")
            }
        }
        defer { listening.cancel() }
        try await worker.serveHTTP(.tcp(port: port)) { request, loop in
            // Never blocks the event loop: a full channel is reported, not waited for.
            do {
                try worker.sendNow(Notice(cmd: "notifyRequest", path: request.head.uri))
            } catch {
                log("Worker \(getpid()) could not notify the primary: \(error)")
            }
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: "hello world\n"))
        }
    }
} catch {
    log("messages: \(error)")
    exit(1)
}
