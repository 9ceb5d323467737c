//! Go's duration syntax (`30s`, `1m30s`, `1.5h`, `500ms`), which HEALTHCHECK flags use.

use std::time::Duration;

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's largest duration (about 292 years), in nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration. A negative one is returned as `Err` since no HEALTHCHECK
/// flag accepts it.
pub(super) fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration \"{text}\"");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let mut fraction = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let len = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            fraction = &after_dot[..len];
            rest = &after_dot[len..];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == &rest[..unit_len]) else {
            return Err(match &rest[..unit_len] {
                "" => format!("missing unit in duration \"{text}\""),
                unit => format!("unknown unit \"{unit}\" in duration \"{text}\""),
            });
        };
        rest = &rest[unit_len..];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(invalid)?;
        // Only the first digits of a fraction can matter at nanosecond precision.
        let mut place = scale;
        for digit in fraction.bytes().take(20) {
            place /= 10;
            nanos += u128::from(digit - b'0') * place;
        }
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or_else(invalid)?;
    }
    if negative && total > 0 {
        return Err(format!("duration \"{text}\" is negative"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats as Go does (`1m30s`, `500ms`, `1h0m0s`), so that `parse` reads it back.
pub(super) fn format(duration: Duration) -> String {
    let secs = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if secs == 0 {
        return match nanos {
            0 => "0s".to_owned(),
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        out += &format!("{hours}h");
    }
    if hours > 0 || minutes > 0 {
        out += &format!("{minutes}m");
    }
    out += &seconds.to_string();
    if nanos > 0 {
        out += format!(".{nanos:09}").trim_end_matches('0');
    }
    out + "s"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("0", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("2h45m", Duration::from_secs(9900)),
            ("10µs", Duration::from_micros(10)),
            ("3ns", Duration::from_nanos(3)),
            ("+1s", Duration::from_secs(1)),
            ("-0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "-1s",
            ".s",
            "1..5s",
            "99999999999999999999h",
            "1s2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (duration, want) in cases {
            assert_eq!(format(duration), want);
            assert_eq!(parse(want), Ok(duration));
        }
    }
}
