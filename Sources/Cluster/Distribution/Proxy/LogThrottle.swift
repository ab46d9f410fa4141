/// Lets a message repeat at most once per interval, and counts what it held back, so a
/// flood of bad connections costs a log line a minute, not one each.
struct LogThrottle {
    private let interval: Duration
    private var last: ContinuousClock.Instant?
    private var held = 0

    init(interval: Duration = .seconds(60)) { self.interval = interval }

    /// Nil when the message is to be held back; else how many were held back since the
    /// last one that went out.
    mutating func admit(now: ContinuousClock.Instant = .now) -> Int? {
        if let last, now - last < interval {
            held += 1
            return nil
        }
        last = now
        defer { held = 0 }
        return held
    }
}
