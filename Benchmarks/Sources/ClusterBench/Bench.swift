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
    /// Every mode gives up after this long (BENCH_TIMEOUT_S overrides it, to test that path).
    static let timeoutSeconds: UInt32 = getenv("BENCH_TIMEOUT_S").flatMap { UInt32(String(cString: $0)) } ?? 60

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
                    try await roundtrip(primary, n: try count(arguments[2]), impl: "swift-cluster")
                case ("roundtrip-callback", 3):
                    try await roundtrip(primary, n: try count(arguments[2]), impl: "swift-cluster-callback")
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
    /// With `roundtrip-callback` the worker answers in `onMessage` on its I/O thread (as
    /// Node's worker answers in `process.on('message')`); with `roundtrip`, from a task
    /// iterating `worker.messages`.
    static func roundtrip(_ primary: Primary, n: Int, impl: String) async throws {
        let events = primary.events
        let worker = try await fork(primary)
        try await waitFor(events, "online") { if case .online(let w) = $0, w.id == worker.id { true } else { false } }

        let (samples, usage, workerUsage) = try await withTaskExecutorPreference(Cluster.executor) {
            () async throws -> ([UInt64], Usage, Usage) in
            var samples = [UInt64](repeating: 0, count: n)
            var payload = [UInt8](repeating: 1, count: 32)
            var start = Usage.zero
            for k in 0..<(warmup + n) {
                if k == warmup { start = Usage.now() }
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
            let usage = Usage.now() - start
            // The worker measured its side over the same requests; ask for it.
            let report = try await worker.request(bytes: Usage.reportRequest, timeout: .seconds(5))
            return (samples.sorted(), usage, try Usage(report.bytes))
        }
        print(#"{"bench":"roundtrip","impl":"\#(impl)","p50_us":\#(micro(percentile(samples, 50))),"p99_us":\#(micro(percentile(samples, 99))),"n":\#(n)}"#)
        usage.printCost(figure: impl == "swift-cluster" ? "roundtrip" : "roundtrip-callback", side: "primary", per: n)
        workerUsage.printCost(figure: impl == "swift-cluster" ? "roundtrip" : "roundtrip-callback", side: "worker", per: n)
        try await stop([worker], events: events)
    }

    /// `oneway N`: the worker sends N JSON messages, then N raw ones; the primary reads
    /// them from `events`, checks their order and times first to N-th, as Node's run does.
    static func oneway(_ primary: Primary, n: Int) async throws {
        let events = primary.events
        let worker = try await fork(primary)
        let (json, bytes) = try await withTaskExecutorPreference(Cluster.executor) {
            () async throws -> ((Double, Usage, Usage), (Double, Usage, Usage)) in
            var iterator = events.makeAsyncIterator()
            func nextMessage() async throws -> ClusterMessage {
                while true {
                    guard let event = await iterator.next() else { throw Failure("the event stream ended") }
                    switch event {
                    case .message(_, let message): return message
                    case .exit(_, let status): throw Failure("the worker exited early (\(status))")
                    default: continue
                    }
                }
            }
            /// Rate, the primary's I/O-thread usage from first to N-th, the worker's usage.
            func stream(_ go: UInt8, check: (ClusterMessage, Int) throws -> Void) async throws -> (Double, Usage, Usage) {
                try await worker.send(bytes: [go])
                var t0: UInt64 = 0
                var start = Usage.zero
                for received in 0..<n {
                    let message = try await nextMessage()
                    if received == 0 {
                        t0 = nanoseconds()
                        start = Usage.now()
                    }
                    try check(message, received)
                }
                let t1 = nanoseconds()
                let usage = Usage.now() - start
                // After its N messages the worker sends what its sending cost it.
                let workerUsage = try Usage(try await nextMessage().bytes)
                return (Double(n) / (Double(t1 - t0) / 1e9), usage, workerUsage)
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
        print(#"{"bench":"oneway","impl":"swift-cluster","msgs_per_s":\#(Int(json.0.rounded())),"n":\#(n)}"#)
        print(#"{"bench":"oneway","impl":"swift-cluster-bytes","msgs_per_s":\#(Int(bytes.0.rounded())),"n":\#(n)}"#)
        json.1.printCost(figure: "oneway-json", side: "primary", per: n)
        json.2.printCost(figure: "oneway-json", side: "worker", per: n)
        bytes.1.printCost(figure: "oneway-bytes", side: "primary", per: n)
        bytes.2.printCost(figure: "oneway-bytes", side: "worker", per: n)
        try await stop([worker], events: events)
        Codec.measure()
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
                    var start = Usage.zero
                    for await message in worker.messages {
                        let bytes = message.bytes
                        if bytes == Usage.reportRequest {
                            try await message.reply(bytes: (Usage.now() - start).bytes)
                            continue
                        }
                        if bytes.count >= 8, bytes.withUnsafeBytes({ $0.loadUnaligned(as: UInt64.self) }) == UInt64(warmup) {
                            start = Usage.now()
                        }
                        try await message.reply(bytes: bytes)
                    }
                }
            case "roundtrip-callback":
                let start = Mutex(Usage.zero)
                worker.onMessage { message in
                    let bytes = message.bytes
                    if bytes == Usage.reportRequest {
                        try? message.replyNow(bytes: (Usage.now() - start.withLock { $0 }).bytes)
                        return
                    }
                    if bytes.count >= 8, bytes.withUnsafeBytes({ $0.loadUnaligned(as: UInt64.self) }) == UInt64(warmup) {
                        start.withLock { $0 = Usage.now() }
                    }
                    try? message.replyNow(bytes: bytes)
                }
                try await Task.sleep(for: .seconds(3600))
            case "oneway":
                let n = try count(CommandLine.arguments[2])
                try await withTaskExecutorPreference(Cluster.executor) { () async throws in
                    for await message in worker.messages {
                        let start = Usage.now()
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
                        try await worker.send(bytes: (Usage.now() - start).bytes)
                    }
                }
            case "coldstart", "rss":
                let listener = try await worker.listener(.tcp(host: "127.0.0.1", port: 0))
                let acceptor = try worker.accept(on: listener) { connection in
                    close(connection.descriptor)
                    connection.closed()
                }
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
        for line in try readFile("/proc/self/status").split(separator: "\n") where line.hasPrefix("VmRSS:") {
            if let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) {
                return value
            }
        }
        throw Failure("no VmRSS in /proc/self/status")
    }

    static func readFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("cannot open \(path)") }
        defer { close(fd) }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got <= 0 { break }
            text.append(contentsOf: buffer[0..<got])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// What the calling thread has used: CPU time (exact, CLOCK_THREAD_CPUTIME_ID), its split
/// into user and kernel time (getrusage(RUSAGE_THREAD), tick-sampled, so only good over
/// many messages) and context switches (/proc/thread-self/status; a voluntary switch is a
/// sleep, so a wake-up). Taken on swift-cluster's I/O thread (inside the executor
/// preference), it says what a message costs the thread that carries it; `thread` shows
/// that the work stayed on one thread.
struct Usage: Sendable {
    var cpu: UInt64 = 0
    var user: UInt64 = 0
    var system: UInt64 = 0
    var sleeps: UInt64 = 0
    var preemptions: UInt64 = 0
    var thread: UInt = 0
    /// Set by `-` when the two snapshots came from different threads (a thread hop).
    var hopped = false

    static let zero = Usage()
    /// The request a roundtrip worker answers with its usage instead of an echo.
    static let reportRequest: [UInt8] = [0xFF, 0xFE]

    static func now() -> Usage {
        var usage = Usage(thread: UInt(pthread_self()))
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        usage.cpu = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        var ru = rusage()
        if getrusage(__rusage_who_t(1), &ru) == 0 { // 1: RUSAGE_THREAD, which Glibc does not export to Swift
            usage.user = UInt64(ru.ru_utime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_utime.tv_usec) * 1000
            usage.system = UInt64(ru.ru_stime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_stime.tv_usec) * 1000
        }
        let status = (try? Bench.readFile("/proc/thread-self/status")) ?? ""
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2, let value = UInt64(fields[1]) else { continue }
            if fields[0] == "voluntary_ctxt_switches:" { usage.sleeps = value }
            if fields[0] == "nonvoluntary_ctxt_switches:" { usage.preemptions = value }
        }
        return usage
    }

    static func - (end: Usage, start: Usage) -> Usage {
        Usage(cpu: end.cpu &- start.cpu, user: end.user &- start.user, system: end.system &- start.system,
              sleeps: end.sleeps &- start.sleeps, preemptions: end.preemptions &- start.preemptions,
              thread: end.thread, hopped: end.hopped || start.hopped || end.thread != start.thread)
    }

    private var fields: [UInt64] { [cpu, user, system, sleeps, preemptions, hopped ? 1 : 0] }

    /// The usage as bytes, for a worker to send to the primary.
    var bytes: [UInt8] {
        var out: [UInt8] = []
        for value in fields { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    init(cpu: UInt64 = 0, user: UInt64 = 0, system: UInt64 = 0, sleeps: UInt64 = 0, preemptions: UInt64 = 0,
         thread: UInt = 0, hopped: Bool = false) {
        (self.cpu, self.user, self.system, self.sleeps, self.preemptions) = (cpu, user, system, sleeps, preemptions)
        self.thread = thread
        self.hopped = hopped
    }

    init(_ bytes: [UInt8]) throws {
        guard bytes.count == 48 else { throw Bench.Failure("a usage report of \(bytes.count) bytes, expected 48") }
        let v = (0..<6).map { index in
            bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)) }
        }
        self.init(cpu: v[0], user: v[1], system: v[2], sleeps: v[3], preemptions: v[4], hopped: v[5] != 0)
    }

    /// One `"bench":"cost"` line, per message (or per round trip).
    func printCost(figure: String, side: String, per count: Int) {
        func per(_ value: UInt64) -> Int { Int((Double(value) / Double(count)).rounded()) }
        let sleeps = (Double(self.sleeps) / Double(count) * 1000).rounded() / 1000
        print(#"{"bench":"cost","impl":"swift-cluster","figure":"\#(figure)","side":"\#(side)","cpu_ns_per_msg":\#(per(cpu)),"user_ns_per_msg":\#(per(user)),"sys_ns_per_msg":\#(per(system)),"sleeps_per_msg":\#(sleeps),"one_thread":\#(!hopped),"n":\#(count)}"#)
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
