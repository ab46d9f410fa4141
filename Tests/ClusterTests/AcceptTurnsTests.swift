@testable import Cluster
import Testing

@Suite struct AcceptTurnsTests {
    private typealias Grant = AcceptTurns.Grant
    private let slot0 = AcceptTurns.Socket(listener: 1, slot: 0)
    private let slot1 = AcceptTurns.Socket(listener: 1, slot: 1)

    @Test func theFirstWorkerOfASlotAcceptsAtOnceAndEachSlotIsItsOwn() throws {
        var turns = AcceptTurns()
        #expect(try turns.request(1, on: slot0) == Grant(worker: 1, listener: 1))
        #expect(try turns.request(2, on: slot1) == Grant(worker: 2, listener: 1))
        #expect(turns.holder(of: slot0) == 1)
        #expect(turns.holder(of: slot1) == 2)
    }

    @Test func aReplacementWaitsUntilTheOldWorkerStopsAccepting() throws {
        var turns = AcceptTurns()
        _ = try turns.request(1, on: slot0)
        #expect(try turns.request(2, on: slot0) == nil, "the old worker still accepts: the replacement waits")
        #expect(turns.holder(of: slot0) == 1)
        #expect(turns.release(2, on: slot1) == nil, "a release elsewhere changes nothing")
        #expect(turns.release(1, on: slot0) == Grant(worker: 2, listener: 1))
        #expect(turns.holder(of: slot0) == 2)
        #expect(turns.release(1, on: slot0) == nil, "a second release by the old worker gives nothing away")
        #expect(turns.holder(of: slot0) == 2)
    }

    @Test func aWorkerThatExitsGivesUpEveryTurnAndItsPlaceInLine() throws {
        var turns = AcceptTurns()
        let other = AcceptTurns.Socket(listener: 2, slot: 0)
        _ = try turns.request(1, on: slot0)
        _ = try turns.request(1, on: other)
        _ = try turns.request(2, on: slot0)
        _ = try turns.request(3, on: slot0)
        _ = try turns.request(4, on: other)
        #expect(turns.releaseAll(2) == [], "a waiting worker leaves the line")
        #expect(turns.releaseAll(1) == [Grant(worker: 3, listener: 1), Grant(worker: 4, listener: 2)])
        #expect(turns.releaseAll(3) == [])
        #expect(turns.releaseAll(4) == [])
        #expect(turns.isIdle)
    }

    @Test func askingTwiceIsRefused() throws {
        var turns = AcceptTurns()
        _ = try turns.request(1, on: slot0)
        _ = try turns.request(2, on: slot0)
        #expect(throws: AcceptTurns.Refusal.alreadyAsked) { try turns.request(1, on: slot0) }
        #expect(throws: AcceptTurns.Refusal.alreadyAsked) { try turns.request(2, on: slot0) }
    }

    @Test func anInheritedListenerWaitsForThePreviousPrimarysWorkers() throws {
        var turns = AcceptTurns()
        turns.inherit(listener: 1)
        let other = AcceptTurns.Socket(listener: 2, slot: 0)
        #expect(try turns.request(1, on: slot0) == nil)
        #expect(try turns.request(2, on: slot1) == nil)
        #expect(try turns.request(3, on: other) == Grant(worker: 3, listener: 2), "a listener of its own is not held")
        #expect(turns.release(1, on: slot0) == nil, "a worker that gives up before its turn is skipped")
        #expect(turns.predecessorReleased() == [Grant(worker: 2, listener: 1)])
        #expect(try turns.request(4, on: slot0) == Grant(worker: 4, listener: 1))
    }
}
