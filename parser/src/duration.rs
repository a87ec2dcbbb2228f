//! Go's `time.ParseDuration`, which HEALTHCHECK's `--interval`, `--timeout`,
//! `--start-period` and `--start-interval` are read with.

use nom::IResult;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while};

/// Nanoseconds, or Go's error text.
pub fn parse(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", crate::text::quote(s));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (after_int, int) = digits(rest).map_err(|_| invalid())?;
        let (after_frac, frac) = match after_int.strip_prefix('.') {
            Some(f) => {
                let (r, d) = digits(f).map_err(|_| invalid())?;
                (r, Some(d))
            }
            None => (after_int, None),
        };
        if int.is_empty() && frac.is_none_or(str::is_empty) {
            return Err(invalid());
        }
        let (after_unit, unit) = match unit(after_frac) {
            Ok((r, u)) => (r, u),
            Err(_) => {
                let u: String = after_frac
                    .chars()
                    .take_while(|c| *c != '.' && !c.is_ascii_digit())
                    .collect();
                if u.is_empty() {
                    return Err(format!(
                        "time: missing unit in duration {}",
                        crate::text::quote(s)
                    ));
                }
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    crate::text::quote(&u),
                    crate::text::quote(s)
                ));
            }
        };
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            _ => 3_600_000_000_000,
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        if let Some(frac) = frac {
            // Go keeps the fraction's leading digits that fit, scaled down.
            let mut f = 0u128;
            let mut div = 1u128;
            for d in frac.bytes().take(30) {
                f = f * 10 + u128::from(d - b'0');
                div *= 10;
            }
            value += f * scale / div;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
        rest = after_unit;
    }
    let total = total as i128;
    Ok((if neg { -total } else { total }) as i64)
}

fn digits(s: &str) -> IResult<&str, &str> {
    take_while(|c: char| c.is_ascii_digit())(s)
}

fn unit(s: &str) -> IResult<&str, &str> {
    // Longest first: "ms" before "m".
    alt((
        tag("ns"),
        tag("us"),
        tag("µs"),
        tag("μs"),
        tag("ms"),
        tag("s"),
        tag("m"),
        tag("h"),
    ))
    .parse(s)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn like_go() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("5s"), Ok(5_000_000_000));
        assert_eq!(parse("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse(".5ms"), Ok(500_000));
        assert_eq!(parse("-2m"), Ok(-120_000_000_000));
        assert_eq!(parse("300us"), Ok(300_000));
        assert_eq!(parse("1µs"), Ok(1_000));
        assert_eq!(
            parse("10").unwrap_err(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            parse("10x").unwrap_err(),
            "time: unknown unit \"x\" in duration \"10x\""
        );
        assert_eq!(parse("").unwrap_err(), "time: invalid duration \"\"");
        assert_eq!(parse("s").unwrap_err(), "time: invalid duration \"s\"");
        assert!(parse("99999999999h").is_err());
    }
}
