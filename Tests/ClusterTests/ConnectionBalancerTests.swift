@testable import Cluster
import Testing

@Suite struct ConnectionBalancerTests {
    private let start = ContinuousClock.now

    private func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    @Test func aWorkerHoldingEverythingShedsItsExcessAfterThePatience() {
        var balancer = ConnectionBalancer()
        let uneven = [(worker: 1, connections: 50), (worker: 2, connections: 0)]
        #expect(balancer.sample(uneven, at: at(0)) == nil)
        #expect(balancer.sample(uneven, at: at(1)) == nil)
        let decision = balancer.sample(uneven, at: at(2))
        #expect(decision?.worker == 1)
        #expect(decision?.fraction == 0.5)
        // Then it waits for the reconnections to settle.
        #expect(balancer.sample(uneven, at: at(3)) == nil)
        #expect(balancer.sample(uneven, at: at(5)) == nil)
        #expect(balancer.sample(uneven, at: at(7))?.worker == 1)
    }

    @Test func evenOrSmallOrBrieflyUnevenLoadsAreLeftAlone() {
        var balancer = ConnectionBalancer()
        for second in 0..<10 {
            #expect(balancer.sample([(1, 26), (2, 24)], at: at(second)) == nil, "within 1.5x of the mean")
            #expect(balancer.sample([(1, 3), (2, 0)], at: at(second)) == nil, "too few connections to matter")
        }
        var flapping = ConnectionBalancer()
        for second in 0..<10 {
            let open = second.isMultiple(of: 2) ? [(worker: 1, connections: 40), (worker: 2, connections: 10)] : [(1, 25), (2, 25)]
            #expect(flapping.sample(open, at: at(second)) == nil, "never uneven for 2 s in a row")
        }
        var alone = ConnectionBalancer()
        #expect(alone.sample([(1, 50)], at: at(0)) == nil)
        #expect(alone.sample([(1, 50)], at: at(5)) == nil, "one worker has nobody to give to")
    }

    @Test func theBusiestOfSeveralShedsDownToTheMean() {
        var balancer = ConnectionBalancer()
        let open = [(worker: 1, connections: 10), (worker: 2, connections: 70), (worker: 3, connections: 10), (worker: 4, connections: 10)]
        _ = balancer.sample(open, at: at(0))
        let decision = balancer.sample(open, at: at(2))
        #expect(decision?.worker == 2)
        // Mean 25: 45 of its 70 go.
        #expect(abs((decision?.fraction ?? 0) - 45.0 / 70.0) < 1e-9)
    }
}
