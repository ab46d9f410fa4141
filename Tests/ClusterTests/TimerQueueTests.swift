@testable import Cluster
import Testing

@Suite struct TimerQueueTests {
    @Test func timersFireInDeadlineOrderOnlyWhenDue() {
        var timers = TimerQueue<String>()
        _ = timers.insert(deadline: 30, "c")
        _ = timers.insert(deadline: 10, "a")
        _ = timers.insert(deadline: 20, "b")
        #expect(timers.soonest() == 10)
        #expect(timers.popExpired(now: 5) == [])
        #expect(timers.popExpired(now: 20) == ["a", "b"])
        #expect(timers.soonest() == 30)
        #expect(timers.popExpired(now: 100) == ["c"])
        #expect(timers.soonest() == nil)
    }

    @Test func aCancelledTimerNeverFiresAndLeavesTheSoonestToTheNext() {
        var timers = TimerQueue<String>()
        let first = timers.insert(deadline: 10, "first")
        _ = timers.insert(deadline: 20, "second")
        timers.cancel(first)
        timers.cancel(first) // twice is harmless
        #expect(timers.count == 1)
        #expect(timers.soonest() == 20)
        #expect(timers.popExpired(now: 50) == ["second"])
    }

    @Test func manyArmedAndCancelledTimersKeepTheQueueSmallAndOrdered() {
        var timers = TimerQueue<Int>()
        var kept: [UInt64: Int] = [:]
        for index in 0..<10_000 {
            let deadline = UInt64((index * 7919) % 10_007)
            let id = timers.insert(deadline: deadline, index)
            if index % 100 == 0 { kept[deadline] = index } else { timers.cancel(id) }
        }
        #expect(timers.count == kept.count)
        let fired = timers.popExpired(now: .max)
        #expect(fired == kept.keys.sorted().map { kept[$0]! })
    }
}
