@testable import Cluster
import Testing

@Suite struct RouterTests {
    private func router(_ distribution: Distribution, workers: Int) -> Router {
        var router = Router(distribution)
        for id in 1...workers { router.add(worker: id, slot: id - 1) }
        return router
    }

    @Test func roundRobinTakesTurnsAndSkipsWorkersThatDecline() {
        var router = router(.roundRobin, workers: 3)
        #expect((0..<6).map { _ in router.route(key: [])! } == [1, 2, 3, 1, 2, 3])
        #expect(router.route(key: [], excluding: [1]) == 2)
        router.remove(worker: 3)
        #expect((0..<3).map { _ in router.route(key: [])! } == [1, 2, 1])
        #expect(router.route(key: [], excluding: [1, 2]) == nil)
    }

    @Test func leastConnectionsPicksTheLeastBusyWorker() {
        var router = router(.leastConnections, workers: 3)
        router.opened(on: 1)
        router.opened(on: 1)
        router.opened(on: 2)
        #expect(router.route(key: []) == 3)
        router.opened(on: 3)
        router.opened(on: 3)
        #expect(router.route(key: []) == 2)
        router.closed(on: 1, count: 2)
        #expect(router.route(key: []) == 1)
    }

    @Test func stickyKeepsEachClientAndMovesOnlyTheClientsOfAWorkerThatLeaves() {
        var router = router(.sticky, workers: 4)
        let clients = (1...200).map { [127, 0, 0, UInt8($0)] as [UInt8] }
        let before = clients.map { router.route(key: $0)! }
        #expect(clients.map { router.route(key: $0)! } == before, "the same client reaches the same worker")
        #expect(Set(before).count == 4, "every worker has clients")

        router.remove(worker: 2)
        let after = clients.map { router.route(key: $0)! }
        for (index, worker) in before.enumerated() {
            if worker != 2 { #expect(after[index] == worker, "a client of a remaining worker moved") }
        }
        // A replacement in the same slot gets the same clients back.
        router.add(worker: 5, slot: 1)
        let back = clients.map { router.route(key: $0)! }
        #expect(back == before.map { $0 == 2 ? 5 : $0 })
    }

    @Test func distributionsParseByNameAndRejectOthersClearly() throws {
        #expect(try Distribution.all.map { try Distribution(parsing: $0.description) } == Distribution.all)
        #expect { try Distribution(parsing: "random") } throws: {
            ($0 as? ClusterError)?.context == "'random' is not a distribution; use one of shared, reusePort, roundRobin, leastConnections, sticky"
        }
    }
}
