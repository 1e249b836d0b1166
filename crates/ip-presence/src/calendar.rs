//! Calendar time: the instants the engine can keep ([`MIN_MS`]..=[`MAX_MS`]), Graph's
//! `createdDateTime` in milliseconds ([`parse_timestamp_ms`]), and the calendar day of an
//! instant in a time zone ([`Zone`]), computed without jiff on the hot path.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::error::PresenceError;

/// The earliest and latest millisecond a [`Timestamp`] holds (`Timestamp::MIN/MAX
/// .as_millisecond()`, which is not `const`; a test checks them). Every time the engine
/// keeps is in this range.
pub const MIN_MS: i64 = -377_705_023_201_000;
pub const MAX_MS: i64 = 253_402_207_200_999;

/// Whether `ms` (since the epoch) is a time the engine can keep and report.
#[inline]
pub fn is_valid_ms(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

/// `ms` as a timestamp, or an error naming it. (Not `Timestamp::from_millisecond`,
/// which refuses the last 999 ms before `Timestamp::MAX` that `as_millisecond` gives:
/// an `at` input of 9999-12-30T22:00:00.999Z would come back as an error.)
pub(crate) fn timestamp_of(ms: i64) -> Result<Timestamp, PresenceError> {
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as i32;
    Timestamp::new(ms.div_euclid(1000), nanos).map_err(|_| PresenceError::Time(ms))
}

/// A time zone for calendar days: UTC (no lookup at all) or a jiff zone.
#[derive(Debug, Clone)]
pub(crate) enum Zone {
    Utc,
    Tz(TimeZone),
}

impl Zone {
    pub(crate) fn new(tz: TimeZone) -> Self {
        if tz.iana_name() == Some("UTC") || tz == TimeZone::UTC {
            Zone::Utc
        } else {
            Zone::Tz(tz)
        }
    }
    /// The calendar day of `at_ms` (milliseconds since the epoch) in this zone.
    #[inline]
    pub(crate) fn date(&self, at_ms: i64) -> Date {
        let secs = at_ms.div_euclid(1000);
        let local = match self {
            Zone::Utc => secs,
            Zone::Tz(tz) => {
                let ts = Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH);
                secs + i64::from(tz.to_offset(ts).seconds())
            }
        };
        date_from_days(local.div_euclid(86_400))
    }
}

/// Civil date of a day count since 1970-01-01 (Hinnant's algorithm).
fn date_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date::new(y as i16, m as i8, d as i8).unwrap_or(Date::MIN)
}

/// Days since 1970-01-01 of a civil date (Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first millisecond (UTC) of `date`, since the epoch.
#[inline]
pub(crate) fn day_start_ms(date: Date) -> i64 {
    days_from_civil(
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    ) * 86_400_000
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// `createdDateTime` in milliseconds since the epoch. Graph writes
/// `2024-05-01T09:13:22.1234567Z`; other RFC 3339 forms go through jiff.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z'
    {
        let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
        let (h, mi, se) = (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        );
        let frac = &b[19..b.len() - 1];
        let ms = match frac {
            [] => 0,
            [b'.', f @ ..] if !f.is_empty() => {
                let mut v = 0;
                for i in 0..3 {
                    let c = f.get(i).copied().unwrap_or(b'0');
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    v = v * 10 + i64::from(c - b'0');
                }
                digits(f)?;
                v
            }
            _ => return None,
        };
        if (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && se < 61 {
            if Date::new(y as i16, mo as i8, d as i8).is_err() {
                return None;
            }
            let days = days_from_civil(y, mo, d);
            let at = ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms;
            // Years 0000-9999 fit; the last hours of 9999-12-31 are past jiff's range.
            return is_valid_ms(at).then_some(at);
        }
        return None;
    }
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_timestamps_parse_fast_and_agree_with_jiff() {
        for s in [
            "2024-05-01T09:13:22Z",
            "2024-05-01T09:13:22.1234567Z",
            "1999-12-31T23:59:59.9Z",
            "2024-02-29T00:00:00.000Z",
        ] {
            let jiff: Timestamp = s.parse().unwrap();
            assert_eq!(parse_timestamp_ms(s), Some(jiff.as_millisecond()), "{s}");
        }
        assert_eq!(
            parse_timestamp_ms("2024-05-01T11:13:22+02:00"),
            parse_timestamp_ms("2024-05-01T09:13:22Z")
        );
        assert_eq!(parse_timestamp_ms("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        // Past jiff's last instant: not a time the engine can report, so malformed.
        assert_eq!(parse_timestamp_ms("9999-12-31T08:00:00Z"), None);
        assert!(parse_timestamp_ms("0000-01-01T00:00:00Z").is_some());
    }

    #[test]
    fn the_time_range_is_jiffs() {
        assert_eq!(MIN_MS, Timestamp::MIN.as_millisecond());
        assert_eq!(MAX_MS, Timestamp::MAX.as_millisecond());
        for ms in [
            MIN_MS,
            MIN_MS + 1,
            -1,
            0,
            1,
            1_714_554_000_123,
            MAX_MS - 1,
            MAX_MS,
        ] {
            assert_eq!(timestamp_of(ms).unwrap().as_millisecond(), ms);
        }
        assert!(timestamp_of(MIN_MS - 1).is_err() && timestamp_of(MAX_MS + 1).is_err());
        assert!(timestamp_of(i64::MIN).is_err() && timestamp_of(i64::MAX).is_err());
        let last: Timestamp = "9999-12-30T22:00:00.999Z".parse().unwrap();
        assert!(is_valid_ms(last.as_millisecond()));
    }

    #[test]
    fn day_numbers_round_trip() {
        for d in [-1000i64, -1, 0, 1, 19_000, 20_000, 60_000] {
            let date = date_from_days(d);
            let y = i64::from(date.year());
            let m = i64::from(date.month());
            assert_eq!(days_from_civil(y, m, i64::from(date.day())), d);
        }
    }
}
