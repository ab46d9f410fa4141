import NIOCore

/// Runs tasks on one SwiftNIO event loop: the connection handlers of a worker then run on
/// that worker's event loop thread, as Node runs a worker's handlers on its one thread,
/// instead of on Swift's global pool, whose threads (one per core) would let every worker
/// use every core. One worker per core stays one core per worker.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
