//! `scored_events.csv` and `alerts.csv`, written row by row as a run goes: buffered, with no
//! allocation per row, so that a run over a file of any length writes in constant memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::messages::{Alert, ScoredEvent};

const SCORED_HEADER: &str =
    "event_id,timestamp_ms,card_id,amount,score,is_anomaly,is_fraud,model_version,phase\n";
const ALERTS_HEADER: &str = "alert_id,kind,severity,timestamp_ms,event_id,card_id,score\n";
/// Large enough that a write system call carries thousands of rows.
const BUFFER_BYTES: usize = 1 << 20;

/// The two raw-result tables of a run directory.
///
/// ```
/// use anomaly_services::report::CsvTables;
///
/// let dir = std::env::temp_dir().join(format!("csv-tables-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let tables = CsvTables::create(&dir)?;
/// tables.finish()?;
/// let header = std::fs::read_to_string(dir.join("scored_events.csv"))?;
/// assert!(header.starts_with("event_id,timestamp_ms,card_id,amount,score"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct CsvTables {
    scored: BufWriter<File>,
    alerts: BufWriter<File>,
    dir: std::path::PathBuf,
}

impl CsvTables {
    /// Creates (or truncates) both files in `dir`, headers written.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        let open = |name: &str, header: &str| -> std::io::Result<BufWriter<File>> {
            let mut file = BufWriter::with_capacity(BUFFER_BYTES, File::create(dir.join(name))?);
            file.write_all(header.as_bytes())?;
            Ok(file)
        };
        Ok(Self {
            scored: open("scored_events.csv", SCORED_HEADER)
                .map_err(|e| named(dir, "scored_events.csv", e))?,
            alerts: open("alerts.csv", ALERTS_HEADER).map_err(|e| named(dir, "alerts.csv", e))?,
            dir: dir.to_owned(),
        })
    }

    /// Appends a row to `scored_events.csv`.
    pub fn scored(&mut self, e: &ScoredEvent) -> std::io::Result<()> {
        self.scored_row(e)
            .map_err(|error| named(&self.dir, "scored_events.csv", error))
    }

    fn scored_row(&mut self, e: &ScoredEvent) -> std::io::Result<()> {
        // Byte by byte rather than through `write!`: the formatting machinery was most of the
        // writing thread's time. The text is the same (see `decimal`).
        let mut integers = itoa::Buffer::new();
        let out = &mut self.scored;
        write_text(out, &e.event_id)?;
        out.write_all(b",")?;
        out.write_all(integers.format(e.timestamp_ms).as_bytes())?;
        out.write_all(b",")?;
        write_text(out, &e.card_id)?;
        out.write_all(b",")?;
        write_decimal::<2>(out, e.amount)?;
        out.write_all(b",")?;
        write_decimal::<6>(out, e.score)?;
        out.write_all(if e.is_anomaly { b",1," } else { b",0," })?;
        out.write_all(if e.is_fraud { b"1," } else { b"0," })?;
        out.write_all(integers.format(e.model_version).as_bytes())?;
        out.write_all(b",")?;
        write_text(out, &e.phase)?;
        out.write_all(b"\n")
    }

    /// Appends a row to `alerts.csv`.
    pub fn alert(&mut self, a: &Alert) -> std::io::Result<()> {
        self.alert_row(a)
            .map_err(|error| named(&self.dir, "alerts.csv", error))
    }

    fn alert_row(&mut self, a: &Alert) -> std::io::Result<()> {
        write!(
            self.alerts,
            "{},{:?},{},{},",
            a.alert_id,
            a.kind,
            a.severity.name(),
            a.timestamp_ms,
        )?;
        write_text(&mut self.alerts, &a.event_id)?;
        self.alerts.write_all(b",")?;
        write_text(&mut self.alerts, a.card_id.as_deref().unwrap_or(""))?;
        self.alerts.write_all(b",")?;
        match a.score {
            Some(score) => writeln!(self.alerts, "{score}"),
            None => writeln!(self.alerts),
        }
    }

    /// Flushes both files.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.flush_both()
    }

    fn flush_both(&mut self) -> std::io::Result<()> {
        self.scored
            .flush()
            .map_err(|e| named(&self.dir, "scored_events.csv", e))?;
        self.alerts
            .flush()
            .map_err(|e| named(&self.dir, "alerts.csv", e))
    }
}

/// `error` with the file it happened on.
fn named(dir: &Path, file: &str, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        error.kind(),
        format!("{}: {error}", dir.join(file).display()),
    )
}

/// A text cell, quoted (RFC 4180) when it holds a comma, a quote or a line break: a user's
/// ids can; the generator's never do, so their rows are unchanged.
fn write_text(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    // A fold without early exit, so the compiler scans 16 bytes at a time; a `[char; 4]`
    // pattern would decode every character. The four special characters are ASCII, and no
    // byte of a multi-byte character is below 0x80, so a byte scan finds exactly them.
    let needs_quotes = text.bytes().fold(false, |quote, b| {
        quote | matches!(b, b',' | b'"' | b'\n' | b'\r')
    });
    if !needs_quotes {
        return out.write_all(text.as_bytes());
    }
    out.write_all(b"\"")?;
    out.write_all(text.replace('"', "\"\"").as_bytes())?;
    out.write_all(b"\"")
}

/// Writes `value` as `{}` (Rust's shortest round-trip form) would.
///
/// Values on a grid of `10^-PLACES` (amounts in cents, scores rounded to 6 decimals) take a
/// fast path: below 1e9 two such values are at least 1e-6 apart, far more than a double's
/// resolution there, so the shortest text that reads back as the value is its digits to
/// `PLACES` decimals with trailing zeros dropped. Other values go through `{}`.
// Hand-written rather than `{}`: the formatting machinery was most of the main job's writer
// thread (commit 7df82b0), and the output must stay byte-identical to `{}`'s. `PLACES` is a
// constant so that every division below is by a constant (a multiply), and the text is built
// whole and written once: two writes and a run-time power and division cost three times as
// many instructions (callgrind).
fn write_decimal<const PLACES: u32>(out: &mut impl Write, value: f64) -> std::io::Result<()> {
    let scale = 10u64.pow(PLACES);
    let scaled = value * scale as f64;
    let units = scaled.round();
    // -0.0 is on the grid but written "-0".
    let on_grid = value.is_sign_positive()
        && (0.0..1e9 * scale as f64).contains(&units)
        && units / scale as f64 == value;
    if !on_grid {
        return write!(out, "{value}");
    }
    let units = units as u64;
    let (mut whole, mut fraction) = (units / scale, units % scale);
    // Right to left: the fraction's digits without its trailing zeros and the point, then
    // the whole part (below 1e9: nine digits at most).
    let mut text = [0u8; 32];
    let mut at = text.len();
    if fraction != 0 {
        let mut digits = PLACES;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        for _ in 0..digits {
            at -= 1;
            text[at] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        at -= 1;
        text[at] = b'.';
    }
    loop {
        at -= 1;
        text[at] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    out.write_all(&text[at..])
}

impl crate::pipeline::EventSink for CsvTables {
    fn scored(&mut self, event: &ScoredEvent) -> std::io::Result<()> {
        CsvTables::scored(self, event)
    }

    fn alert(&mut self, alert: &Alert) -> std::io::Result<()> {
        CsvTables::alert(self, alert)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_both()
    }
}

#[cfg(test)]
mod tests {
    use super::{write_decimal, write_text};

    /// The byte scan quotes exactly what a scan of the characters would: the four special
    /// characters are ASCII, and no byte of a multi-byte character is below 0x80.
    #[test]
    fn text_is_quoted_when_it_holds_a_special_character() {
        let texts = [
            "",
            "card-001",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            "café",
            "日本,語",
            "ü\"",
            "€",
            "2b16ab9a-9314-47a0-b855-cac6d6c8d504",
            ",",
            "\"",
        ];
        for text in texts {
            let mut out = Vec::new();
            write_text(&mut out, text).unwrap();
            let expected = if text.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text.to_owned()
            };
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{text:?}");
        }
    }

    fn fast(value: f64, places: u32) -> String {
        let mut out = Vec::new();
        match places {
            2 => write_decimal::<2>(&mut out, value),
            6 => write_decimal::<6>(&mut out, value),
            _ => unreachable!("the tables write 2 or 6 places"),
        }
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every score the ensemble can give (k / 1e6 for k in 0..=1e6) is written as `{}` writes
    /// it.
    #[test]
    fn every_score_on_the_grid_is_written_as_display_writes_it() {
        for k in 0..=1_000_000u32 {
            let score = (f64::from(k) / 1e6 * 1e6).round() / 1e6;
            assert_eq!(fast(score, 6), score.to_string(), "k = {k}");
        }
    }

    /// Amounts in cents up to 1e4 exhaustively, larger ones and off-grid values sampled.
    #[test]
    fn amounts_are_written_as_display_writes_them() {
        let mut values: Vec<f64> = (0..=1_000_000u32).map(|c| f64::from(c) / 100.0).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let cents = (x % 200_000_000_000) as f64;
            values.push(cents / 100.0);
            values.push((x as f64 / u64::MAX as f64) * 1e4); // off the grid
        }
        values.extend([
            1e9,
            999_999_999.99,
            1e12 + 0.5,
            1e-7,
            0.1 + 0.2,
            f64::MAX,
            -0.0,
            -1.5,
        ]);
        for amount in values {
            let amount = (amount * 100.0).round() / 100.0;
            assert_eq!(fast(amount, 2), amount.to_string(), "{amount:?}");
        }
        for off_grid in [
            1e-7,
            0.1 + 0.2,
            123.456_789,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            -2.5,
        ] {
            assert_eq!(fast(off_grid, 2), off_grid.to_string());
        }
    }
}
