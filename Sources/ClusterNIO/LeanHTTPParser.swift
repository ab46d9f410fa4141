import NIOCore
import NIOHTTP1

/// Reads one request head from the front of a byte stream, byte by byte, as RFC 9112 asks
/// a server to: it rejects what the RFC says to reject at the byte where it becomes wrong,
/// and hands anything it does not handle itself to SwiftNIO's parser (llhttp) rather than
/// guessing. Its verdicts agree with llhttp's (`HTTPParserDifferentialTests`, and the
/// fuzz target in `Fuzz/`).
///
/// Rejected (`400`): a bare LF or a CR without LF anywhere in the head; whitespace before a
/// field's colon, or any other byte outside `tchar` in a field name; a line folded onto the
/// previous one (obs-fold) or whitespace right after the request line; NUL and other
/// control characters (HTAB aside) in a field value or the request target; a
/// `Content-Length` that is not only digits (`+37`, `-1`, `3 7`, `37 `, empty), that does
/// not fit 64 bits, or that appears twice. A head longer than the limit gets `431`; a
/// `Content-Length` above the body limit `413`.
///
/// Handed over: `Transfer-Encoding` (and so `Content-Length` with it, which llhttp
/// rejects), `Expect`, `Upgrade`, a `Connection` value with `upgrade` or with elements that
/// are not plain tokens, `Proxy-Connection` (no field of RFC 9112, but llhttp reads it as
/// `Connection`, and refuses bytes after a request it says closes), methods other than the
/// common seven, request targets not in origin form or with bytes it does not judge itself
/// (HTAB, form feed, obs-text), and versions other than HTTP/1.0 and 1.1.
enum LeanHTTPParser {
    /// A complete, valid request head.
    struct Head {
        var head: HTTPRequestHead
        /// Bytes from the first of the request line to the end of the empty line.
        var length: Int
        var contentLength: Int
        var keepAlive: Bool
    }

    enum Outcome {
        /// Valid so far; more bytes are needed.
        case incomplete
        /// Valid HTTP perhaps, but not for this parser: SwiftNIO's decides.
        case handOver
        /// Invalid: answer `status` and close. `reason` says what was wrong.
        case reject(HTTPResponseStatus, reason: String)
        case head(Head)
    }

    private static let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")
    private static let colon = UInt8(ascii: ":")

    private static let methods: [(name: [UInt8], method: HTTPMethod)] = [
        (Array("GET".utf8), .GET), (Array("HEAD".utf8), .HEAD), (Array("POST".utf8), .POST), (Array("PUT".utf8), .PUT),
        (Array("DELETE".utf8), .DELETE), (Array("OPTIONS".utf8), .OPTIONS), (Array("PATCH".utf8), .PATCH),
    ]

    static func isToken(_ byte: UInt8) -> Bool { token[Int(byte)] }

    /// `tchar` of RFC 9110: the bytes of a method or a field name.
    private static let token: [Bool] = (0..<256).map { byte in
        let byte = UInt8(byte)
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// Parses the head at the front of `raw` (its first byte is a request's first byte).
    static func parse(_ raw: UnsafeRawBufferPointer, limits: HTTPServerLimits) -> Outcome {
        var scanner = Scanner(raw: raw, limit: limits.maxHeaderBytes)
        return scanner.run(limits: limits)
    }

    private struct Scanner {
        let raw: UnsafeRawBufferPointer
        /// Bytes looked at: at most one past the head limit.
        let end: Int
        let limit: Int
        var index = 0

        init(raw: UnsafeRawBufferPointer, limit: Int) {
            self.raw = raw
            self.limit = limit
            self.end = min(raw.count, limit + 1)
        }

        /// Out of bytes: the head is too long, or more may come.
        var starved: Outcome {
            end > limit ? .reject(.requestHeaderFieldsTooLarge, reason: "the request head is over \(limit) bytes") : .incomplete
        }

        mutating func run(limits: HTTPServerLimits) -> Outcome {
            // Request line: method SP origin-form SP HTTP-version CRLF.
            // A method this parser knows, checked as it arrives: llhttp judges any other
            // at its first byte, so it gets the bytes as soon as they leave the known ones.
            var methodEnd = 0
            while methodEnd < end, raw[methodEnd] != LeanHTTPParser.space {
                let prefix = UnsafeRawBufferPointer(rebasing: raw[0...methodEnd])
                guard LeanHTTPParser.methods.contains(where: { $0.name.starts(with: prefix) }) else { return .handOver }
                methodEnd += 1
            }
            guard methodEnd < end else { return starved }
            let methodBytes = UnsafeRawBufferPointer(rebasing: raw[0..<methodEnd])
            guard let method = LeanHTTPParser.methods.first(where: { $0.name.elementsEqual(methodBytes) })?.method else { return .handOver }
            index = methodEnd + 1
            let targetStart = index
            guard index < end else { return starved }
            guard raw[index] == UInt8(ascii: "/") else { return .handOver }
            while index < end, raw[index] != LeanHTTPParser.space {
                switch raw[index] {
                case 0x21...0x7E: break
                case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F:
                    return .reject(.badRequest, reason: "a control character in the request target")
                default: return .handOver
                }
                index += 1
            }
            guard index < end else { return starved }
            let target = UnsafeRawBufferPointer(rebasing: raw[targetStart..<index])
            index += 1
            let version: HTTPVersion
            let expected = "HTTP/1.".utf8
            for byte in expected {
                guard index < end else { return starved }
                guard raw[index] == byte else { return .handOver }
                index += 1
            }
            guard index < end else { return starved }
            switch raw[index] {
            case UInt8(ascii: "1"): version = .http1_1
            case UInt8(ascii: "0"): version = .http1_0
            default: return .handOver
            }
            index += 1
            guard index < end else { return starved }
            switch raw[index] {
            case LeanHTTPParser.cr: break
            case LeanHTTPParser.lf: return .reject(.badRequest, reason: "a bare LF ends the request line; lines end with CRLF")
            default: return .handOver
            }
            if let failure = lineEnd() { return failure }

            var headers = HTTPHeaders()
            var contentLength: Int?
            var close = false, keepAlive = false
            var paddedContentLength = false
            var firstLine = true
            while true {
                guard index < end else { return starved }
                switch raw[index] {
                case LeanHTTPParser.cr:
                    if let failure = lineEnd() { return failure }
                    guard !paddedContentLength else { return .reject(.badRequest, reason: "Content-Length is not a number") }
                    guard index <= limit else { return .reject(.requestHeaderFieldsTooLarge, reason: "the request head is over \(limit) bytes") }
                    let requestHead = HTTPRequestHead(version: version, method: method,
                                                      uri: String(decoding: target, as: UTF8.self), headers: headers)
                    let length = contentLength ?? 0
                    guard length <= limits.maxBodyBytes else {
                        return .reject(.payloadTooLarge, reason: "the body is over \(limits.maxBodyBytes) bytes")
                    }
                    // RFC 9112 §9.3: `close` wins in every version (llhttp lets an HTTP/1.0
                    // `keep-alive` win; §9.6 forbids answering more); HTTP/1.0 stays open
                    // only when asked.
                    let persistent = !close && (version == .http1_1 || keepAlive)
                    return .head(Head(head: requestHead, length: index, contentLength: length, keepAlive: persistent))
                case LeanHTTPParser.lf:
                    return .reject(.badRequest, reason: "a bare LF in the request head; lines end with CRLF")
                case LeanHTTPParser.space, LeanHTTPParser.tab:
                    return .reject(.badRequest, reason: firstLine ? "whitespace after the request line" : "a folded header line (obs-fold)")
                default:
                    break
                }
                firstLine = false
                // field-name ":" OWS field-value OWS CRLF
                let nameStart = index
                while index < end, raw[index] != LeanHTTPParser.colon {
                    guard LeanHTTPParser.token[Int(raw[index])] else {
                        return .reject(.badRequest, reason: "a header name has a byte that is not a token character (whitespace before the colon?)")
                    }
                    index += 1
                }
                guard index < end else { return starved }
                let name = UnsafeRawBufferPointer(rebasing: raw[nameStart..<index])
                guard !name.isEmpty else { return .reject(.badRequest, reason: "a header line with no name") }
                index += 1
                let field = Field(name)
                switch field {
                case .transferEncoding, .expect, .upgrade, .proxyConnection: return .handOver
                case .contentLength, .connection, .other: break
                }
                while index < end, raw[index] == LeanHTTPParser.space || raw[index] == LeanHTTPParser.tab { index += 1 }
                if field == .contentLength, contentLength != nil || paddedContentLength {
                    // As llhttp: at the second one's value.
                    guard index < end else { return starved }
                    return .reject(.badRequest, reason: "Content-Length appears twice")
                }
                let valueStart = index
                var valueEnd = index
                // Content-Length: digits, then only whitespace.
                var digits: UInt64? = field == .contentLength ? 0 : nil
                var trailing = false
                while index < end, raw[index] != LeanHTTPParser.cr {
                    let byte = raw[index]
                    switch byte {
                    case LeanHTTPParser.tab where digits != nil:
                        return .reject(.badRequest, reason: "Content-Length is not a number")
                    case LeanHTTPParser.space, LeanHTTPParser.tab:
                        trailing = true
                    case 0x21...0x7E, 0x80...0xFF:
                        valueEnd = index + 1
                        if let value = digits {
                            guard !trailing, let digit = byte.asciiDigit else {
                                return .reject(.badRequest, reason: "Content-Length is not a number")
                            }
                            // As llhttp: an overflow is an error at the digit that causes it.
                            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                            let (sum, carry) = times.addingReportingOverflow(UInt64(digit))
                            guard !overflow && !carry else {
                                return .reject(.badRequest, reason: "Content-Length is larger than 64 bits")
                            }
                            digits = sum
                        }
                        trailing = false
                    case LeanHTTPParser.lf:
                        return .reject(.badRequest, reason: "a bare LF ends a header line; lines end with CRLF")
                    default:
                        return .reject(.badRequest, reason: "a control character in a header value")
                    }
                    index += 1
                }
                guard index < end else { return starved }
                let untrimmed = UnsafeRawBufferPointer(rebasing: raw[valueStart..<index])
                if let failure = lineEnd() { return failure }
                let value = UnsafeRawBufferPointer(rebasing: raw[valueStart..<valueEnd])
                switch field {
                case .contentLength:
                    // Empty: llhttp judges it at the next line's first byte (it could have
                    // been a fold), even when that is the CR of the empty line, so this
                    // waits as long and no longer.
                    if value.isEmpty {
                        guard index < end else { return starved }
                        return .reject(.badRequest, reason: "Content-Length is empty")
                    }
                    guard let digits else { return .reject(.badRequest, reason: "Content-Length is not a number") }
                    // Digits then spaces: rejected with the whole head, as SwiftNIO does.
                    if trailing { paddedContentLength = true } else { contentLength = Int(clamping: digits) }
                case .connection:
                    // Plain tokens only; anything else (tabs, empty elements) llhttp reads
                    // by rules of its own, so it decides.
                    guard let tokens = untrimmed.connectionTokens(), !tokens.contains("upgrade") else { return .handOver }
                    close = close || tokens.contains("close")
                    keepAlive = keepAlive || tokens.contains("keep-alive")
                case .other, .transferEncoding, .expect, .upgrade, .proxyConnection:
                    break
                }
                headers.add(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
            }
        }

        /// At a CR: steps past CRLF, or rejects a CR without LF. (nil: done or starved later.)
        private mutating func lineEnd() -> Outcome? {
            guard index + 1 < end else {
                index = end
                return starved
            }
            guard raw[index + 1] == LeanHTTPParser.lf else { return .reject(.badRequest, reason: "a CR without LF in the request head") }
            index += 2
            return nil
        }
    }

    /// The fields the parser acts on.
    private enum Field: Equatable {
        case contentLength, transferEncoding, connection, expect, upgrade, proxyConnection, other

        init(_ name: UnsafeRawBufferPointer) {
            self = if name.equalsCaseInsensitive("content-length") { .contentLength }
                else if name.equalsCaseInsensitive("transfer-encoding") { .transferEncoding }
                else if name.equalsCaseInsensitive("connection") { .connection }
                else if name.equalsCaseInsensitive("expect") { .expect }
                else if name.equalsCaseInsensitive("upgrade") { .upgrade }
                else if name.equalsCaseInsensitive("proxy-connection") { .proxyConnection }
                else { .other }
        }
    }
}

extension UInt8 {
    fileprivate var asciiDigit: Int? {
        self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") ? Int(self - UInt8(ascii: "0")) : nil
    }
}

extension UnsafeRawBufferPointer {
    /// ASCII case-insensitive equality with a lowercase name.
    fileprivate func equalsCaseInsensitive(_ lowercase: StaticString) -> Bool {
        guard count == lowercase.utf8CodeUnitCount else { return false }
        let other = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        return zip(self, other).allSatisfy { a, b in a | 0x20 == b }
    }

    /// The comma-separated elements of a `Connection` value, lowercased, spaces around
    /// them dropped; nil when one is empty or is not a token.
    fileprivate func connectionTokens() -> [String]? {
        var tokens: [String] = []
        for element in split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let trimmed = element.drop { $0 == UInt8(ascii: " ") }.reversed().drop { $0 == UInt8(ascii: " ") }.reversed()
            guard !trimmed.isEmpty, trimmed.allSatisfy({ LeanHTTPParser.isToken($0) }) else { return nil }
            tokens.append(String(decoding: trimmed, as: UTF8.self).lowercased())
        }
        return tokens
    }
}
