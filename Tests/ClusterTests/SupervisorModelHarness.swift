@testable import Cluster
import Logging

/// What the watchdog and recycling read about a worker, set by hand: healthy by default.
struct Gauges: WorkerGauges {
    var isConnected = true
    var sinceLastHeartbeat: Duration? = .zero
    var eventLoopLag: Duration = .zero
    var requestsServed = 0
    var memoryInUse = 0
}

/// A ``SupervisorModel`` driven as the supervisor drives it, without processes: it performs
/// each spawn at once (worker ids count up from 1, pid 100 + id), keeps a hand-set clock,
/// and returns the actions of each step but the log lines, which it keeps apart.
struct ModelHarness {
    typealias Model = SupervisorModel<ManualInstant>

    var model: Model
    var now = ManualInstant(offset: .zero)
    var nextID = 1
    /// Every log line so far.
    var logs: [String] = []
    /// Each log line's metadata, in the same order.
    var logMetadata: [Logger.Metadata] = []

    init(_ supervision: Supervision) {
        model = Model(supervision: supervision)
    }

    /// Performs `actions` as the supervisor does: a spawn starts the next worker and the
    /// model's answer is performed too.
    mutating func perform(_ actions: [SupervisorAction]) -> [SupervisorAction] {
        var done: [SupervisorAction] = []
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case .log(_, let line, let metadata):
                logs.append(line)
                logMetadata.append(metadata)
            case .spawn(let slot, _):
                done.append(action)
                let id = nextID
                nextID += 1
                queue.append(contentsOf: model.spawned(slot: slot, worker: id, pid: Int32(100 + id),
                                                       requestLimit: model.supervision.recycling.maxRequests, at: now))
            default:
                done.append(action)
            }
        }
        return done
    }

    @discardableResult
    mutating func start() -> [SupervisorAction] { perform(model.reconcile(at: now)) }

    /// Starts the cluster and makes every worker ready.
    mutating func startReady() {
        start()
        for member in model.members { ready(member.id) }
    }

    @discardableResult
    mutating func ready(_ id: Int) -> [SupervisorAction] { perform(model.ready(worker: id, at: now)) }

    @discardableResult
    mutating func exit(_ id: Int, _ status: ExitStatus = .exited(1)) -> [SupervisorAction] {
        perform(model.exited(worker: id, status: status, at: now))
    }

    @discardableResult
    mutating func reload() -> [SupervisorAction] { perform(model.reload(at: now)) }

    @discardableResult
    mutating func scale(_ count: Int) -> [SupervisorAction] { perform(model.scale(to: count, at: now)) }

    @discardableResult
    mutating func stop(immediately: Bool = false) -> [SupervisorAction] {
        perform(model.stop(immediately: immediately, at: now))
    }

    /// Moves the clock on by `duration` and ticks; every worker reads healthy but those in
    /// `gauges`.
    @discardableResult
    mutating func tick(after duration: Duration, _ gauges: [Int: Gauges] = [:]) -> [SupervisorAction] {
        now = now.advanced(by: duration)
        let readings = Dictionary(uniqueKeysWithValues: model.members.map { ($0.id, gauges[$0.id] ?? Gauges()) })
        return perform(model.tick(at: now, gauges: readings))
    }

    /// Each worker's role, by id.
    var roles: [Int: SupervisedWorker.Role] {
        Dictionary(uniqueKeysWithValues: model.members.map { ($0.id, model.role(of: $0)) })
    }

    /// The worker holding each slot.
    var holders: [Int: Int] { model.slots.compactMapValues { $0.holder?.id } }

    /// Each worker's generation, by id.
    var generations: [Int: Int] {
        Dictionary(uniqueKeysWithValues: model.members.map { ($0.id, $0.generation) })
    }
}
