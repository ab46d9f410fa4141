/// The per-connection messages of the primary-accept strategies (roundRobin,
/// leastConnections, sticky), kind `.handoff`: 16 fixed bytes each, not JSON, since they
/// run once per connection. As JSON `Control` messages, encoding and decoding them was
/// the largest share of the cluster's CPU per connection-close request (docs/design.md).
///
/// Payload, little-endian:
///
/// | bytes | field |
/// |---|---|
/// | 0 | operation: 1 connection, 2 taken, 3 declined, 4 closed, 5 stop |
/// | 1..<4 | zero |
/// | 4..<8 | listener id |
/// | 8..<16 | the handoff's number (connection, taken, declined), a count (closed), or 0 |
///
/// A connection from a PROXY protocol listener is followed by one ``HandedClient`` record
/// of 24 bytes per descriptor, in order: the header the worker skips and the client it
/// named. A reader of an earlier version refuses such a frame (its size is not 16), and a
/// runtime of that version also refuses the listener's grant, so none reads a header as
/// the client's bytes.
enum Handoff: Sendable, Equatable {
    /// Primary → worker, with one or more connections' descriptors: handoffs `number`,
    /// `number + 1`, … on `listener`, one per descriptor in order (the connections of one
    /// accept batch routed to this worker travel in one message).
    case connection(listener: Int, number: UInt64)
    /// Worker → primary: handoff `number` taken (the primary closes its copy) or declined
    /// (the primary routes it to another worker). A worker that declares its reads
    /// answers `taken` once it has read from the connection or closed it, not when it
    /// adopts it (``HandoffDecision/takenUnread``): until then the primary keeps its copy
    /// and hands it to another worker if this one dies. A primary reads either the same.
    case answer(listener: Int, number: UInt64, taken: Bool)
    /// Worker → primary: `count` connections from `listener` have closed.
    case closed(listener: Int, count: Int)
    /// Worker → primary, on a handoff link: hand over no more connections (it drains).
    /// After the answers it follows, so the primary re-routes exactly the unanswered ones.
    case stop(listener: Int)

    static let payloadSize = 16
    /// The largest: a connection message with a ``HandedClient`` record for each of the
    /// most descriptors a frame carries.
    static let maximumPayloadSize = payloadSize + Frame.maximumDescriptors * HandedClient.recordSize

    /// The listener the message is about.
    var listener: Int { fields.listener }

    private var fields: (operation: UInt8, listener: Int, value: UInt64) {
        switch self {
        case .connection(let listener, let number): (1, listener, number)
        case .answer(let listener, let number, let taken): (taken ? 2 : 3, listener, number)
        case .closed(let listener, let count): (4, listener, UInt64(clamping: count))
        case .stop(let listener): (5, listener, 0)
        }
    }

    /// The message's frame; `clients`, for a connection from a PROXY protocol listener:
    /// one per descriptor.
    func frame(descriptors: [Int32] = [], clients: [HandedClient] = []) -> Frame {
        let (operation, listener, value) = fields
        var payload = [UInt8](repeating: 0, count: Handoff.payloadSize)
        payload.withUnsafeMutableBytes { bytes in
            bytes[0] = operation
            bytes.storeBytes(of: UInt32(truncatingIfNeeded: listener).littleEndian, toByteOffset: 4, as: UInt32.self)
            bytes.storeBytes(of: value.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        for client in clients { payload += client.record }
        return Frame(kind: .handoff, payload: payload, descriptors: descriptors)
    }

    init(_ frame: Frame) throws(ClusterError) {
        let payload = frame.payload
        let records = payload.count - Handoff.payloadSize
        guard records == 0 || (payload.first == 1 && records > 0 && records % HandedClient.recordSize == 0) else {
            throw ClusterError(.malformedFrame, "a handoff message has \(payload.count) bytes, not \(Handoff.payloadSize) (and \(HandedClient.recordSize) per connection from a PROXY protocol listener)")
        }
        let (operation, reserved, listener, value) = payload.withUnsafeBytes { bytes in
            (bytes[0], UInt32(bytes[1]) | UInt32(bytes[2]) << 8 | UInt32(bytes[3]) << 16,
             Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))),
             UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
        guard reserved == 0 else {
            throw ClusterError(.malformedFrame, "a handoff message's reserved bytes are not 0")
        }
        switch operation {
        case 1: self = .connection(listener: listener, number: value)
        case 2, 3: self = .answer(listener: listener, number: value, taken: operation == 2)
        case 4: self = .closed(listener: listener, count: Int(clamping: value))
        case 5: self = .stop(listener: listener)
        default: throw ClusterError(.malformedFrame, "unknown handoff operation \(operation)")
        }
    }
}

/// A worker's decision on one connection handed to it.
enum HandoffDecision: Sendable, Equatable {
    /// Not taken: the worker closes its descriptor and the primary routes the connection
    /// to another worker.
    case declined
    /// Taken, answered now: the primary closes its copy.
    case taken
    /// Taken, answered once the worker has read from it or closed it
    /// (``AcceptedConnection/startedReading()``): a crash before that loses nothing.
    case takenUnread
}

extension Handoff {
    /// A worker's side of a `.connection` frame, whichever way it came (the channel or a
    /// handoff link): offers each connection to `take` (with its ``HandedClient``, from a
    /// PROXY protocol listener, and its handoff's number), closes those declined, and
    /// gives `answer` each answer due now, in order (a connection taken unread is
    /// answered later, by its reader). A connection the kernel dropped on the way (this
    /// worker's descriptor table is full) is declined: the primary still holds it and
    /// routes it elsewhere.
    static func answerConnections(in frame: Frame, listener: Int, first: UInt64,
                                  take: (Int32, HandedClient?, UInt64) -> HandoffDecision, answer: (Frame) -> Void) {
        let clients = HandedClient.records(in: frame.payload.dropFirst(payloadSize))
        for offset in 0..<frame.descriptors.count + frame.missingDescriptors {
            let number = first + UInt64(offset)
            let connection = offset < frame.descriptors.count ? frame.descriptors[offset] : -1
            let decision = connection < 0 ? .declined : take(connection, offset < clients.count ? clients[offset] : nil, number)
            if decision == .declined && connection >= 0 { Syscall.close(connection) }
            guard decision != .takenUnread else { continue }
            answer(Handoff.answer(listener: listener, number: number, taken: decision == .taken).frame())
        }
    }
}

/// What the primary learnt from a connection's PROXY protocol header, handed over with it:
/// the worker reads past `headerLength` bytes before the connection's handler reads, and
/// gives the handler `client`.
///
/// Record, 24 bytes, little-endian: header length u16, family u8 (0 none: the header
/// named no client, or a Unix-domain one, which does not fit; 4 IPv4; 6 IPv6), zero u8,
/// port u16, zero u16, address (16 bytes, IPv4 in the first 4).
struct HandedClient: Equatable, Sendable {
    var headerLength: Int
    var client: PeerAddress?

    static let recordSize = 24

    var record: [UInt8] {
        var record = [UInt8](repeating: 0, count: HandedClient.recordSize)
        record[0] = UInt8(truncatingIfNeeded: headerLength)
        record[1] = UInt8(truncatingIfNeeded: headerLength >> 8)
        let address: (family: UInt8, bytes: [UInt8], port: Int)? = switch client?.kind {
        case .ipv4(let bytes, let port): (4, bytes, port)
        case .ipv6(let bytes, let port): (6, bytes, port)
        case .unix, nil: nil
        }
        if let address {
            record[2] = address.family
            record[4] = UInt8(truncatingIfNeeded: address.port)
            record[5] = UInt8(truncatingIfNeeded: address.port >> 8)
            record.replaceSubrange(8..<8 + address.bytes.count, with: address.bytes)
        }
        return record
    }

    /// The records in `bytes`, the payload after a handoff's 16 bytes.
    static func records(in bytes: ArraySlice<UInt8>) -> [HandedClient] {
        stride(from: bytes.startIndex, to: bytes.endIndex - recordSize + 1, by: recordSize).map { start in
            let record = Array(bytes[start..<start + recordSize])
            let port = Int(record[4]) | Int(record[5]) << 8
            let client: PeerAddress? = switch record[2] {
            case 4: PeerAddress(kind: .ipv4(Array(record[8..<12]), port: port))
            case 6: PeerAddress(kind: .ipv6(Array(record[8..<24]), port: port))
            default: nil
            }
            return HandedClient(headerLength: Int(record[0]) | Int(record[1]) << 8, client: client)
        }
    }
}
