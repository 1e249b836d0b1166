//! Input values the JSON Schema leaves as strings: RFC 3339 times and calendar dates,
//! parsed and refused at the pointer the caller names.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::error::{Error, Result};

/// Parse an RFC 3339 time input (`since`, `until`, `now`, `at`), refused at `pointer`.
pub fn parse_time(value: Option<&str>, pointer: &str) -> Result<Option<Timestamp>> {
    value
        .map(|s| {
            s.parse::<Timestamp>().map_err(|e| {
                Error::invalid(
                    pointer,
                    format!(
                        "is not an RFC 3339 time with an offset (e.g. 2024-05-01T09:00:00Z): {e}"
                    ),
                )
            })
        })
        .transpose()
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
