import Cluster
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Everything here is nonisolated on purpose (see main.swift): the closures given to
/// `withTaskExecutorPreference(Cluster.executor)` must run on that executor, which is
/// swift-cluster's I/O thread, so a message reaches its consumer with no thread hop.
enum Bench {
    static let warmup = 2000
    static let workersForStart = 2
    static let timeoutSeconds: UInt32 = 60

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// What the one-way worker sends with `send(_:)`: Node's `{i: k}`.
    struct Item: Codable, Sendable {
        let i: Int
    }

    static func main() async {
        let arguments = CommandLine.arguments
        let mode = arguments.count > 1 ? arguments[1] : ""
        switch Cluster.role {
        case .worker(let worker):
            await runWorker(worker, mode: mode)
        case .primary(let primary):
            Watchdog.start(mode: mode, seconds: timeoutSeconds)
            do {
                switch (mode, arguments.count) {
                case ("roundtrip", 3):
                    try await roundtrip(primary, n: try count(arguments[2]))
                case ("oneway", 3):
                    try await oneway(primary, n: try count(arguments[2]))
                case ("coldstart", 3):
                    try await coldstart(primary, runs: try count(arguments[2]))
                case ("rss", 2):
                    try await rss(primary)
                default:
                    warn("usage: ClusterBench roundtrip N | oneway N | coldstart R | rss\n")
                    exit(64)
                }
            } catch {
                warn("ClusterBench: \(mode): \(error)\n")
                Watchdog.killAll()
                exit(1)
            }
            exit(0)
        }
    }

    static func count(_ text: String) throws -> Int {
        guard let n = Int(text), n >= 1 else { throw Failure("'\(text)' is not a positive count") }
        return n
    }

    // MARK: Primary side

    /// `roundtrip N`: one worker echoes each request; the primary times each round trip.
    static func roundtrip(_ primary: Primary, n: Int) async throws {
        let events = primary.events
        let worker = try await fork(primary)
        try await waitFor(events, "online") { if case .online(let w) = $0, w.id == worker.id { true } else { false } }

        let samples = try await withTaskExecutorPreference(Cluster.executor) { () async throws -> [UInt64] in
            var samples = [UInt64](repeating: 0, count: n)
            var payload = [UInt8](repeating: 1, count: 32)
            for k in 0..<(warmup + n) {
                // The sequence number rides in the payload so a wrong echo cannot pass.
                payload.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(k), as: UInt64.self) }
                let t0 = nanoseconds()
                let reply = try await worker.request(bytes: payload, timeout: .seconds(5))
                let t1 = nanoseconds()
                guard reply.bytes == payload else {
                    throw Failure("echo \(k) came back wrong (\(reply.bytes.count) bytes)")
                }
                if k >= warmup { samples[k - warmup] = t1 - t0 }
            }
            return samples.sorted()
        }
        print(#"{"bench":"roundtrip","impl":"swift-cluster","p50_us":\#(micro(percentile(samples, 50))),"p99_us":\#(micro(percentile(samples, 99))),"n":\#(n)}"#)
        try await stop([worker], events: events)
    }

    /// `oneway N`: the worker sends N JSON messages, then N raw ones; the primary reads
    /// them from `events`, checks their order and times first to N-th, as Node's run does.
    static func oneway(_ primary: Primary, n: Int) async throws {
        let events = primary.events
        let worker = try await fork(primary)
        let (json, bytes) = try await withTaskExecutorPreference(Cluster.executor) { () async throws -> (Double, Double) in
            var iterator = events.makeAsyncIterator()
            func stream(_ go: UInt8, check: (ClusterMessage, Int) throws -> Void) async throws -> Double {
                try await worker.send(bytes: [go])
                var received = 0
                var t0: UInt64 = 0
                while received < n {
                    guard let event = await iterator.next() else { throw Failure("the event stream ended") }
                    switch event {
                    case .message(_, let message):
                        if received == 0 { t0 = nanoseconds() }
                        try check(message, received)
                        received += 1
                    case .exit(_, let status):
                        throw Failure("the worker exited early (\(status)) after \(received) messages")
                    default:
                        continue
                    }
                }
                return Double(n) / (Double(nanoseconds() - t0) / 1e9)
            }
            let json = try await stream(1) { message, expected in
                let item = try message.decode(Item.self)
                guard item.i == expected else { throw Failure("JSON stream out of order: got \(item.i), expected \(expected)") }
            }
            let bytes = try await stream(2) { message, expected in
                let bytes = message.bytes
                guard bytes.count == 32,
                      bytes.withUnsafeBytes({ $0.loadUnaligned(as: UInt64.self) }) == UInt64(expected) else {
                    throw Failure("byte stream out of order at \(expected)")
                }
            }
            return (json, bytes)
        }
        print(#"{"bench":"oneway","impl":"swift-cluster","msgs_per_s":\#(Int(json.rounded())),"n":\#(n)}"#)
        print(#"{"bench":"oneway","impl":"swift-cluster-bytes","msgs_per_s":\#(Int(bytes.rounded())),"n":\#(n)}"#)
        try await stop([worker], events: events)
    }

    /// `coldstart R`: R times, from just before the first fork until both workers have
    /// reported listening; then SIGKILL both and wait for both exits. One primary serves all.
    static func coldstart(_ primary: Primary, runs: Int) async throws {
        let events = primary.events
        let samples = try await withTaskExecutorPreference(Cluster.executor) { () async throws -> [UInt64] in
            var samples: [UInt64] = []
            for _ in 0..<runs {
                let t0 = nanoseconds()
                let workers = try await startListening(primary, events: events)
                samples.append(nanoseconds() - t0)
                try await stop(workers, events: events)
            }
            return samples.sorted()
        }
        print(#"{"bench":"coldstart","impl":"swift-cluster","p50_ms":\#(milli(percentile(samples, 50))),"p99_ms":\#(milli(percentile(samples, 99))),"runs":\#(runs)}"#)
    }

    /// `rss`: two listening workers, a 1 s settle, then this process's VmRSS.
    static func rss(_ primary: Primary) async throws {
        let events = primary.events
        let workers = try await startListening(primary, events: events)
        try await Task.sleep(for: .seconds(1))
        let kilobytes = try residentKilobytes()
        print(#"{"bench":"rss","impl":"swift-cluster","primary_rss_kb":\#(kilobytes)}"#)
        try await stop(workers, events: events)
    }

    /// Forks `workersForStart` workers and returns once every one has reported listening.
    static func startListening(_ primary: Primary, events: ClusterEvents) async throws -> [Worker] {
        var workers: [Worker] = []
        for _ in 0..<workersForStart { workers.append(try await fork(primary)) }
        var waiting = Set(workers.map(\.id))
        for await event in events {
            switch event {
            case .listening(let worker, _):
                waiting.remove(worker.id)
                if waiting.isEmpty { return workers }
            case .exit(let worker, let status) where waiting.contains(worker.id):
                throw Failure("\(worker) exited before listening (\(status))")
            default:
                continue
            }
        }
        throw Failure("the event stream ended")
    }

    static func fork(_ primary: Primary) async throws -> Worker {
        let worker = try await primary.fork()
        Watchdog.register(worker)
        return worker
    }

    /// SIGKILLs `workers` and waits until each has been reaped, so the next run starts on
    /// a quiet machine.
    static func stop(_ workers: [Worker], events: ClusterEvents) async throws {
        var waiting = Set(workers.filter { !$0.isDead }.map(\.id))
        workers.forEach { $0.kill(.kill) }
        if waiting.isEmpty { return }
        for await event in events {
            if case .exit(let worker, _) = event {
                waiting.remove(worker.id)
                Watchdog.unregister(worker)
                if waiting.isEmpty { return }
            }
        }
        throw Failure("the event stream ended")
    }

    static func waitFor(_ events: ClusterEvents, _ what: String, _ match: (ClusterEvent) -> Bool) async throws {
        for await event in events {
            if match(event) { return }
            if case .exit(let worker, let status) = event { throw Failure("\(worker) exited (\(status)) before \(what)") }
        }
        throw Failure("the event stream ended before \(what)")
    }

    // MARK: Worker side

    static func runWorker(_ worker: ClusterWorker, mode: String) async {
        do {
            switch mode {
            case "roundtrip":
                try await withTaskExecutorPreference(Cluster.executor) { () async throws in
                    for await message in worker.messages { try await message.reply(bytes: message.bytes) }
                }
            case "oneway":
                let n = try count(CommandLine.arguments[2])
                try await withTaskExecutorPreference(Cluster.executor) { () async throws in
                    for await message in worker.messages {
                        switch message.bytes.first {
                        case 1:
                            for k in 0..<n { try await worker.send(Item(i: k)) }
                        case 2:
                            var payload = [UInt8](repeating: 7, count: 32)
                            for k in 0..<n {
                                payload.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(k), as: UInt64.self) }
                                try await worker.send(bytes: payload)
                            }
                        default:
                            throw Failure("unexpected message \(message.bytes)")
                        }
                    }
                }
            case "coldstart", "rss":
                let listener = try await worker.listener(.tcp(host: "127.0.0.1", port: 0))
                let acceptor = try worker.accept(on: listener) { fd in close(fd) }
                await worker.drainRequested()
                acceptor.stop()
            default:
                throw Failure("unknown mode '\(mode)'")
            }
        } catch {
            warn("ClusterBench worker \(worker.id): \(mode): \(error)\n")
            exit(1)
        }
        exit(0)
    }

    // MARK: Measuring

    static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Nearest rank, as pingpong.c and the Node scripts: the value at rank ceil(p/100 * n).
    static func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        let rank = min(sorted.count, max(1, Int((p / 100 * Double(sorted.count)).rounded(.up))))
        return sorted[rank - 1]
    }

    /// Nanoseconds as microseconds with one decimal.
    static func micro(_ ns: UInt64) -> Double { (Double(ns) / 100).rounded() / 10 }
    /// Nanoseconds as milliseconds with one decimal.
    static func milli(_ ns: UInt64) -> Double { (Double(ns) / 100_000).rounded() / 10 }

    static func residentKilobytes() throws -> Int {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open /proc/self/status") }
        defer { close(fd) }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got <= 0 { break }
            text.append(contentsOf: buffer[0..<got])
        }
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmRSS:") {
            if let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) {
                return value
            }
        }
        throw Failure("no VmRSS in /proc/self/status")
    }
}

/// Writes `text` to stderr in one write(2) (stdio's `stderr` is not concurrency-safe).
func warn(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Ends a wedged run: after the limit it SIGKILLs every worker still registered (through
/// its pidfd, so no other process can be hit), says so, and exits 2. A plain thread, so
/// it fires even if every task is stuck.
enum Watchdog {
    private static let state = Mutex<(mode: String, workers: [Int: Worker])>(("", [:]))

    static func start(mode: String, seconds: UInt32) {
        state.withLock { $0.mode = mode }
        let limit = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        limit.initialize(to: seconds)
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { argument in
            let limit = argument!.assumingMemoryBound(to: UInt32.self)
            var remaining = limit.pointee
            while remaining > 0 { remaining = sleep(remaining) }
            let mode = Watchdog.state.withLock { $0.mode }
            warn("ClusterBench: \(mode) timed out after \(limit.pointee) s\n")
            Watchdog.killAll()
            _exit(2)
        }, limit)
        if created == 0 { pthread_detach(thread) }
    }

    static func register(_ worker: Worker) { state.withLock { $0.workers[worker.id] = worker } }
    static func unregister(_ worker: Worker) { state.withLock { _ = $0.workers.removeValue(forKey: worker.id) } }

    static func killAll() {
        let workers = state.withLock { Array($0.workers.values) }
        workers.forEach { $0.kill(.kill) }
    }
}
