@testable import Cluster
import Testing

/// Headers as HAProxy writes them (`send-proxy`, `send-proxy-v2`), byte for byte, and the
/// examples of its `doc/proxy-protocol.txt`.
@Suite struct ProxyHeaderTests {
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// A v2 header: PROXY (0x21) or LOCAL (0x20), `family` (0x11 TCP over IPv4...), body.
    static func binary(command: UInt8 = 0x21, family: UInt8, _ body: [UInt8]) -> [UInt8] {
        signature + [command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    static func header(_ bytes: [UInt8], _ expected: ProxyProtocol? = nil) -> ProxyHeader? {
        if case .header(let header) = ProxyHeader.parse(bytes, expecting: expected) { header } else { nil }
    }

    static func isInvalid(_ bytes: [UInt8], _ expected: ProxyProtocol? = nil) -> Bool {
        if case .invalid = ProxyHeader.parse(bytes, expecting: expected) { true } else { false }
    }

    @Test func aTextTCP4HeaderNamesTheClientAndEndsAtItsCRLF() throws {
        let text = Array("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8000\r\nGET / HTTP/1.1\r\n".utf8)
        let header = try #require(Self.header(text, .v1))
        #expect(header.length == 46)
        #expect(header.source?.description == "192.0.2.7:56324")
        #expect(header.source?.ipAddress == "192.0.2.7")
        #expect(header.source?.port == 56324)
        #expect(header.destination?.description == "198.51.100.1:8000")
        #expect(header.source?.routingKey == [192, 0, 2, 7])
    }

    @Test func theLongestTextHeadersOfTheSpecificationAreAccepted() throws {
        let tcp4 = Array("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".utf8)
        #expect(Self.header(tcp4)?.length == 56)
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let tcp6 = Array("PROXY TCP6 \(f) \(f) 65535 65535\r\n".utf8)
        #expect(tcp6.count == 104)
        #expect(Self.header(tcp6)?.source?.description == "[\(f)]:65535")
        let unknown = Array("PROXY UNKNOWN \(f) \(f) 65535 65535\r\n".utf8)
        #expect(unknown.count == 107)
        let header = try #require(Self.header(unknown))
        #expect(header.length == 107 && header.source == nil && header.destination == nil)
        #expect(Self.header(Array("PROXY UNKNOWN\r\n".utf8))?.length == 15)
    }

    @Test func aTextHeaderWithoutCRLFWithin107BytesIsRefused() {
        let long = Array("PROXY UNKNOWN ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 92)
        #expect(long.count == 106)
        #expect(ProxyHeader.parse(long) == .needMore)
        #expect(Self.isInvalid(long + [0x0D]))
        #expect(Self.isInvalid(long + [UInt8(ascii: "a")]))
    }

    @Test func malformedTextHeadersAreRefused() {
        for text in [
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n", // a port missing
            "PROXY TCP4 192.0.2.7  198.51.100.1 56324 80\r\n", // two spaces
            "PROXY TCP4 2001:db8::1 198.51.100.1 56324 80\r\n", // IPv6 under TCP4
            "PROXY TCP6 192.0.2.7 198.51.100.1 56324 80\r\n", // IPv4 under TCP6
            "PROXY TCP4 192.0.2.7 198.51.100.1 65536 80\r\n", // port out of range
            "PROXY TCP4 192.0.2.7 198.51.100.1 -1 80\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 +1 80\r\n",
            "PROXY TCP4 192.0.2.256 198.51.100.1 1 80\r\n",
            "PROXY UDP4 192.0.2.7 198.51.100.1 1 80\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 1 80\n", // bare LF
            "PROXY TCP4 192.0.2.7 198.51.100.1 1 80\rX",
            "PROXY\r\n",
            "proxy TCP4 192.0.2.7 198.51.100.1 1 80\r\n",
            "GET / HTTP/1.1\r\n",
        ] {
            #expect(Self.isInvalid(Array(text.utf8)), "\(text.debugDescription)")
        }
    }

    @Test func aBinaryTCP4HeaderAsHAProxySendsItNamesTheClient() throws {
        // send-proxy-v2 for 192.0.2.7:56324 -> 198.51.100.1:8000, then the request.
        let bytes = Self.binary(family: 0x11, [192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x1F, 0x40]) + Array("GET /".utf8)
        let header = try #require(Self.header(bytes, .v2))
        #expect(header.length == 28)
        #expect(header.source?.description == "192.0.2.7:56324")
        #expect(header.destination?.description == "198.51.100.1:8000")
    }

    @Test func aBinaryTCP6HeaderWithTLVsSkipsThem() throws {
        let source: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
        let destination: [UInt8] = [UInt8](repeating: 0, count: 15) + [1]
        let alpn: [UInt8] = [0x01, 0x00, 0x02] + Array("h2".utf8) // PP2_TYPE_ALPN
        let uniqueID: [UInt8] = [0x05, 0x00, 0x04, 1, 2, 3, 4] // PP2_TYPE_UNIQUE_ID
        let bytes = Self.binary(family: 0x21, source + destination + [0x01, 0xBB, 0x00, 0x50] + alpn + uniqueID)
        let header = try #require(Self.header(bytes))
        #expect(header.length == 16 + 36 + 5 + 7)
        #expect(header.source?.description == "[2001:db8::1]:443")
        #expect(header.destination?.description == "[::1]:80")
    }

    @Test func aBinaryUnixHeaderNamesBothPaths() throws {
        func path(_ text: String) -> [UInt8] { Array(text.utf8) + [UInt8](repeating: 0, count: 108 - text.utf8.count) }
        let header = try #require(Self.header(Self.binary(family: 0x31, path("/run/client.sock") + path("/run/app.sock"))))
        #expect(header.length == 232)
        #expect(header.source?.path == "/run/client.sock")
        #expect(header.destination?.description == "unix:/run/app.sock")
        #expect(header.source?.port == nil && header.source?.ipAddress == nil)
    }

    @Test func aLocalCommandOrAnUnspecifiedFamilyNamesNoClient() throws {
        // HAProxy's health checks with check-send-proxy: LOCAL, UNSPEC, no addresses.
        let local = try #require(Self.header(Self.binary(command: 0x20, family: 0x00, [])))
        #expect(local.length == 16 && local.source == nil)
        // LOCAL with addresses: they are ignored.
        let withAddresses = Self.binary(command: 0x20, family: 0x11, [192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2])
        #expect(Self.header(withAddresses)?.source == nil)
        let unspecified = try #require(Self.header(Self.binary(family: 0x00, [9, 9, 9])))
        #expect(unspecified.length == 19 && unspecified.source == nil)
    }

    @Test func malformedBinaryHeadersAreRefused() {
        let inet: [UInt8] = [192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2]
        #expect(Self.isInvalid(Self.binary(command: 0x11, family: 0x11, inet)), "version 1 in a v2 header")
        #expect(Self.isInvalid(Self.binary(command: 0x22, family: 0x11, inet)), "command 2")
        #expect(Self.isInvalid(Self.binary(family: 0x41, inet)), "family 4")
        #expect(Self.isInvalid(Self.binary(family: 0x13, inet)), "transport 3")
        #expect(Self.isInvalid(Self.binary(family: 0x11, Array(inet.prefix(11)))), "short INET addresses")
        #expect(Self.isInvalid(Self.binary(family: 0x21, inet)), "short INET6 addresses")
        #expect(Self.isInvalid(Self.binary(family: 0x31, inet)), "short UNIX addresses")
        var badSignature = Self.binary(family: 0x11, inet)
        badSignature[7] = 0x50
        #expect(Self.isInvalid(badSignature))
        #expect(Self.isInvalid(Array(badSignature.prefix(8))), "refused as soon as the signature differs")
    }

    @Test func aBinaryHeaderLongerThanTheLimitIsRefusedFromItsLengthAlone() {
        let atLimit = Self.binary(family: 0x11, [UInt8](repeating: 0, count: ProxyHeader.maximumLength - 16))
        #expect(Self.header(atLimit)?.length == ProxyHeader.maximumLength)
        let over = Self.binary(family: 0x11, [UInt8](repeating: 0, count: ProxyHeader.maximumLength - 15))
        #expect(Self.isInvalid(Array(over.prefix(16))))
        #expect(Self.isInvalid(Self.binary(family: 0x11, []).prefix(14) + [0xFF, 0xFF]))
    }

    @Test func eachVersionAcceptsOnlyItsOwnHeader() {
        let text = Array("PROXY UNKNOWN\r\n".utf8)
        let binary = Self.binary(command: 0x20, family: 0x00, [])
        #expect(Self.isInvalid(text, .v2))
        #expect(Self.isInvalid(binary, .v1))
        #expect(Self.header(text, .v1) != nil && Self.header(binary, .v2) != nil)
    }

    @Test func everyProperPrefixOfAHeaderAsksForMore() {
        let headers = [
            Array("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8000\r\n".utf8),
            Self.binary(family: 0x11, [192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x1F, 0x40, 0x01, 0x00, 0x02, 0x68, 0x32]),
        ]
        for header in headers {
            for count in 0..<header.count {
                #expect(ProxyHeader.parse(header.prefix(count)) == .needMore, "\(count) of \(header.count) bytes")
            }
            #expect(Self.header(header)?.length == header.count)
        }
    }

    /// Random bytes, random headers cut anywhere and headers with random bytes changed:
    /// every input parses to an outcome, a header never claims more bytes than it was
    /// given nor more than the limits, and more bytes never turn a header into another.
    @Test func noInputTrapsAndEveryOutcomeIsConsistent() {
        var random = SplitMix(seed: 0x5EED_CAFE)
        let seeds = [
            Array("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8000\r\n".utf8),
            Array("PROXY TCP6 2001:db8::1 ::1 443 80\r\n".utf8),
            Array("PROXY UNKNOWN\r\n".utf8),
            Self.binary(family: 0x11, [192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x1F, 0x40]),
            Self.binary(family: 0x21, [UInt8](repeating: 1, count: 40)),
            Self.binary(family: 0x31, [UInt8](repeating: 0x41, count: 216)),
            Self.binary(command: 0x20, family: 0x00, []),
        ]
        for round in 0..<20_000 {
            var input: [UInt8]
            switch round % 3 {
            case 0:
                input = (0..<random.next(below: 120)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                if random.next(below: 2) == 0, !input.isEmpty { input[0] = [0x50, 0x0D][random.next(below: 2)] }
            case 1:
                let seed = seeds[random.next(below: seeds.count)]
                input = Array(seed.prefix(random.next(below: seed.count + 1)))
            default:
                input = seeds[random.next(below: seeds.count)] + Array("GET /".utf8)
                for _ in 0..<1 + random.next(below: 3) {
                    input[random.next(below: input.count)] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            let outcome = ProxyHeader.parse(input)
            if case .header(let header) = outcome {
                #expect(header.length <= input.count && header.length <= ProxyHeader.maximumLength)
                #expect(ProxyHeader.parse(input.prefix(header.length)) == outcome, "the header alone parses the same")
                #expect(ProxyHeader.parse(input + [0, 1, 2]) == outcome, "bytes after it do not change it")
            }
            if case .needMore = outcome { #expect(input.count < ProxyHeader.maximumLength) }
        }
    }
}

/// A small seeded generator, so a failing round can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(below bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

@Suite struct LogThrottleTests {
    @Test func aMessageGoesOutOnceAMinuteWithTheCountHeldBack() {
        var throttle = LogThrottle(interval: .seconds(60))
        let start = ContinuousClock.now
        #expect(throttle.admit(now: start) == 0)
        #expect(throttle.admit(now: start + .seconds(1)) == nil)
        #expect(throttle.admit(now: start + .seconds(59)) == nil)
        #expect(throttle.admit(now: start + .seconds(60)) == 2)
        #expect(throttle.admit(now: start + .seconds(61)) == nil)
        #expect(throttle.admit(now: start + .seconds(200)) == 1)
    }
}
