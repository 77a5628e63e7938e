//! Event times (Unix milliseconds, UTC) to and from ISO-8601 text, on the `jiff` crate: the log
//! lines' timestamps and the dates of a user's input file.

use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::fmt::temporal::{Pieces, PiecesOffset};

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (a log line's time); outside jiff's range of
/// instants (-9999-01-02 to 9999-12-30) the nearest one it has.
///
/// ```
/// use anomaly_services::timestamps::iso8601;
///
/// assert_eq!(iso8601(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
/// assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
/// ```
pub fn iso8601(unix_ms: i64) -> String {
    let at = Timestamp::from_millisecond(unix_ms).unwrap_or(if unix_ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    // Three digits of fraction always: log lines line up and sort as text.
    format!("{at:.3}")
}

/// Unix milliseconds of an ISO-8601 date and time in UTC: `YYYY-MM-DDTHH:MM[:SS[.fff]]`, a
/// space allowed for the `T`, then nothing, `Z` or `+00:00`; `None` for anything else (another
/// offset or a time zone: the input is said to be UTC, so a local time would be read wrong),
/// for dates and times that do not exist (a leap second included), and outside the years
/// -9999 to 9999. Digits past milliseconds are dropped.
///
/// ```
/// use anomaly_services::timestamps::parse_utc;
///
/// assert_eq!(parse_utc("2026-01-01T00:00:00.123Z"), Some(1_767_225_600_123));
/// assert_eq!(parse_utc("2026-01-01 00:00:01"), Some(1_767_225_601_000));
/// assert_eq!(parse_utc("2026-02-29T00:00:00Z"), None); // not a leap year
/// assert_eq!(parse_utc("2026-01-01T00:00:00+02:00"), None);
/// ```
pub fn parse_utc(text: &str) -> Option<i64> {
    let pieces = Pieces::parse(text).ok()?;
    let utc = match pieces.offset() {
        None | Some(PiecesOffset::Zulu) => true,
        Some(PiecesOffset::Numeric(numeric)) => numeric.offset().seconds() == 0,
        Some(_) => false,
    };
    if !utc || pieces.time_zone_annotation().is_some() {
        return None;
    }
    let time = pieces.time()?;
    // jiff reads a leap second (`:60`) as `:59`; a file's `:60` is a bad row, as before.
    if time.second() == 59 && !text.contains(":59") {
        return None;
    }
    let to_the_millisecond = Time::new(
        time.hour(),
        time.minute(),
        time.second(),
        i32::from(time.millisecond()) * 1_000_000,
    )
    .ok()?;
    // Civil arithmetic rather than a `Timestamp`: the whole of the year 9999 is in range.
    let since_epoch = pieces
        .date()
        .to_datetime(to_the_millisecond)
        .duration_since(DateTime::constant(1970, 1, 1, 0, 0, 0, 0));
    i64::try_from(since_epoch.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_parsing_agree_on_every_millisecond_pattern() {
        for ms in [
            0,
            1,
            999,
            1_767_225_600_123,
            -1,
            -62_167_219_200_000,
            253_402_207_200_999,
        ] {
            assert_eq!(parse_utc(&iso8601(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_utc("9999-12-31T23:59:59.999Z"),
            Some(253_402_300_799_999)
        );
        assert_eq!(iso8601(i64::MAX), "9999-12-30T22:00:00.999Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn refuses_what_is_not_a_utc_time() {
        for text in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:01Z",
            "2026-01-01T00:00:00-05:00",
            "2026-01-01T00:00:00ZZ",
            "yesterday",
        ] {
            assert_eq!(parse_utc(text), None, "{text:?}");
        }
        assert_eq!(
            parse_utc("2026-01-01T00:00:00.123456789"),
            Some(1_767_225_600_123)
        );
    }
}
