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

/// The one thread in each process that waits on every descriptor swift-cluster watches
/// (channels, pidfds, captured output) and, as a `TaskExecutor`, runs the tasks that
/// prefer it.
///
/// Why its own thread: reads and writes on channels must never block Swift's cooperative
/// pool, and a message should reach its consumer in one wake-up. A task that prefers this
/// executor (`withTaskExecutorPreference(Cluster.executor)`) is resumed right here, on
/// the thread that read the message, with no hop to another thread. Workers are spawned
/// from this thread too: it lives as long as the process, so `PR_SET_PDEATHSIG` in a
/// worker (which tracks the spawning *thread*) fires only when the primary process dies.
final class IOLoop: TaskExecutor, @unchecked Sendable {
    static let shared: IOLoop = {
        do { return try IOLoop() } catch { fatalError("swift-cluster cannot start its I/O thread: \(error)") }
    }()

    fileprivate struct Timer {
        var deadline: ContinuousClock.Instant
        var id: UInt64
        var action: @Sendable () -> Void
    }

    fileprivate struct Shared {
        var jobs: [UnownedJob] = []
        var closures: [@Sendable () -> Void] = []
        var timers: [Timer] = [] // sorted by deadline, soonest last
        var nextTimerID: UInt64 = 1
        var sleeping = false
        var handlers: [Int32: any IOHandler] = [:]
    }

    private let epoll: Int32
    private let wakeFD: Int32
    private let shared = Mutex(Shared())
    private let threadID = Atomic<UInt>(0)
    /// Work that must run after the current batch, before the loop sleeps again (flushes).
    /// Touched only on the loop thread.
    private var beforeSleep: [() -> Void] = []

    private init() throws(ClusterError) {
        epoll = try Syscall.epollCreate()
        wakeFD = try Syscall.eventFD()
        try Syscall.epollControl(epoll, EPOLL_CTL_ADD, wakeFD, events: EPOLLIN.rawValue)
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

    /// Runs `body` once the loop has handled what is ready now and before it sleeps.
    /// Loop thread only: this is how writes issued in one batch leave in one syscall.
    func runBeforeSleep(_ body: @escaping () -> Void) {
        precondition(inLoop, "runBeforeSleep off the I/O thread")
        beforeSleep.append(body)
    }

    // MARK: Timers

    /// Runs `action` on the loop thread at `deadline` unless cancelled first.
    @discardableResult
    func schedule(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        let (id, wake) = shared.withLock { state -> (UInt64, Bool) in
            let id = state.nextTimerID
            state.nextTimerID += 1
            let index = state.timers.firstIndex { $0.deadline < deadline } ?? state.timers.endIndex
            state.timers.insert(Timer(deadline: deadline, id: id, action: action), at: index)
            // A new soonest deadline shortens the current wait.
            return (id, index == state.timers.endIndex - 1 ? state.takeSleeping() : false)
        }
        if wake { signal() }
        return id
    }

    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> UInt64 {
        schedule(at: .now + delay, action)
    }

    func cancelTimer(_ id: UInt64) {
        shared.withLock { state in
            if let index = state.timers.firstIndex(where: { $0.id == id }) { state.timers.remove(at: index) }
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
        let capacity = 64
        let events = UnsafeMutableBufferPointer<epoll_event>.allocate(capacity: capacity)
        let executor = asUnownedTaskExecutor()
        while true {
            let (jobs, closures, due) = shared.withLock { state in
                let jobs = state.jobs, closures = state.closures
                state.jobs.removeAll(keepingCapacity: true)
                state.closures.removeAll(keepingCapacity: true)
                var due: [@Sendable () -> Void] = []
                let now = ContinuousClock.now
                while let last = state.timers.last, last.deadline <= now {
                    due.append(state.timers.removeLast().action)
                }
                return (jobs, closures, due)
            }
            for closure in closures { closure() }
            for job in jobs { job.runSynchronously(on: executor) }
            for action in due { action() }
            while !beforeSleep.isEmpty {
                let work = beforeSleep
                beforeSleep.removeAll()
                for body in work { body() }
            }

            let timeout: Int32 = shared.withLock { state in
                if !state.jobs.isEmpty || !state.closures.isEmpty { return 0 }
                state.sleeping = true
                guard let soonest = state.timers.last?.deadline else { return -1 }
                let remaining = ContinuousClock.now.duration(to: soonest)
                if remaining <= .zero { return 0 }
                let (seconds, attoseconds) = remaining.components
                return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
            }
            let count = (try? Syscall.epollWait(epoll, events, milliseconds: timeout)) ?? 0
            shared.withLock { $0.sleeping = false }
            for index in 0..<count {
                let event = events[index]
                let fd = event.data.fd
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = withUnsafeMutableBytes(of: &value) { try? Syscall.read(wakeFD, into: $0) }
                    continue
                }
                let handler = shared.withLock { $0.handlers[fd] }
                handler?.handle(events: event.events)
            }
        }
    }
}

extension IOLoop.Shared {
    /// Whether a producer must wake the sleeping loop; only the first producer does.
    fileprivate mutating func takeSleeping() -> Bool {
        defer { sleeping = false }
        return sleeping
    }
}
