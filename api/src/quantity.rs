//! Kubernetes resource quantities (`500m`, `0.5`, `128Mi`, `1G`, `1e3`).
//!
//! Owns parsing a quantity string into exact integer milli-units. No
//! floating point is used anywhere: a quantity is a decimal mantissa times
//! a power of ten or of 1024, computed in `i128` and rounded **away from
//! zero** to a whole milli-unit, as Kubernetes rounds (`0.1m` is `1m`).
//!
//! Grammar (from `k8s.io/apimachinery/pkg/api/resource`):
//!
//! ```text
//! quantity ::= sign? number suffix
//! number   ::= digits | digits '.' digits? | '.' digits
//! suffix   ::= '' | 'm' | 'k' | 'M' | 'G' | 'T' | 'P' | 'E'     (decimal SI)
//!            | 'Ki' | 'Mi' | 'Gi' | 'Ti' | 'Pi' | 'Ei'          (binary SI)
//!            | ('e' | 'E') sign? digits                         (exponent)
//! ```

/// Longest quantity string accepted; longer input is refused before any
/// arithmetic (Kubernetes quantities are short; this bounds the work).
const INPUT_LEN_MAX: usize = 64;

/// Largest decimal exponent honoured; anything above cannot fit in `i128`
/// milli-units anyway (and 10^36 * 1000 still fits, so no overflow check is
/// needed before the final multiplication).
const EXPONENT_MAX: i32 = 34;

/// Why a string is not a quantity. Every variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {input:?} is too long (at most {INPUT_LEN_MAX} characters)")]
    TooLong { input: String },
    #[error("quantity {input:?} has no digits")]
    NoDigits { input: String },
    #[error(
        "quantity {input:?} has an unknown suffix {suffix:?} (use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like e3)"
    )]
    UnknownSuffix { input: String, suffix: String },
    #[error("quantity {input:?} is too large")]
    TooLarge { input: String },
}

/// Parse a quantity into milli-units, exactly, rounded away from zero.
///
/// `"100m"` → 100, `"0.5"` → 500, `"1"` → 1000, `"2Ki"` → 2_048_000,
/// `"1e3"` → 1_000_000.
pub fn parse_milli(s: &str) -> Result<i128, QuantityError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(QuantityError::Empty);
    }
    if input.len() > INPUT_LEN_MAX {
        return Err(QuantityError::TooLong {
            input: input.to_string(),
        });
    }
    let too_large = || QuantityError::TooLarge {
        input: input.to_string(),
    };

    let (negative, rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };

    // Mantissa: all digits, integer and fraction, as one integer; remember
    // how many were after the point.
    let mut mantissa: i128 = 0;
    let mut fraction_digits: u32 = 0;
    let mut digits = 0usize;
    let mut seen_point = false;
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        match c {
            '0'..='9' => {
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(c as u8 - b'0')))
                    .ok_or_else(too_large)?;
                digits += 1;
                if seen_point {
                    fraction_digits += 1;
                }
            }
            '.' if !seen_point => seen_point = true,
            _ => {
                end = i;
                break;
            }
        }
    }
    if digits == 0 {
        return Err(QuantityError::NoDigits {
            input: input.to_string(),
        });
    }
    let suffix = &rest[end..];

    // value in milli-units = mantissa * numerator / 10^shift.
    let mut numerator: i128 = 1000;
    let mut shift: u32 = fraction_digits;
    let binary = |power: u32| 1024i128.pow(power);
    match suffix {
        "" => {}
        "m" => shift += 3,
        "k" => numerator *= 1_000,
        "M" => numerator *= 1_000_000,
        "G" => numerator *= 1_000_000_000,
        "T" => numerator *= 1_000_000_000_000,
        "P" => numerator *= 1_000_000_000_000_000,
        "E" => numerator *= 1_000_000_000_000_000_000,
        "Ki" => numerator *= binary(1),
        "Mi" => numerator *= binary(2),
        "Gi" => numerator *= binary(3),
        "Ti" => numerator *= binary(4),
        "Pi" => numerator *= binary(5),
        "Ei" => numerator *= binary(6),
        _ => {
            let exponent = parse_exponent(suffix).ok_or_else(|| QuantityError::UnknownSuffix {
                input: input.to_string(),
                suffix: suffix.to_string(),
            })?;
            if mantissa == 0 {
                return Ok(0);
            }
            if exponent > EXPONENT_MAX {
                return Err(too_large());
            }
            if exponent >= 0 {
                numerator *= 10i128.pow(exponent.unsigned_abs());
            } else {
                shift += exponent.unsigned_abs();
            }
        }
    }

    let scaled = mantissa.checked_mul(numerator).ok_or_else(too_large)?;
    let milli = div_pow10_away(scaled, shift);
    Ok(if negative { -milli } else { milli })
}

/// `x / 10^k` for `x >= 0`, rounded up; done in steps so that no power of
/// ten overflows (ceil(ceil(x/a)/b) == ceil(x/(a*b)) for whole numbers).
fn div_pow10_away(x: i128, k: u32) -> i128 {
    let (mut x, mut k) = (x, k);
    while k > 0 && x > 1 {
        let step = k.min(18);
        let d = 10i128.pow(step);
        x = x / d + i128::from(x % d != 0);
        k -= step;
    }
    x
}

/// `e3`, `E-2`, `e+4` → the exponent; None when not an exponent suffix.
fn parse_exponent(suffix: &str) -> Option<i32> {
    let body = suffix.strip_prefix(['e', 'E'])?;
    let digits = body.strip_prefix(['+', '-']).unwrap_or(body);
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    body.parse().ok()
}

/// CPU in millicores: `"500m"` → 500, `"2"` → 2000, `"0.1m"` → 1.
pub fn cpu_millis(s: &str) -> Result<i64, QuantityError> {
    let milli = parse_milli(s)?;
    i64::try_from(milli).map_err(|_| QuantityError::TooLarge {
        input: s.trim().to_string(),
    })
}

/// Memory (or any count of whole units) in bytes, rounded away from zero:
/// `"128Mi"` → 134217728, `"1G"` → 1000000000, `"100m"` → 1.
pub fn memory_bytes(s: &str) -> Result<i64, QuantityError> {
    let milli = parse_milli(s)?;
    let mut units = milli / 1000;
    if milli % 1000 != 0 {
        units += milli.signum();
    }
    i64::try_from(units).map_err(|_| QuantityError::TooLarge {
        input: s.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_milli_units() {
        let table: &[(&str, i128)] = &[
            ("0", 0),
            ("1", 1000),
            ("100m", 100),
            ("0.5", 500),
            (".5", 500),
            ("1.", 1000),
            ("+2", 2000),
            ("-2", -2000),
            ("0.1m", 1),
            ("-0.1m", -1),
            ("1.0001", 1001),
            ("2Ki", 2_048_000),
            ("128Mi", 134_217_728_000),
            ("1G", 1_000_000_000_000),
            ("1k", 1_000_000),
            ("1E", 1_000_000_000_000_000_000_000),
            ("1Ei", 1_152_921_504_606_846_976_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e+3", 1_000_000),
            ("1e-3", 1),
            ("15e-4", 2),
            ("1e-100", 1),
            ("0e100", 0),
            ("1.5Gi", 1_610_612_736_000),
            (" 250m ", 250),
            ("0.00000000000000000000000000000000000000000001", 1),
            ("0.000000000000000000000000000000000000000000000", 0),
            ("1e34", 10i128.pow(37)),
        ];
        for (input, want) in table {
            assert_eq!(parse_milli(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn refuses_bad_quantities() {
        let table: &[&str] = &[
            "",
            "m",
            "abc",
            "1x",
            "1mi",
            "1KiB",
            "1..5",
            "1.2.3",
            "--1",
            "1e",
            "1e1.5",
            "1e100",
            "99999999999999999999999999999999999999999999",
            "1 m",
            "0x10",
        ];
        for input in table {
            assert!(parse_milli(input).is_err(), "{input:?} should be refused");
        }
    }

    #[test]
    fn errors_name_the_input() {
        let e = parse_milli("12Q").expect_err("unknown suffix");
        assert!(e.to_string().contains("\"12Q\""), "{e}");
        assert!(e.to_string().contains("\"Q\""), "{e}");
    }

    #[test]
    fn cpu_and_memory() {
        assert_eq!(cpu_millis("500m"), Ok(500));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("0.25"), Ok(250));
        assert!(cpu_millis("1E").is_err(), "does not fit i64 millis");
        assert_eq!(memory_bytes("128Mi"), Ok(134_217_728));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("100m"), Ok(1));
        assert_eq!(memory_bytes("1.5"), Ok(2));
        assert_eq!(memory_bytes("64"), Ok(64));
        assert_eq!(memory_bytes("1Ki"), Ok(1024));
    }
}
