import Foundation
import Synchronization
import Testing

/// Hosts on one machine: each a network namespace of its own, joined to this one by a veth
/// pair with an address on each end, in 198.18.0.0/15 (set aside for network tests, RFC
/// 2544). Names carry this process's pid and a counter, and each set of hosts takes a /28
/// no interface here uses yet, so parallel runs do not collide. `remove()` deletes them.
final class NetworkHosts: Sendable {
    struct Host: Sendable {
        /// The namespace, for `ip netns exec`.
        let namespace: String
        /// The address inside the namespace, where its servers listen.
        let address: String
        /// The veth end in this namespace (deleting it deletes the pair), and its address.
        let link: String
        let linkAddress: String
        /// The veth end in the host's namespace.
        let peer: String
    }

    let hosts: [Host]
    private static let counter = Atomic(0)

    /// Why hosts cannot be made here, or nil when they can: root, `ip`, and a namespace
    /// actually created and deleted (a container may refuse).
    static let unavailable: String? = {
        guard getuid() == 0 else { return "network namespaces need root" }
        guard let ip = which("ip") else { return "ip (iproute2) is not on PATH" }
        let probe = "swift-cluster-probe-\(getpid())"
        let created = try? runToEnd(ip, ["netns", "add", probe], timeout: .seconds(10))
        guard let created, created.code == 0 else {
            return "ip netns add failed (\(created?.output.trimmingCharacters(in: .whitespacesAndNewlines) ?? "it did not finish")): this machine does not allow network namespaces"
        }
        _ = try? runToEnd(ip, ["netns", "del", probe], timeout: .seconds(10))
        return nil
    }()

    /// Makes `count` hosts (at most 3), after deleting any a test process that no longer
    /// runs left behind. On failure, whatever was made is deleted.
    init(count: Int) throws {
        precondition((1...3).contains(count), "a /28 holds three /30 pairs")
        NetworkHosts.removeAbandoned()
        let run = NetworkHosts.counter.wrappingAdd(1, ordering: .relaxed).oldValue
        let base = try NetworkHosts.freeBlock(seed: Int(getpid()) &* 31 &+ run)
        let prefix = "lb\(getpid())x\(run)" // at most 15 characters with a suffix: a link name's limit
        hosts = (0..<count).map { index in
            Host(namespace: "\(prefix)h\(index + 1)", address: NetworkHosts.address(base + 4 * index + 2),
                 link: "\(prefix)v\(index + 1)", linkAddress: NetworkHosts.address(base + 4 * index + 1), peer: "\(prefix)p\(index + 1)")
        }
        do {
            for host in hosts {
                try NetworkHosts.ip("netns", "add", host.namespace)
                try NetworkHosts.ip("link", "add", host.link, "type", "veth", "peer", "name", host.peer, "netns", host.namespace)
                try NetworkHosts.ip("addr", "add", "\(host.linkAddress)/30", "dev", host.link)
                try NetworkHosts.ip("link", "set", host.link, "up")
                try NetworkHosts.ip("-n", host.namespace, "addr", "add", "\(host.address)/30", "dev", host.peer)
                try NetworkHosts.ip("-n", host.namespace, "link", "set", host.peer, "up")
                try NetworkHosts.ip("-n", host.namespace, "link", "set", "lo", "up")
            }
        } catch {
            remove()
            throw error
        }
    }

    /// Deletes every veth pair and namespace (each step tried even when another fails).
    /// Stop the processes in them first: a namespace lives on, nameless, while one runs.
    func remove() {
        for host in hosts {
            try? NetworkHosts.ip("link", "del", host.link)
            try? NetworkHosts.ip("netns", "del", host.namespace)
        }
    }

    /// Deletes the namespaces and veth pairs named after a pid no process has now (a run
    /// killed before its `remove()`): `lb<pid>x<run>h<n>` and `lb<pid>x<run>v<n>`.
    private static func removeAbandoned() {
        let namespaces = (try? runToEnd(which("ip") ?? "/usr/sbin/ip", ["netns", "list"], timeout: .seconds(10)).output) ?? ""
        for line in namespaces.split(separator: "\n") {
            let name = String(line.split(separator: " ")[0])
            guard name.hasPrefix("lb"), let x = name.firstIndex(of: "x"), let h = name.lastIndex(of: "h"),
                  let pid = Int32(name[name.index(name.startIndex, offsetBy: 2)..<x]), kill(pid, 0) != 0, errno == ESRCH else { continue }
            var link = name
            link.replaceSubrange(h...h, with: "v")
            try? ip("link", "del", link)
            try? ip("netns", "del", name)
        }
    }

    /// How to run a program on `host`: `ip netns exec NAME`, which execs it (its pid is the
    /// program's).
    func launcher(_ host: Host) -> [String] {
        [which("ip") ?? "/usr/sbin/ip", "netns", "exec", host.namespace]
    }

    /// Runs `ip` with `arguments`; throws with its output when it fails.
    private static func ip(_ arguments: String...) throws {
        let (code, output) = try runToEnd(which("ip") ?? "/usr/sbin/ip", arguments, timeout: .seconds(10))
        guard code == 0 else { throw TestFailure.unexpected("ip \(arguments.joined(separator: " ")): exit \(code): \(output)") }
    }

    /// The first of a /28 in 198.18.0.0/15 with no address of this namespace in it, from a
    /// slot picked by `seed` (64 tries).
    private static func freeBlock(seed: Int) throws -> Int {
        let (_, listing) = try runToEnd(which("ip") ?? "/usr/sbin/ip", ["-o", "-4", "addr", "show"], timeout: .seconds(10))
        let used = Set(listing.split(separator: "\n").compactMap { line -> Int? in
            let words = line.split(separator: " ")
            guard let inet = words.firstIndex(of: "inet"), inet + 1 < words.count else { return nil }
            return number(String(words[inet + 1].split(separator: "/")[0])).map { $0 / 16 }
        })
        let slots = 1 << 13 // /28s in a /15
        let first = 198 << 24 | 18 << 16
        for attempt in 0..<64 {
            let block = first + ((abs(seed) + attempt) % slots) * 16
            if !used.contains(block / 16) { return block }
        }
        throw TestFailure.unexpected("no free /28 in 198.18.0.0/15 after 64 tries")
    }

    private static func address(_ value: Int) -> String {
        "\(value >> 24 & 255).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)"
    }

    private static func number(_ address: String) -> Int? {
        let parts = address.split(separator: ".").compactMap { Int($0) }
        return parts.count == 4 ? parts.reduce(0) { $0 << 8 | $1 } : nil
    }
}
