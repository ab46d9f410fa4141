import CClusterShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Something the loop wakes when its descriptor is ready.
protocol IOHandler: AnyObject, Sendable {
    /// Called on the loop thread with the epoll events that fired.
    func handle(events: UInt32)
}

/// Something that writes what it queued once per loop iteration, before the loop sleeps.
protocol Flushable: AnyObject {
    func flushBeforeSleep()
}

/// An object a timer notifies with a token, so arming a timer allocates no closure.
protocol TimerTarget: AnyObject, Sendable {
    func timerFired(_ token: UInt64)
}

/// The one thread in each process that waits on every descriptor swift-cluster watches
/// (channels, pidfds, listeners, captured output) and, as a `TaskExecutor`, runs the tasks
/// that prefer it.
///
/// Why its own thread: reads and writes on channels must never block Swift's cooperative
/// pool, and a message should reach its consumer in one wake-up. A task that prefers this
/// executor (`withTaskExecutorPreference(Cluster.executor)`) is resumed right here, on
/// the thread that read the message, with no hop to another thread. Workers are spawned
/// from this thread too: it lives as long as the process, so `PR_SET_PDEATHSIG` in a
/// worker (which tracks the spawning *thread*) fires only when the primary process dies.
///
/// Waiting: timers live on a timerfd, re-armed only when the soonest deadline moves, so
/// the loop sleeps in `epoll_wait(-1)` without arming a kernel timer per sleep. After
/// channel traffic, the loop polls for up to ``spinMicroseconds`` before it sleeps: the
/// next message of a conversation then costs no wake-up of an idle CPU (the largest cost
/// of a round trip on a virtual machine). It never spins when the process may use only
/// one CPU, where spinning would only keep the peer from running.
final class IOLoop: TaskExecutor, @unchecked Sendable {
    static let shared: IOLoop = {
        do { return try IOLoop() } catch { fatalError("swift-cluster cannot start its I/O thread: \(error)") }
    }()

    enum TimerAction {
        case run(@Sendable () -> Void)
        case notify(any TimerTarget, UInt64)
    }

    fileprivate struct Shared {
        var jobs: [UnownedJob] = []
        var closures: [@Sendable () -> Void] = []
        var timers = TimerQueue<TimerAction>()
        var armedDeadline: UInt64?
        var sleeping = false
        var handlers: [Int32: any IOHandler] = [:]
        var hasWork: Bool { !jobs.isEmpty || !closures.isEmpty }
    }

    /// How long the loop polls after channel traffic before it sleeps; 0 never spins.
    /// `CLUSTER_SPIN_MICROSECONDS` overrides the default of 20 µs (0 when this process may
    /// run on one CPU only).
    let spinMicroseconds: UInt64

    private let epoll: Int32
    private let wakeFD: Int32
    private let timerFD: Int32
    private let shared = Mutex(Shared())
    private let threadID = Atomic<UInt>(0)
    // Loop-thread only.
    private var flushables: [any Flushable] = []
    private var spinRequested = false

    private init() throws(ClusterError) {
        epoll = try Syscall.epollCreate()
        wakeFD = try Syscall.eventFD()
        timerFD = try Syscall.timerFD()
        try Syscall.epollControl(epoll, EPOLL_CTL_ADD, wakeFD, events: EPOLLIN.rawValue)
        try Syscall.epollControl(epoll, EPOLL_CTL_ADD, timerFD, events: EPOLLIN.rawValue)
        let configured = getenv("CLUSTER_SPIN_MICROSECONDS").flatMap { UInt64(String(cString: $0)) }
        spinMicroseconds = configured ?? (cluster_cpu_count() > 1 ? 20 : 0)
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { argument in
            let loop = Unmanaged<IOLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.run()
            return nil
        }, box)
        guard created == 0 else {
            throw ClusterError(.systemCall("pthread_create"), errno: created, "cannot start the I/O thread")
        }
        pthread_detach(thread)
    }

    /// True on the loop's own thread.
    var inLoop: Bool { threadID.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Stops a debug build when called off the loop's thread, as SwiftNIO's
    /// `assertInEventLoop` does: the state of every `@unchecked Sendable` handler here is
    /// the loop thread's alone. Release builds skip the check (an `assert`).
    func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inLoop, "loop-confined state touched off the I/O thread", file: file, line: line)
    }

    /// Monotonic nanoseconds, the clock of every deadline here.
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    // MARK: Executor

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let wake = shared.withLock { state in
            state.jobs.append(job)
            return state.takeSleeping()
        }
        if wake { signal() }
    }

    /// Runs `body` on the loop thread, soon.
    func execute(_ body: @escaping @Sendable () -> Void) {
        let wake = shared.withLock { state in
            state.closures.append(body)
            return state.takeSleeping()
        }
        if wake { signal() }
    }

    /// Runs `body` on the loop thread and returns what it returned.
    func submit<T: Sendable>(_ body: @escaping @Sendable () throws(ClusterError) -> T) async throws(ClusterError) -> T {
        let result: Result<T, ClusterError> = await withCheckedContinuation { continuation in
            execute {
                do throws(ClusterError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Calls `flushable.flushBeforeSleep()` once the loop has handled what is ready now.
    /// Loop thread only: this is how writes issued in one batch leave in one syscall.
    func flushBeforeSleep(_ flushable: any Flushable) {
        flushables.append(flushable)
    }

    /// Asks the loop to poll a little before it sleeps: a reply is likely to come soon.
    /// Loop thread only.
    func expectTraffic() {
        spinRequested = true
    }

    // MARK: Timers

    /// Runs `action` on the loop thread after `delay` unless cancelled first.
    @discardableResult
    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        schedule(after: delay, .run(action))
    }

    /// Calls `target.timerFired(token)` on the loop thread after `delay` unless cancelled.
    func schedule(after delay: Duration, target: any TimerTarget, token: UInt64) -> UInt64 {
        schedule(after: delay, .notify(target, token))
    }

    private func schedule(after delay: Duration, _ action: TimerAction) -> UInt64 {
        // Saturates: a delay of a billion years is a timer that never fires, not a trap.
        let (sum, overflow) = IOLoop.now().addingReportingOverflow(delay.saturatingNanoseconds)
        let deadline = overflow ? UInt64.max : sum
        return shared.withLock { state in
            let id = state.timers.insert(deadline: deadline, action)
            if state.armedDeadline.map({ deadline < $0 }) ?? true {
                state.armedDeadline = deadline
                Syscall.armTimer(timerFD, at: deadline)
            }
            return id
        }
    }

    func cancelTimer(_ id: UInt64) {
        shared.withLock { $0.timers.cancel(id) }
    }

    private func fireTimers() {
        var expirations: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &expirations) { try? Syscall.read(timerFD, into: $0) }
        let due = shared.withLock { state -> [TimerAction] in
            let due = state.timers.popExpired(now: IOLoop.now())
            state.armedDeadline = state.timers.soonest()
            if let next = state.armedDeadline { Syscall.armTimer(timerFD, at: next) }
            return due
        }
        for action in due {
            switch action {
            case .run(let body): body()
            case .notify(let target, let token): target.timerFired(token)
            }
        }
    }

    // MARK: Descriptors

    func register(_ fd: Int32, events: UInt32, handler: any IOHandler) throws(ClusterError) {
        shared.withLock { $0.handlers[fd] = handler }
        do {
            try Syscall.epollControl(epoll, EPOLL_CTL_ADD, fd, events: events)
        } catch {
            shared.withLock { _ = $0.handlers.removeValue(forKey: fd) }
            throw error
        }
    }

    func modify(_ fd: Int32, events: UInt32) throws(ClusterError) {
        try Syscall.epollControl(epoll, EPOLL_CTL_MOD, fd, events: events)
    }

    /// Stops watching `fd`; call before closing it.
    func deregister(_ fd: Int32) {
        _ = try? Syscall.epollControl(epoll, EPOLL_CTL_DEL, fd, events: 0)
        shared.withLock { _ = $0.handlers.removeValue(forKey: fd) }
    }

    // MARK: The loop

    private func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { try? Syscall.write(wakeFD, $0) }
    }

    private func run() {
        threadID.store(UInt(pthread_self()), ordering: .relaxed)
        let events = UnsafeMutableBufferPointer<epoll_event>.allocate(capacity: 64)
        let executor = asUnownedTaskExecutor()
        var jobs: [UnownedJob] = []
        var closures: [@Sendable () -> Void] = []
        while true {
            shared.withLock { state in
                swap(&jobs, &state.jobs)
                swap(&closures, &state.closures)
            }
            for closure in closures { closure() }
            for job in jobs { job.runSynchronously(on: executor) }
            jobs.removeAll(keepingCapacity: true)
            closures.removeAll(keepingCapacity: true)
            while !flushables.isEmpty {
                let batch = flushables
                flushables.removeAll()
                for flushable in batch { flushable.flushBeforeSleep() }
            }

            guard let count = wait(into: events) else { continue }
            for index in 0..<count {
                let event = events[index]
                let fd = event.data.fd
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = withUnsafeMutableBytes(of: &value) { try? Syscall.read(wakeFD, into: $0) }
                } else if fd == timerFD {
                    fireTimers()
                } else {
                    shared.withLock { $0.handlers[fd] }?.handle(events: event.events)
                }
            }
        }
    }

    /// Waits for events; nil when work arrived for the executor instead.
    private func wait(into events: UnsafeMutableBufferPointer<epoll_event>) -> Int? {
        if spinRequested && spinMicroseconds > 0 {
            spinRequested = false
            let until = IOLoop.now() + spinMicroseconds * 1000
            repeat {
                let count = (try? Syscall.epollWait(epoll, events, milliseconds: 0)) ?? 0
                if count > 0 { return count }
                if shared.withLock({ $0.hasWork }) { return nil }
            } while IOLoop.now() < until
        }
        let mustRun = shared.withLock { state in
            if state.hasWork { return true }
            state.sleeping = true
            return false
        }
        if mustRun { return nil }
        let count = (try? Syscall.epollWait(epoll, events, milliseconds: -1)) ?? 0
        shared.withLock { $0.sleeping = false }
        return count
    }
}

extension IOLoop.Shared {
    /// Whether a producer must wake the sleeping loop; only the first producer does.
    fileprivate mutating func takeSleeping() -> Bool {
        defer { sleeping = false }
        return sleeping
    }
}
