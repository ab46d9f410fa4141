/// How a listener is passed on, in one form wherever it goes: the primary's reply to a
/// worker's `listen`, the listeners a worker inherits (`CLUSTER_LISTENERS`), and the ones a
/// new primary takes over in a hot upgrade (`CLUSTER_UPGRADE_LISTENERS`). JSON, through
/// the message codec; a list is a JSON array.
///
/// The reader checks every field (a distribution and addresses it can parse, a descriptor
/// the sender placed, a slot that is a slot) and throws an error that names the field; it
/// also reads the tab-separated lines of earlier versions, so a primary upgraded in place
/// and the workers of a binary replaced on disk understand the process that started them.
struct ListenerGrant: Codable, Sendable, Equatable {
    /// The granting primary's number for the listener.
    var id: Int
    /// The strategy, as ``Distribution`` prints it.
    var distribution: String
    /// The address bound (with the port chosen for 0), with its `?proxy=` setting: a
    /// runtime that does not know the PROXY protocol refuses such a grant rather than
    /// serve its connections' headers as the clients' bytes.
    var bound: String
    /// The address asked for, by which `listen` finds the listener; nil in a `listen`
    /// reply, which answers the address asked.
    var address: String?
    /// The descriptor in the receiving process (inherited ones), nil when none comes with
    /// the grant (the primary accepts, or it travels in the frame).
    var descriptor: Int32?
    /// Hot upgrade only: the reusePort slot whose socket `descriptor` is; nil for the
    /// listener's own socket.
    var slot: Int?

    init(id: Int, distribution: Distribution, bound: ListenAddress, address: ListenAddress? = nil,
         descriptor: Int32? = nil, slot: Int? = nil) {
        self.id = id
        self.distribution = distribution.description
        self.bound = bound.description
        self.address = address?.description
        self.descriptor = descriptor
        self.slot = slot
    }

    /// The fields parsed; throws for any the runtime cannot read.
    func parsed() throws(ClusterError) -> (distribution: Distribution, bound: ListenAddress, address: ListenAddress?) {
        guard (descriptor ?? 0) >= 0, (slot ?? 0) >= 0 else {
            throw ClusterError(.malformedFrame, "a listener grant has a negative descriptor or slot: \(self)")
        }
        return (try Distribution(parsing: distribution), try ListenAddress(parsing: bound),
                try address.map { text throws(ClusterError) in try ListenAddress(parsing: text) })
    }

    /// The bytes of a `listen` reply.
    var payload: [UInt8] { (try? MessageCodec.encode(self)) ?? [] }

    /// A list, as an environment variable holds it.
    static func environmentValue(_ grants: [ListenerGrant]) -> String {
        String(decoding: (try? MessageCodec.encode(grants)) ?? Array("[]".utf8), as: UTF8.self)
    }

    /// A `listen` reply: JSON, or an earlier version's `id TAB distribution TAB bound`.
    init(payload: [UInt8]) throws(ClusterError) {
        if payload.first == UInt8(ascii: "{") {
            self = try MessageCodec.decode(ListenerGrant.self, from: payload)
            return
        }
        let text = String(decoding: payload, as: UTF8.self)
        let fields = text.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 3, let id = Int(fields[0]) else {
            throw ClusterError(.malformedFrame, "the primary granted a listener as '\(text)', which is neither a JSON grant nor 'id TAB distribution TAB address'")
        }
        self.init(id: id, distribution: fields[1], bound: fields[2])
    }

    /// The environment variables that hold a list of grants.
    enum Variable: String {
        /// A worker's inherited listeners; an earlier version's lines are
        /// `fd TAB id TAB distribution TAB bound TAB address` (fd -1: none).
        case listeners = "CLUSTER_LISTENERS"
        /// A hot upgrade's sockets; an earlier version's lines are
        /// `fd TAB slot TAB distribution TAB bound TAB address` (slot -1: the listener's own).
        case upgradeListeners = "CLUSTER_UPGRADE_LISTENERS"
    }

    /// The list in `variable`: a JSON array, or an earlier version's lines.
    static func list(from text: String, variable: Variable) throws(ClusterError) -> [ListenerGrant] {
        if text.first == "[" {
            do throws(ClusterError) {
                return try MessageCodec.decode([ListenerGrant].self, from: Array(text.utf8))
            } catch {
                throw ClusterError(.invalidConfiguration, "\(variable.rawValue) is not a list of listener grants this runtime can read (\(error)); a primary and the processes it starts must run compatible versions of swift-cluster")
            }
        }
        return try text.split(separator: "\n").map { line throws(ClusterError) in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 5, let fd = Int32(fields[0]), let second = Int(fields[1]) else {
                throw ClusterError(.invalidConfiguration, "\(variable.rawValue) has a line '\(line)' this runtime cannot read; a primary and the processes it starts must run compatible versions of swift-cluster")
            }
            // An upgrade's lines carry no id: the new primary numbers its listeners itself.
            let upgrade = variable == .upgradeListeners
            var grant = ListenerGrant(id: upgrade ? 0 : second, distribution: fields[2], bound: fields[3], address: fields[4],
                                      descriptor: fd >= 0 ? fd : nil)
            if upgrade && second >= 0 { grant.slot = second }
            return grant
        }
    }

    private init(id: Int, distribution: String, bound: String, address: String? = nil, descriptor: Int32? = nil) {
        self.id = id
        self.distribution = distribution
        self.bound = bound
        self.address = address
        self.descriptor = descriptor
    }
}
