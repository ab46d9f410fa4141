#if canImport(Glibc)
import Glibc
#endif

/// A PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2): what a
/// load balancer says about the connection it accepted, before the client's bytes.
///
/// ``parse(_:expecting:)`` reads it from the first bytes of a connection, and never traps: any
/// input is a header, a request for more bytes, or a reason to close.
public struct ProxyHeader: Hashable, Sendable {
    /// The client the balancer accepted, or nil when the header names none: a v2 `LOCAL`
    /// command (the balancer's own health check), a v1 `UNKNOWN` or a v2 `UNSPEC` family.
    /// Then the socket's own peer stands for the client.
    public let source: PeerAddress?
    /// The address the client connected to, nil as ``source`` is.
    public let destination: PeerAddress?
    /// The header's length in bytes: the client's own bytes follow it.
    public let length: Int

    /// The most bytes a v2 header may have, signature and TLVs included: 16 fixed bytes
    /// and 512 of addresses and TLVs (a Unix-domain pair takes 216 of them, an IPv6 pair
    /// 36). HAProxy's headers with its usual TLVs (ALPN, authority, unique id, SSL
    /// summary) fit; a longer one is refused.
    public static let maximumLength = 16 + 512

    /// The most bytes a v1 header may have, CRLF included (the specification's bound).
    public static let maximumTextLength = 107

    /// What the first bytes of a connection hold.
    public enum Parsed: Hashable, Sendable {
        /// A header too short yet: read more, then parse again from the start.
        case needMore
        /// A complete header; the client's bytes start at its ``ProxyHeader/length``.
        case header(ProxyHeader)
        /// Not a header of the expected version: the connection should be closed.
        case invalid(String)
    }

    init(source: PeerAddress?, destination: PeerAddress?, length: Int) {
        self.source = source
        self.destination = destination
        self.length = length
    }

    /// Parses the header at the start of `bytes`, of the version `expected`, or of either
    /// when nil.
    public static func parse(_ bytes: some Collection<UInt8>, expecting expected: ProxyProtocol? = nil) -> Parsed {
        let bytes = Array(bytes)
        guard let first = bytes.first else { return .needMore }
        switch (first, expected?.version) {
        case (UInt8(ascii: "P"), .v1), (UInt8(ascii: "P"), nil): return TextHeader.parse(bytes)
        case (0x0D, .v2), (0x0D, nil): return BinaryHeader.parse(bytes)
        default:
            return .invalid("the connection does not start with a PROXY protocol \(expected.map { "\($0) " } ?? "")header")
        }
    }
}

/// Version 1: `PROXY TCP4|TCP6 SOURCE DESTINATION SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
enum TextHeader {
    static let prefix = Array("PROXY ".utf8)

    static func parse(_ bytes: [UInt8]) -> ProxyHeader.Parsed {
        let start = bytes.prefix(prefix.count)
        guard start.elementsEqual(prefix.prefix(start.count)) else { return .invalid("the v1 header does not start with 'PROXY '") }
        let window = bytes.prefix(ProxyHeader.maximumTextLength)
        guard let cr = window.firstIndex(of: 0x0D) else {
            if window.contains(0x0A) { return .invalid("the v1 header has a bare LF") }
            return window.count < ProxyHeader.maximumTextLength ? .needMore : .invalid("the v1 header has no CRLF within 107 bytes")
        }
        guard cr + 1 < window.count else { return cr + 1 < ProxyHeader.maximumTextLength ? .needMore : .invalid("the v1 header has no CRLF within 107 bytes") }
        guard !window[..<cr].contains(0x0A), window[cr + 1] == 0x0A else { return .invalid("the v1 header has a CR without LF, or a bare LF") }
        let length = cr + 2
        let fields = bytes[prefix.count..<cr].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        let proto = fields.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        switch proto {
        case "UNKNOWN":
            return .header(ProxyHeader(source: nil, destination: nil, length: length))
        case "TCP4", "TCP6":
            guard fields.count == 5 else { return .invalid("the v1 \(proto) header has \(fields.count - 1) fields, not 4") }
            let family = proto == "TCP4" ? AF_INET : AF_INET6
            guard let source = address(fields[1], port: fields[3], family: family),
                  let destination = address(fields[2], port: fields[4], family: family) else {
                return .invalid("the v1 \(proto) header has an address or port that is not one")
            }
            return .header(ProxyHeader(source: source, destination: destination, length: length))
        default:
            return .invalid("the v1 header names protocol '\(proto.prefix(16))', not TCP4, TCP6 or UNKNOWN")
        }
    }

    private static func address(_ text: ArraySlice<UInt8>, port: ArraySlice<UInt8>, family: Int32) -> PeerAddress? {
        guard (1...5).contains(port.count), port.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let port = Int(String(decoding: port, as: UTF8.self)), port <= 65535,
              (1...45).contains(text.count) else { return nil }
        var raw = [UInt8](repeating: 0, count: 16)
        let parsed = String(decoding: text, as: UTF8.self).withCString { inet_pton(family, $0, &raw) }
        guard parsed == 1 else { return nil }
        return PeerAddress(kind: family == AF_INET ? .ipv4(Array(raw[0..<4]), port: port) : .ipv6(raw, port: port))
    }
}

/// Version 2: the signature, version and command, family and transport, a big-endian
/// length, then the addresses and TLVs (which are skipped).
enum BinaryHeader {
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    static func parse(_ bytes: [UInt8]) -> ProxyHeader.Parsed {
        let start = bytes.prefix(signature.count)
        guard start.elementsEqual(signature.prefix(start.count)) else { return .invalid("the v2 header's signature is wrong") }
        guard bytes.count >= 16 else { return .needMore }
        let version = bytes[12] >> 4, command = bytes[12] & 0x0F
        let family = bytes[13] >> 4, transport = bytes[13] & 0x0F
        guard version == 2 else { return .invalid("the v2 header says version \(version)") }
        guard command <= 1 else { return .invalid("the v2 header has command \(command), neither LOCAL nor PROXY") }
        guard family <= 3, transport <= 2 else { return .invalid("the v2 header has family \(family), transport \(transport)") }
        let length = 16 + (Int(bytes[14]) << 8 | Int(bytes[15]))
        guard length <= ProxyHeader.maximumLength else {
            return .invalid("the v2 header is \(length) bytes, more than \(ProxyHeader.maximumLength)")
        }
        guard bytes.count >= length else { return .needMore }
        // LOCAL: the balancer speaks for itself; the addresses, if any, are to be ignored.
        guard command == 1 else { return .header(ProxyHeader(source: nil, destination: nil, length: length)) }
        let body = bytes[16..<length]
        func port(_ offset: Int) -> Int { Int(body[body.startIndex + offset]) << 8 | Int(body[body.startIndex + offset + 1]) }
        func slice(_ range: Range<Int>) -> [UInt8] { Array(body[(body.startIndex + range.lowerBound)..<(body.startIndex + range.upperBound)]) }
        switch family {
        case 1:
            guard body.count >= 12 else { return .invalid("the v2 INET header has \(body.count) bytes of addresses, not 12") }
            return .header(ProxyHeader(source: PeerAddress(kind: .ipv4(slice(0..<4), port: port(8))),
                                       destination: PeerAddress(kind: .ipv4(slice(4..<8), port: port(10))), length: length))
        case 2:
            guard body.count >= 36 else { return .invalid("the v2 INET6 header has \(body.count) bytes of addresses, not 36") }
            return .header(ProxyHeader(source: PeerAddress(kind: .ipv6(slice(0..<16), port: port(32))),
                                       destination: PeerAddress(kind: .ipv6(slice(16..<32), port: port(34))), length: length))
        case 3:
            guard body.count >= 216 else { return .invalid("the v2 UNIX header has \(body.count) bytes of addresses, not 216") }
            func path(_ range: Range<Int>) -> PeerAddress {
                PeerAddress(kind: .unix(path: String(decoding: slice(range).prefix { $0 != 0 }, as: UTF8.self)))
            }
            return .header(ProxyHeader(source: path(0..<108), destination: path(108..<216), length: length))
        default:
            // UNSPEC: the balancer could not say; the socket's peer stands.
            return .header(ProxyHeader(source: nil, destination: nil, length: length))
        }
    }
}
