/// What the service manager is told (sd_notify(3)), derived from the supervisor's state:
/// the pure half of ``ServiceNotifier``. Each call returns the lines of one message, or none.
///
/// - `READY=1` once every desired worker is ready (the unit becomes active, and a
///   `Type=notify` unit's `systemctl start` returns), and again when a reload ends;
/// - `RELOADING=1` with `MONOTONIC_USEC=` when a rolling reload starts (a
///   `Type=notify-reload` unit's `systemctl reload` waits for the `READY=1` after it);
/// - `STOPPING=1` when the workers start draining;
/// - `MAINPID=` and `READY=1` from a hot upgrade's new primary when it takes over, so the
///   unit follows it (the unit needs `NotifyAccess=all`); until then it says nothing, and
///   the old primary says nothing more once it has handed over;
/// - `STATUS=` whenever the one-line summary changes.
struct ServiceStatus {
    /// The supervisor's state, as far as the service manager cares.
    struct Snapshot: Equatable {
        var serving: Int
        var desired: Int
        /// The generation a reload under way brings in, or nil.
        var reloading: Int?
        var stopping: Bool
        var degraded: String?
        var lastReloadFailure: String?

        var summary: String {
            if stopping { return "stopping: draining the workers" }
            var text = "\(serving) of \(desired) workers ready"
            if let reloading { text += "; reloading to generation \(reloading)" }
            if let lastReloadFailure { text += "; last reload failed: \(lastReloadFailure)" }
            if let degraded { text += "; degraded: \(degraded)" }
            return text
        }
    }

    /// Whether this primary speaks for the service: not a hot upgrade's new primary before
    /// it takes over, nor an old one after it handed over.
    private(set) var speaking: Bool
    private var announcedReady = false
    private var reloading = false
    private var stopping = false
    private var lastSummary: String?

    /// `startedByUpgrade`: a hot upgrade's new primary, silent until ``tookOver(pid:state:)``.
    init(startedByUpgrade: Bool) {
        speaking = !startedByUpgrade
    }

    /// The message `state` calls for, given what was said before.
    mutating func update(_ state: Snapshot, monotonicMicroseconds: @autoclosure () -> UInt64) -> [String] {
        guard speaking else { return [] }
        var lines: [String] = []
        if state.stopping {
            if !stopping {
                stopping = true
                lines.append("STOPPING=1")
            }
        } else if let _ = state.reloading, announcedReady {
            if !reloading {
                reloading = true
                lines += ["RELOADING=1", "MONOTONIC_USEC=\(monotonicMicroseconds())"]
            }
        } else if reloading {
            reloading = false
            lines.append("READY=1")
        } else if !announcedReady, state.desired > 0, state.serving >= state.desired, state.reloading == nil {
            announcedReady = true
            lines.append("READY=1")
        }
        return lines + summary(of: state)
    }

    /// A hot upgrade's new primary takes over: from now on it is the service's main process.
    mutating func tookOver(pid: Int32, state: Snapshot) -> [String] {
        speaking = true
        announcedReady = true
        return ["MAINPID=\(pid)", "READY=1"] + summary(of: state)
    }

    /// A hot upgrade's new primary took over: this one says nothing more (its drain is not
    /// the service stopping).
    mutating func handedOver() {
        speaking = false
    }

    private mutating func summary(of state: Snapshot) -> [String] {
        let summary = state.summary
        guard summary != lastSummary else { return [] }
        lastSummary = summary
        return ["STATUS=\(summary)"]
    }
}
