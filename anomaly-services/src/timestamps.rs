//! Event times (Unix milliseconds, UTC) to and from ISO-8601 text, on the `jiff` crate: the log
//! lines' timestamps and the dates of a user's input file.

use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::fmt::temporal::Pieces;

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
/// offset: the input is said to be UTC, so a local time would be read wrong), for dates and
/// times that do not exist (a leap second included), and outside the years 0 to 9999. Digits
/// past milliseconds are dropped.
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
    let Layout { civil, fraction } = Layout::of(text)?;
    let pieces = Pieces::parse(civil).ok()?;
    if pieces.offset().is_some() || pieces.time_zone_annotation().is_some() {
        return None;
    }
    let time = pieces.time()?;
    let millis: i32 = match fraction.len() {
        0 => 0,
        n => fraction[..n.min(3)].parse::<i32>().ok()? * 10i32.pow(3 - n.min(3) as u32),
    };
    let time = Time::new(
        time.hour(),
        time.minute(),
        time.second(),
        millis * 1_000_000,
    )
    .ok()?;
    // Civil arithmetic rather than a `Timestamp`: the whole of the year 9999 is in range.
    let since_epoch = pieces
        .date()
        .to_datetime(time)
        .duration_since(DateTime::constant(1970, 1, 1, 0, 0, 0, 0));
    i64::try_from(since_epoch.as_millis()).ok()
}

/// The parts of a timestamp in the layout [`parse_utc`] reads. jiff reads more (the basic
/// format, hours alone, lower-case `t` and `z`, other offsets) and reads a leap second as the
/// second before it, none of which a file's column should start to mean silently: the layout
/// is checked here, the values by jiff.
struct Layout<'a> {
    /// `YYYY-MM-DD[T ]HH:MM[:SS]`.
    civil: &'a str,
    /// The fraction's digits, if any.
    fraction: &'a str,
}

impl<'a> Layout<'a> {
    fn of(text: &'a str) -> Option<Self> {
        let text = text
            .strip_suffix('Z')
            .or_else(|| text.strip_suffix("+00:00"))
            .unwrap_or(text);
        let (civil, fraction) = match text.split_once('.') {
            Some((_, "")) => return None,
            Some(parts) => parts,
            None => (text, ""),
        };
        let b = civil.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            b.get(range)
                .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
        };
        let minutes = b.len() >= 16
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && matches!(b[10], b'T' | b' ')
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16);
        let seconds = match b.len() {
            16 => fraction.is_empty(),
            19 => b[16] == b':' && digits(17..19) && &b[17..19] != b"60",
            _ => false,
        };
        let fraction_ok =
            fraction.is_empty() || (b.len() == 19 && fraction.bytes().all(|c| c.is_ascii_digit()));
        (minutes && seconds && fraction_ok).then_some(Self { civil, fraction })
    }
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
            "2016-12-31T23:59:60Z",
            "20260101T000000Z",
            "2026-01-01T10",
            "2026-01-01t00:00:00z",
            "2026-01-01T00:00:00-00:00",
            "2026-01-01T00:00:00,5",
            "2026-01-01T00:00.5",
            "2026-01-01T00:00:00.",
            "yesterday",
        ] {
            assert_eq!(parse_utc(text), None, "{text:?}");
        }
        for (text, ms) in [
            ("2026-01-01T00:00:00.123456789", 1_767_225_600_123),
            ("2026-01-01T00:00:00.1234567891234", 1_767_225_600_123),
            ("2026-01-01T00:00:59+00:00", 1_767_225_659_000),
            ("2026-01-01 00:01", 1_767_225_660_000),
            ("1969-12-31T23:59:59.9999", -1),
        ] {
            assert_eq!(parse_utc(text), Some(ms), "{text}");
        }
    }
}
