//! Input values the JSON Schema leaves as strings: RFC 3339 times and calendar dates,
//! parsed and refused at the pointer the caller names.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::error::{Error, Result};

/// Parse an RFC 3339 time input (`since`, `until`, `now`, `at`), refused at `pointer`.
pub fn parse_time(value: Option<&str>, pointer: &str) -> Result<Option<Timestamp>> {
    value
        .map(|s| {
            let t = s.parse::<Timestamp>().map_err(|e| {
                Error::invalid(
                    pointer,
                    format!(
                        "is not an RFC 3339 time with an offset (e.g. 2024-05-01T09:00:00Z): {e}"
                    ),
                )
            })?;
            check_offset(s).map_err(|m| Error::invalid(pointer, m))?;
            Ok(t)
        })
        .transpose()
}

/// RFC 3339 §5.6: `time-offset = "Z" / time-numoffset`, `time-numoffset = ("+" / "-")
/// time-hour ":" time-minute` with `time-hour` 00-23 and `time-minute` 00-59
/// (https://www.rfc-editor.org/rfc/rfc3339#section-5.6). jiff takes offsets up to
/// ±25:59:59 and other shapes, so `+25:00` would pass unchecked.
fn check_offset(s: &str) -> std::result::Result<(), String> {
    if s.ends_with(['Z', 'z']) {
        return Ok(());
    }
    let tail = s
        .get(s.len().saturating_sub(6)..)
        .unwrap_or_default()
        .as_bytes();
    let digits = |a: u8, b: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
    };
    match tail {
        [b'+' | b'-', h1, h2, b':', m1, m2] => match (digits(*h1, *h2), digits(*m1, *m2)) {
            (Some(h), Some(m)) if h <= 23 && m <= 59 => Ok(()),
            _ => Err("has an offset out of range: RFC 3339 allows -23:59 to +23:59".into()),
        },
        _ => Err("must end in Z or an offset +HH:MM (RFC 3339)".into()),
    }
}

/// Parse a `YYYY-MM-DD` input.
pub fn parse_date(value: Option<&str>, pointer: &str) -> Result<Option<Date>> {
    value
        .map(|s| {
            s.parse::<Date>()
                .map_err(|e| Error::invalid(pointer, format!("is not a date YYYY-MM-DD: {e}")))
        })
        .transpose()
}

/// "Now" for the engine: the input, else the clock.
pub fn now_or(input: Option<Timestamp>) -> Timestamp {
    input.unwrap_or_else(Timestamp::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_rfc_3339_ones() {
        for good in [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.5z",
            "2026-03-01T10:00:00+05:30",
            "2026-03-01T10:00:00-23:59",
        ] {
            assert!(parse_time(Some(good), "/t").is_ok(), "{good}");
        }
        for bad in [
            "2026-03-01T10:00:00+25:00",
            "2026-03-01T10:00:00+24:00",
            "2026-03-01T10:00:00-00:60",
            "2026-03-01T10:00:00",
        ] {
            let e = parse_time(Some(bad), "/inputs/since").unwrap_err();
            assert_eq!(e.details[0].path, "/inputs/since", "{bad}");
        }
    }
}
