extension Duration {
    /// The duration in seconds, as a Double: for figures, metrics and traces.
    package var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The duration for a log line or an error, rounded: "30 s", "4.1 s", "250 ms" (whole
    /// seconds from a minute up).
    package var rounded: String {
        let (seconds, attoseconds) = components
        if attoseconds == 0 { return "\(seconds) s" }
        if self < .seconds(1) { return "\(Int((inSeconds * 1000).rounded())) ms" }
        let tenths = (inSeconds * 10).rounded()
        guard tenths.isFinite, tenths < 600 else { return "\(seconds) s" }
        return tenths.truncatingRemainder(dividingBy: 10) == 0 ? "\(Int(tenths) / 10) s" : "\(tenths / 10) s"
    }

    /// The longest wait any timer here takes: about 34,800 years. A longer duration waits
    /// this long instead, so no deadline computed from a duration it is given can overflow.
    package static let distantFuture = Duration.seconds(1 << 40)

    /// The duration, capped at ``distantFuture`` and raised to zero when negative: the
    /// delay a timer or a deadline uses.
    package var asTimerDelay: Duration { min(max(self, .zero), .distantFuture) }

    /// Whole nanoseconds, rounded down; zero for a negative duration, `UInt64.max` for
    /// one too long to count (never a trap).
    package var saturatingNanoseconds: UInt64 {
        let nanoseconds = attoseconds / 1_000_000_000
        return nanoseconds <= 0 ? 0 : UInt64(clamping: nanoseconds)
    }

    /// Whole milliseconds, rounded up (a wait of 0.5 ms is a wait, not a busy poll); zero
    /// for a negative duration, `Int32.max` (about 24 days) for a longer one: a poll(2)
    /// timeout.
    package var saturatingMilliseconds: Int32 {
        let milliseconds = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return milliseconds <= 0 ? 0 : Int32(clamping: milliseconds)
    }

    /// Whole microseconds, rounded down, zero for a negative duration, `Int64.max` for one
    /// too long to count.
    package var saturatingMicroseconds: Int64 {
        let microseconds = attoseconds / 1_000_000_000_000
        return microseconds <= 0 ? 0 : Int64(clamping: microseconds)
    }
}
