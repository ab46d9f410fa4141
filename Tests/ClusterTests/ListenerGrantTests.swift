@testable import Cluster
import Testing

@Suite struct ListenerGrantTests {
    @Test func aListenReplyRoundTripsAsJSON() throws {
        let grant = ListenerGrant(id: 3, distribution: .leastConnections, bound: try ListenAddress(parsing: "tcp://127.0.0.1:8080"))
        #expect(grant.payload.first == UInt8(ascii: "{"))
        let read = try ListenerGrant(payload: grant.payload)
        #expect(read == grant)
        let parsed = try read.parsed()
        #expect(parsed.distribution == .leastConnections)
        #expect(parsed.bound == (try ListenAddress(parsing: "tcp://127.0.0.1:8080")))
        #expect(parsed.address == nil)
    }

    @Test func aGrantCarriesTheListenersProxyProtocol() throws {
        let address = ListenAddress.tcp(port: 0, proxyProtocol: .v2)
        let grant = ListenerGrant(id: 1, distribution: .sticky, bound: .tcp(port: 41000, proxyProtocol: .v2), address: address)
        let read = try ListenerGrant.list(from: ListenerGrant.environmentValue([grant]), variable: .listeners)
        let listener = try Listener(inherited: #require(read.first))
        #expect(listener.proxyProtocol == .v2)
        #expect(listener.address == address)
        #expect(try Listener(inherited: ListenerGrant(id: 1, distribution: .shared, bound: .tcp(port: 1), address: .tcp(port: 1))).proxyProtocol == nil)
    }

    @Test func inheritedListenersRoundTripThroughTheEnvironment() throws {
        let grants = [
            ListenerGrant(id: 0, distribution: .shared, bound: try ListenAddress(parsing: "tcp://0.0.0.0:41000"),
                          address: try ListenAddress(parsing: "tcp://0.0.0.0:0"), descriptor: 4),
            ListenerGrant(id: 1, distribution: .roundRobin, bound: try ListenAddress(parsing: "unix:/tmp/a.sock"),
                          address: try ListenAddress(parsing: "unix:/tmp/a.sock")),
        ]
        let value = ListenerGrant.environmentValue(grants)
        #expect(try ListenerGrant.list(from: value, variable: .listeners) == grants)
        let listeners = try grants.map { grant throws(ClusterError) in try Listener(inherited: grant) }
        #expect(listeners.map(\.descriptor) == [4, nil])
        #expect(listeners[0].address == (try ListenAddress(parsing: "tcp://0.0.0.0:0")))
        #expect(listeners[0].boundAddress == (try ListenAddress(parsing: "tcp://0.0.0.0:41000")))
        #expect(ListenerGrant.environmentValue([]) == "[]")
        #expect(try ListenerGrant.list(from: "", variable: .listeners).isEmpty)
    }

    /// A primary upgraded in place, or workers of a binary replaced on disk, read what a
    /// process of the earlier version wrote.
    @Test func theTabSeparatedFormsOfEarlierVersionsAreRead() throws {
        let reply = try ListenerGrant(payload: Array("2\tsticky\ttcp://127.0.0.1:9000".utf8))
        #expect(reply.id == 2)
        #expect(try reply.parsed().distribution == .sticky)

        let inherited = try ListenerGrant.list(from: "4\t0\tshared\ttcp://0.0.0.0:41000\ttcp://0.0.0.0:0\n-1\t1\troundRobin\ttcp://0.0.0.0:42000\ttcp://0.0.0.0:42000",
                                               variable: .listeners)
        #expect(inherited.map(\.id) == [0, 1])
        #expect(inherited.map(\.descriptor) == [4, nil])
        #expect(inherited.map(\.slot) == [nil, nil])

        let upgrade = try ListenerGrant.list(from: "3\t-1\treusePort\ttcp://0.0.0.0:41000\ttcp://0.0.0.0:0\n4\t1\treusePort\ttcp://0.0.0.0:41000\ttcp://0.0.0.0:0",
                                             variable: .upgradeListeners)
        #expect(upgrade.map(\.descriptor) == [3, 4])
        #expect(upgrade.map(\.slot) == [nil, 1])
    }

    @Test func aGrantThatCannotBeReadSaysWhichAndWhy() throws {
        #expect(throws: ClusterError.self) { try ListenerGrant(payload: Array("nonsense".utf8)) }
        #expect(throws: ClusterError.self) { try ListenerGrant(payload: Array("{\"id\":1}".utf8)) }
        do {
            _ = try ListenerGrant.list(from: "[{\"id\":1}]", variable: .listeners)
            Issue.record("a grant without its fields was read")
        } catch {
            #expect("\(error)".contains("CLUSTER_LISTENERS"))
        }
        do {
            _ = try ListenerGrant.list(from: "4\tshared", variable: .upgradeListeners)
            Issue.record("a short line was read")
        } catch {
            #expect("\(error)".contains("CLUSTER_UPGRADE_LISTENERS has a line '4\tshared'"))
        }
        var negative = ListenerGrant(id: 1, distribution: .shared, bound: try ListenAddress(parsing: "tcp://0.0.0.0:1"))
        negative.descriptor = -5
        #expect(throws: ClusterError.self) { try negative.parsed() }
        var unknown = negative
        unknown.descriptor = 4
        unknown.distribution = "fastest"
        #expect(throws: ClusterError.self) { try unknown.parsed() }
    }
}
