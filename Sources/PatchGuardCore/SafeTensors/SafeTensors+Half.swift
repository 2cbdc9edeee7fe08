/// IEEE 754 binary16 (F16) and bfloat16 (BF16) ↔ Float conversions, written out in integer arithmetic.
///
/// Swift's `Float16` is missing on macOS/x86_64, so the codec does not depend on it (the tests compare against it
/// where it exists). Decoding is exact: every F16 and BF16 value is a Float. Encoding rounds to nearest, ties to
/// even, overflows to ±∞ and keeps NaNs NaN.
///
/// - F16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Normal `(-1)^s · 2^(e−15) · (1 + m/2¹⁰)`,
///   subnormal (e = 0) `(-1)^s · 2^(−14) · m/2¹⁰`; largest finite 65504, smallest subnormal 2^(−24).
/// - BF16: the upper 16 bits of a Float (1 sign, 8 exponent, 7 mantissa bits).
public enum HalfPrecision {
    /// The Float equal to the F16 value with bit pattern `h`.
    @inlinable
    public static func float(fromFloat16Bits h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }  // ±∞, NaN
        if exponent == 0 {  // ±0 and subnormals: m · 2^(−24), exact in Float
            let magnitude = Float(mantissa) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)  // rebias 15 → 127
    }

    /// The Float equal to the BF16 value with bit pattern `b`.
    @inlinable
    public static func float(fromBFloat16Bits b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// The F16 bit pattern nearest to `f` (ties to even).
    public static func float16Bits(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let floatExponent = Int((x >> 23) & 0xFF)
        var mantissa = x & 0x7F_FFFF
        if floatExponent == 0xFF {  // ∞ or NaN (NaN keeps its top payload bits and stays quiet)
            return sign | 0x7C00 | (mantissa != 0 ? 0x200 | UInt16(truncatingIfNeeded: mantissa >> 13) : 0)
        }
        let e = floatExponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {  // F16 subnormal (or zero): units of 2^(−24)
            if e < -10 { return sign }  // below 2^(−25): rounds to zero
            if floatExponent != 0 { mantissa |= 0x80_0000 }
            let shift = UInt32(14 - e)
            var h = mantissa >> shift
            let rest = mantissa & ((1 << shift) - 1), halfway: UInt32 = 1 << (shift - 1)
            if rest > halfway || (rest == halfway && h & 1 == 1) { h += 1 }
            return sign | UInt16(truncatingIfNeeded: h)
        }
        var h = UInt32(e) << 10 | mantissa >> 13
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }  // a carry into the exponent is correct, up to ∞
        return sign | UInt16(truncatingIfNeeded: h)
    }

    /// The BF16 bit pattern nearest to `f` (ties to even).
    public static func bfloat16Bits(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(truncatingIfNeeded: x >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (x &+ 0x7FFF &+ ((x >> 16) & 1)) >> 16)
    }
}
