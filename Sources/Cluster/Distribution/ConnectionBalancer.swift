/// Spreads long-lived connections that landed unevenly. On a `shared` socket the worker
/// that wakes first takes the connection, so a client that opens many keep-alive
/// connections at once can put nearly all of them on one worker, where they stay while
/// the other workers idle (measured: all 32 of wrk's connections on one of two workers,
/// `Sources/Cluster/Cluster.docc/StrategiesMeasured.md`); `reusePort`'s hash can be uneven too. When one worker has held
/// well over its share for ``patience``, it is asked to close its excess gracefully
/// (`Control.rebalance`; an HTTP adapter answers the next request on those
/// connections with `Connection: close`), and the clients reconnect and spread again.
///
/// Pure: fed each worker's open connections and the time, once a second.
struct ConnectionBalancer {
    /// How long an imbalance must last before a worker sheds.
    var patience: Duration = .seconds(2)
    /// The least time between two sheds: the reconnections must settle first.
    var cooldown: Duration = .seconds(5)
    /// The busiest worker is over its share when it holds more than this times the mean.
    var tolerance = 1.5
    /// Below this many open connections per worker, spreading them is not worth a reconnect.
    var minimumPerWorker = 2

    private var unevenSince: ContinuousClock.Instant?
    private var lastShed: ContinuousClock.Instant?

    /// The worker that should shed, and the share of its connections to close, if any.
    mutating func sample(_ open: [(worker: Int, connections: Int)], at now: ContinuousClock.Instant) -> (worker: Int, fraction: Double)? {
        guard open.count >= 2 else {
            unevenSince = nil
            return nil
        }
        let total = open.reduce(0) { $0 + max(0, $1.connections) }
        let mean = Double(total) / Double(open.count)
        let busiest = open.max { ($0.connections, -$0.worker) < ($1.connections, -$1.worker) }!
        let excess = Double(busiest.connections) - mean
        guard total >= minimumPerWorker * open.count, Double(busiest.connections) > tolerance * mean, excess >= 2 else {
            unevenSince = nil
            return nil
        }
        let since = unevenSince ?? now
        unevenSince = since
        guard since.duration(to: now) >= patience else { return nil }
        if let lastShed, lastShed.duration(to: now) < cooldown { return nil }
        lastShed = now
        unevenSince = nil
        return (busiest.worker, excess / Double(busiest.connections))
    }
}
