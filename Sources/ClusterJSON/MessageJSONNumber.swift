/// Converts the bytes of a JSON number (already checked by `MessageJSONParser`) to Swift
/// numbers, exactly: integers with overflow checks, doubles correctly rounded.
enum MessageJSONNumber {
    /// The integer `text` denotes, or nil when it is out of range for `T` or not integral.
    ///
    /// Like Foundation, a fraction or exponent is fine when the value is integral ("1.0",
    /// "1e3"); unlike going through `Double`, the check is exact at every size.
    static func integer<T: FixedWidthInteger>(_ text: UnsafeBufferPointer<UInt8>, isInteger: Bool) -> T? {
        let negative = text[0] == UInt8(ascii: "-")
        var index = negative ? 1 : 0
        if isInteger {
            var value: T = 0
            while index < text.count {
                guard let next = appendDigit(text[index], to: value, negative: negative) else { return nil }
                value = next
                index += 1
            }
            return value
        }
        // The digits of the integer and fraction parts (counting the fraction's), then the
        // exponent: the value is digits × 10^(exponent − fraction digits).
        var digits: [UInt8] = []
        var fractionDigits = 0
        var inFraction = false
        while index < text.count, text[index] | 0x20 != UInt8(ascii: "e") {
            if text[index] == UInt8(ascii: ".") {
                inFraction = true
            } else {
                digits.append(text[index])
                if inFraction { fractionDigits += 1 }
            }
            index += 1
        }
        var exponent = 0
        if index < text.count {
            index += 1
            let negativeExponent = text[index] == UInt8(ascii: "-")
            if text[index] == UInt8(ascii: "-") || text[index] == UInt8(ascii: "+") { index += 1 }
            while index < text.count {
                // Past this every nonzero value overflows and every zero stays zero.
                exponent = min(exponent * 10 + Int(text[index] - UInt8(ascii: "0")), 100_000)
                index += 1
            }
            if negativeExponent { exponent = -exponent }
        }
        let scale = exponent - fractionDigits
        var kept = digits.count
        if scale < 0 {
            // The digits a negative scale drops must all be zeros, or the value has a fraction.
            kept = max(digits.count + scale, 0)
            guard digits[kept...].allSatisfy({ $0 == UInt8(ascii: "0") }) else { return nil }
        }
        var value: T = 0
        for digit in digits[..<kept] {
            guard let next = appendDigit(digit, to: value, negative: negative) else { return nil }
            value = next
        }
        if value != 0 {
            for _ in 0..<max(scale, 0) {
                guard let next = appendDigit(UInt8(ascii: "0"), to: value, negative: negative) else { return nil }
                value = next
            }
        }
        return value
    }

    /// `value` × 10 ± `digit`, nil on overflow. Negative numbers accumulate downwards so
    /// that `T.min` itself is reachable.
    @inline(__always)
    private static func appendDigit<T: FixedWidthInteger>(_ digit: UInt8, to value: T, negative: Bool) -> T? {
        let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
        let step = T(digit &- UInt8(ascii: "0"))
        let (result, overflow2) = negative ? shifted.subtractingReportingOverflow(step) : shifted.addingReportingOverflow(step)
        return overflow || overflow2 ? nil : result
    }

    /// The double `text` denotes, correctly rounded; nil when it is too large for a Double.
    static func double(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        if let value = exactDouble(text) { return value }
        let value = Double(String(decoding: text, as: UTF8.self))!
        return value.isFinite ? value : nil
    }

    /// The fast path (Clinger's): when the decimal digits fit in 53 bits and the power of
    /// ten is at most 10^22, both are exact doubles and one IEEE multiplication or division
    /// rounds correctly. Covers the numbers programs usually send; nil for the rest.
    private static func exactDouble(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        let negative = text[0] == UInt8(ascii: "-")
        var index = negative ? 1 : 0
        var mantissa: UInt64 = 0
        var scale = 0
        var inFraction = false
        while index < text.count {
            let byte = text[index]
            if byte == UInt8(ascii: ".") {
                inFraction = true
            } else if byte | 0x20 == UInt8(ascii: "e") {
                break
            } else {
                guard mantissa < 1 << 49 else { return nil }  // one more digit could pass 2^53
                mantissa = mantissa * 10 + UInt64(byte - UInt8(ascii: "0"))
                if inFraction { scale -= 1 }
            }
            index += 1
        }
        if index < text.count {
            index += 1
            let negativeExponent = text[index] == UInt8(ascii: "-")
            if text[index] == UInt8(ascii: "-") || text[index] == UInt8(ascii: "+") { index += 1 }
            var exponent = 0
            while index < text.count {
                guard exponent < 1000 else { return nil }
                exponent = exponent * 10 + Int(text[index] - UInt8(ascii: "0"))
                index += 1
            }
            scale += negativeExponent ? -exponent : exponent
        }
        guard (-22...22).contains(scale) else { return nil }
        var power = 1.0
        for _ in 0..<abs(scale) { power *= 10 }
        let magnitude = scale < 0 ? Double(mantissa) / power : Double(mantissa) * power
        return negative ? -magnitude : magnitude
    }

    /// The float `text` denotes, correctly rounded; nil when it is too large for a Float.
    static func float(_ text: UnsafeBufferPointer<UInt8>) -> Float? {
        let value = Float(String(decoding: text, as: UTF8.self))!
        return value.isFinite ? value : nil
    }
}
