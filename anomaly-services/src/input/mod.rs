//! A user's own transactions as the main job's input: CSV or JSON lines, streamed from disk
//! (memory does not grow with the file), columns mapped onto the pipeline's fields. A row that
//! is not a transaction is reported with its line number, never fatal.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ids::name_uuid;
use crate::messages::{RawTransaction, SCHEMA_VERSION};
use crate::pipeline::{Input, InputRecord, UnreadableRecord};

mod json_object;
mod read_ahead;
mod records;

use read_ahead::ReadAhead;
pub use records::MAX_RECORD_BYTES;
use records::{CsvSplitter, Fields, Record, RecordReader};

/// The phase of every event of an input without a phase column.
pub const INPUT_PHASE: &str = "input";

/// How the file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row (quoted fields allowed).
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// JSON lines for `.jsonl`, `.ndjson` and `.json` files, CSV otherwise.
    ///
    /// ```
    /// use anomaly_services::input::Format;
    ///
    /// assert_eq!(Format::from_path("tx.jsonl".as_ref()), Format::JsonLines);
    /// assert_eq!(Format::from_path("tx.csv".as_ref()), Format::Csv);
    /// ```
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => Self::JsonLines,
            _ => Self::Csv,
        }
    }
}

/// A pipeline field a column can be mapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// Unique id of the transaction; derived from the line number when not mapped.
    EventId,
    /// The card (required).
    CardId,
    /// Event time (required): Unix milliseconds, or ISO-8601 UTC such as
    /// `2026-01-01T12:30:00.250Z`.
    Timestamp,
    /// Amount (required), a number >= 0.
    Amount,
    /// Merchant id; empty when not mapped.
    Merchant,
    /// Merchant category; `unknown` when not mapped.
    Category,
    /// Latitude in degrees; 0 when not mapped.
    Latitude,
    /// Longitude in degrees; 0 when not mapped.
    Longitude,
    /// Ground truth, `1`/`0`, `true`/`false` or `yes`/`no`; without it there is no
    /// precision or recall.
    Label,
    /// A segment name carried to the report (the synthetic stream's phases); `input` when not
    /// mapped.
    Phase,
}

impl Field {
    /// Every field, in the order of [`Field::name`]'s list.
    pub const ALL: [Field; 10] = [
        Field::EventId,
        Field::CardId,
        Field::Timestamp,
        Field::Amount,
        Field::Merchant,
        Field::Category,
        Field::Latitude,
        Field::Longitude,
        Field::Label,
        Field::Phase,
    ];

    /// The field's name in `--map` and mapping files.
    pub fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::CardId => "card_id",
            Field::Timestamp => "timestamp",
            Field::Amount => "amount",
            Field::Merchant => "merchant",
            Field::Category => "category",
            Field::Latitude => "latitude",
            Field::Longitude => "longitude",
            Field::Label => "label",
            Field::Phase => "phase",
        }
    }

    /// The column read when the field is not mapped: the names the synthetic stream's export
    /// uses.
    fn default_column(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp_ms",
            Field::Label => "is_fraud",
            other => other.name(),
        }
    }

    fn required(self) -> bool {
        matches!(self, Field::CardId | Field::Timestamp | Field::Amount)
    }
}

impl std::str::FromStr for Field {
    type Err = InputError;

    fn from_str(name: &str) -> Result<Self, InputError> {
        Field::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| InputError::UnknownField(name.to_owned()))
    }
}

/// Why an input cannot be read at all (a bad row is not one of these: it is reported and
/// skipped).
#[derive(Debug, Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A mapping names no field of ours.
    #[error(
        "unknown field `{0}` in the column mapping; the fields are event_id, card_id, timestamp, amount, merchant, category, latitude, longitude, label and phase"
    )]
    UnknownField(String),
    /// A mapping is not `field=column`.
    #[error("`{0}` is not a mapping: write field=column, for example amount=amt_usd")]
    BadMapping(String),
    /// The CSV header lacks a required field's column.
    #[error(
        "{path}: no column `{column}` for the required field {field} (the header has: {header}); map it with --map {field}=COLUMN"
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// The column it is mapped to.
        column: String,
        /// The header's columns.
        header: String,
    },
}

/// Which column holds each field.
///
/// ```
/// use anomaly_services::input::{ColumnMap, Field};
///
/// let mut map = ColumnMap::default();
/// map.set_from("amount=amt_usd")?;
/// assert_eq!(map.column(Field::Amount), "amt_usd");
/// assert_eq!(map.column(Field::Timestamp), "timestamp_ms");
/// # Ok::<(), anomaly_services::input::InputError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnMap {
    mapped: HashMap<Field, String>,
}

impl ColumnMap {
    /// The column of `field`.
    pub fn column(&self, field: Field) -> &str {
        self.mapped
            .get(&field)
            .map_or(field.default_column(), String::as_str)
    }

    /// Maps `field` to `column`.
    pub fn set(&mut self, field: Field, column: impl Into<String>) {
        self.mapped.insert(field, column.into());
    }

    /// Applies one `field=column` mapping.
    pub fn set_from(&mut self, mapping: &str) -> Result<(), InputError> {
        let (field, column) = mapping
            .split_once('=')
            .map(|(f, c)| (f.trim(), c.trim()))
            .filter(|(f, c)| !f.is_empty() && !c.is_empty())
            .ok_or_else(|| InputError::BadMapping(mapping.to_owned()))?;
        self.set(field.parse()?, column);
        Ok(())
    }

    /// Applies a mapping file: one `field = column` a line; blank lines and `#` comments
    /// are skipped.
    pub fn read_file(&mut self, path: &Path) -> Result<(), InputError> {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Io {
            path: path.to_owned(),
            source,
        })?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                self.set_from(line)?;
            }
        }
        Ok(())
    }
}

/// A transaction file to run the pipeline on.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// The file.
    pub path: PathBuf,
    /// Its layout.
    pub format: Format,
    /// Its columns.
    pub columns: ColumnMap,
}
impl InputFile {
    /// The file's records as a run's input, each with its line number: a thread of its own
    /// reads and parses them a few thousand rows ahead of the run (so memory stays flat). The
    /// input is labelled when the file has a label column (for
    /// JSON lines: when the first record has the label's key).
    pub fn open(&self) -> Result<Input<Records>, InputError> {
        let io = |source| InputError::Io {
            path: self.path.clone(),
            source,
        };
        let lines = count_lines(&self.path).map_err(io)?;
        let file = File::open(&self.path).map_err(io)?;
        let source = self.path.display().to_string();
        let keys = Field::ALL.map(|f| self.columns.column(f).to_owned());
        let csv = self.format == Format::Csv;
        let mut reader = RecordReader::new(BufReader::with_capacity(1 << 20, file), csv);
        let mut layout = Layout {
            indices: [None; Field::ALL.len()],
            keys,
            width: 0,
        };
        let mut splitter = CsvSplitter::new();
        let mut text = Vec::new();
        let first = reader.next_record(&mut text).map_err(io)?;
        let (labelled, pending, expected) = match self.format {
            Format::Csv => {
                let header: Vec<String> = match first {
                    Some(Record::Text { .. }) => splitter
                        .split(&text)
                        .map_err(|e| {
                            io(std::io::Error::new(
                                ErrorKind::InvalidData,
                                format!("header: {e}"),
                            ))
                        })?
                        .iter()
                        .map(|h| h.trim().to_owned())
                        .collect(),
                    Some(Record::TooLong { .. }) => {
                        return Err(io(std::io::Error::new(
                            ErrorKind::InvalidData,
                            format!("the header is longer than {MAX_RECORD_BYTES} bytes"),
                        )));
                    }
                    None => Vec::new(),
                };
                let position = |column: &str| header.iter().position(|h| h == column);
                layout.indices = Field::ALL.map(|f| position(self.columns.column(f)));
                layout.width = header.len();
                for field in Field::ALL.into_iter().filter(|f| f.required()) {
                    if layout.indices[field as usize].is_none() {
                        return Err(InputError::MissingColumn {
                            path: self.path.clone(),
                            field: field.name(),
                            column: self.columns.column(field).to_owned(),
                            header: header.join(", "),
                        });
                    }
                }
                let labelled = layout.indices[Field::Label as usize].is_some();
                (labelled, None, lines.saturating_sub(1))
            }
            Format::JsonLines => {
                if let Some(Record::Text { .. }) = first
                    && text.first() == Some(&b'[')
                {
                    return Err(io(std::io::Error::new(
                        ErrorKind::InvalidData,
                        "a JSON array, not JSON lines: write one transaction object a line",
                    )));
                }
                // Read as every record is: the label's key present, even if null.
                let labelled = matches!(first, Some(Record::Text { .. }))
                    && json_object::mapped_values(&text, &layout.keys)
                        .is_ok_and(|values| values[Field::Label as usize].is_some());
                (labelled, first, lines)
            }
        };
        let records = FileRecords {
            reader,
            splitter,
            layout,
            text,
            pending,
            finished: false,
        };
        let records = ReadAhead::spawn(records).map_err(|e| {
            io(std::io::Error::new(
                e.kind(),
                format!("cannot start the thread that parses it: {e}"),
            ))
        })?;
        Ok(Input {
            records: Box::new(records),
            expected,
            source,
            labelled,
            boundaries: None,
        })
    }
}

/// The records of an input file, each with its line number.
pub type Records = Box<dyn Iterator<Item = (i64, InputRecord)> + Send>;

/// Where each field is in a row: a CSV column index, or a JSON key.
struct Layout {
    /// CSV: the index of each field's column, `None` when the file has none.
    indices: [Option<usize>; Field::ALL.len()],
    /// JSON lines: the key of each field.
    keys: [String; Field::ALL.len()],
    /// CSV: the header's number of columns.
    width: usize,
}

/// The transactions of a file, read as they are asked for.
struct FileRecords {
    reader: RecordReader<BufReader<File>>,
    splitter: CsvSplitter,
    layout: Layout,
    /// The current record's bytes.
    text: Vec<u8>,
    /// A record read ahead (the first line of a JSON-lines file), in `text`.
    pending: Option<Record>,
    /// An I/O error ended the file.
    finished: bool,
}

impl Iterator for FileRecords {
    type Item = (i64, InputRecord);

    fn next(&mut self) -> Option<(i64, InputRecord)> {
        if self.finished {
            return None;
        }
        let record = match self.pending.take() {
            Some(record) => record,
            None => match self.reader.next_record(&mut self.text) {
                Ok(Some(record)) => record,
                Ok(None) => return None,
                Err(e) => {
                    // The rest of the file cannot be read: the run stops with this error.
                    self.finished = true;
                    let failed = UnreadableRecord {
                        error: format!("the file cannot be read further: {e}"),
                        raw: String::new(),
                        fatal: true,
                    };
                    return Some((0, Err(failed)));
                }
            },
        };
        let (line, parsed) = match record {
            Record::TooLong { line } => {
                let error = format!("line {line}: longer than {MAX_RECORD_BYTES} bytes, skipped");
                let raw = String::new();
                (line, Err(UnreadableRecord::bad(error, raw)))
            }
            Record::Text { line } if self.layout.width > 0 => {
                let fields = self.splitter.split(&self.text);
                (
                    line,
                    csv_transaction(fields, &self.text, &self.layout, line),
                )
            }
            Record::Text { line } => (line, json_transaction(&self.text, &self.layout, line)),
        };
        Some((line as i64, parsed))
    }
}

/// Newlines in the file: the progress bar's end and the charts' resolution.
fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[read - 1];
    }
    // A last line without its newline still counts.
    Ok(lines + u64::from(last != b'\n'))
}

/// At most `LIMIT` characters of `text` for a message, marked when cut.
fn shown(text: &str) -> String {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// A record's text for its dead letter (cut to 4 KiB there).
fn raw_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned()
}

fn csv_transaction(
    fields: Result<Fields<'_>, String>,
    text: &[u8],
    layout: &Layout,
    line: u64,
) -> InputRecord {
    let bad = |error: String| UnreadableRecord::bad(error, raw_text(text));
    let row = fields.map_err(|e| bad(format!("line {line}: {e}")))?;
    if row.len() != layout.width {
        return Err(bad(format!(
            "line {line}: {} fields, the header has {}",
            row.len(),
            layout.width
        )));
    }
    let cell = |field: Field| layout.indices[field as usize].and_then(|i| row.get(i));
    transaction(cell, line).map_err(bad)
}

fn json_transaction(text: &[u8], layout: &Layout, line: u64) -> InputRecord {
    let bad = |error: String| UnreadableRecord::bad(error, raw_text(text));
    let values = json_object::mapped_values(text, &layout.keys)
        .map_err(|e| bad(format!("line {line}: not a JSON object: {e}")))?;
    transaction(
        |f| values[f as usize].as_ref().and_then(|v| v.as_deref()),
        line,
    )
    .map_err(bad)
}

/// A transaction from its fields' text; the error names the line and the field.
fn transaction<'a>(
    cell: impl Fn(Field) -> Option<&'a str>,
    line: u64,
) -> Result<RawTransaction, String> {
    let text = |field: Field| -> Result<Option<&'a str>, String> {
        match cell(field).map(str::trim) {
            Some("") | None if field.required() => {
                Err(format!("line {line}: {} is missing", field.name()))
            }
            Some("") | None => Ok(None),
            Some(value) => Ok(Some(value)),
        }
    };
    let number = |field: Field| -> Result<Option<f64>, String> {
        text(field)?
            .map(|v| {
                v.parse::<f64>().map_err(|_| {
                    format!(
                        "line {line}: {} `{}` is not a number",
                        field.name(),
                        shown(v)
                    )
                })
            })
            .transpose()
    };
    let card_id = text(Field::CardId)?.unwrap_or_default().to_owned();
    let timestamp = text(Field::Timestamp)?.unwrap_or_default();
    let timestamp_ms = parse_timestamp(timestamp).ok_or_else(|| {
        format!(
            "line {line}: timestamp `{}` is neither Unix milliseconds nor ISO-8601 UTC (2026-01-01T12:30:00Z) between the years 0 and 9999",
            shown(timestamp)
        )
    })?;
    let amount = number(Field::Amount)?.unwrap_or_default();
    let is_fraud = match text(Field::Label)? {
        None => false,
        Some(label) => parse_label(label).ok_or_else(|| {
            format!(
                "line {line}: label `{}` is not 1/0, true/false or yes/no",
                shown(label)
            )
        })?,
    };
    let event_id = match text(Field::EventId)? {
        Some(id) => id.to_owned(),
        // Derived from the line, so that a rerun gives the same alert ids.
        None => name_uuid("input-line", &line.to_string()),
    };
    Ok(RawTransaction {
        schema_version: SCHEMA_VERSION,
        event_id,
        card_id,
        timestamp_ms,
        amount,
        merchant: text(Field::Merchant)?.unwrap_or_default().to_owned(),
        category: text(Field::Category)?.unwrap_or("unknown").to_owned(),
        latitude: number(Field::Latitude)?.unwrap_or(0.0),
        longitude: number(Field::Longitude)?.unwrap_or(0.0),
        is_fraud,
        phase: text(Field::Phase)?.unwrap_or(INPUT_PHASE).to_owned(),
    })
}

/// A ground-truth label: `1`/`0` (also `1.0`/`0.0`), or true/false, yes/no, y/n, t/f,
/// fraud/normal in any case.
fn parse_label(text: &str) -> Option<bool> {
    if let Ok(number) = text.parse::<f64>() {
        return match number {
            1.0 => Some(true),
            0.0 => Some(false),
            _ => None,
        };
    }
    let spelled = |words: [&str; 5]| words.iter().any(|w| w.eq_ignore_ascii_case(text));
    if spelled(["true", "t", "yes", "y", "fraud"]) {
        Some(true)
    } else if spelled(["false", "f", "no", "n", "normal"]) {
        Some(false)
    } else {
        None
    }
}

/// Unix milliseconds of 0000-01-01T00:00:00Z.
const EARLIEST_MS: i64 = -62_167_219_200_000;
/// Unix milliseconds of 9999-12-31T23:59:59.999Z.
const LATEST_MS: i64 = 253_402_300_799_999;

/// Unix milliseconds from an integer (or an integral number such as `1767225600000.0`), or
/// from ISO-8601 UTC ([`parse_utc`](crate::timestamps::parse_utc)); `None` for anything else,
/// for dates that do not exist, and outside the years 0 to 9999.
///
/// ```
/// use anomaly_services::input::parse_timestamp;
///
/// assert_eq!(parse_timestamp("1767225600123"), Some(1_767_225_600_123));
/// assert_eq!(parse_timestamp("2026-01-01T00:00:00.123Z"), Some(1_767_225_600_123));
/// assert_eq!(parse_timestamp("2026-01-01 00:00:01"), Some(1_767_225_601_000));
/// assert_eq!(parse_timestamp("2026-02-29T00:00:00Z"), None); // not a leap year
/// assert_eq!(parse_timestamp("yesterday"), None);
/// ```
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let in_range = |ms: i64| (EARLIEST_MS..=LATEST_MS).contains(&ms).then_some(ms);
    if let Ok(ms) = text.parse::<i64>() {
        return in_range(ms);
    }
    if let Ok(ms) = text.parse::<f64>() {
        let integral = ms.fract() == 0.0 && ms.abs() <= LATEST_MS as f64;
        return integral.then(|| in_range(ms as i64)).flatten();
    }
    crate::timestamps::parse_utc(text).and_then(in_range)
}

/// The CSV header [`write_csv`] writes: the default column of every field.
pub const CSV_HEADER: &str =
    "event_id,card_id,timestamp_ms,amount,merchant,category,latitude,longitude,is_fraud,phase";

/// Writes transactions as CSV in the layout the input reads without any mapping (what
/// `anomaly-pipeline --export-transactions` writes). Values are written exactly (shortest
/// round-trip form), so reading the file back gives the same transactions.
///
/// ```
/// use anomaly_services::generator::{Generator, GeneratorParams};
/// use anomaly_services::input::write_csv;
///
/// let mut out = Vec::new();
/// let stream = Generator::new(GeneratorParams { events: 3, ..GeneratorParams::default() });
/// write_csv(&mut out, stream)?;
/// assert_eq!(String::from_utf8_lossy(&out).lines().count(), 4);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_csv(
    out: impl Write,
    transactions: impl IntoIterator<Item = RawTransaction>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    writeln!(out, "{CSV_HEADER}")?;
    for t in transactions {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            quoted(&t.event_id),
            quoted(&t.card_id),
            t.timestamp_ms,
            t.amount,
            quoted(&t.merchant),
            quoted(&t.category),
            t.latitude,
            t.longitude,
            u8::from(t.is_fraud),
            quoted(&t.phase)
        )?;
    }
    out.flush()
}

/// Writes transactions as JSON lines, one object a line with the field names the input reads
/// without any mapping (and `schema_version`, which it ignores). Numbers are written in their
/// shortest round-trip form, so reading the file back gives the same transactions.
///
/// ```
/// use anomaly_services::generator::{Generator, GeneratorParams};
/// use anomaly_services::input::write_json_lines;
///
/// let mut out = Vec::new();
/// let stream = Generator::new(GeneratorParams { events: 3, ..GeneratorParams::default() });
/// write_json_lines(&mut out, stream)?;
/// let text = String::from_utf8_lossy(&out);
/// assert_eq!(text.lines().count(), 3);
/// assert!(text.lines().all(|line| line.starts_with('{') && line.contains("\"card_id\":")));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_json_lines(
    out: impl Write,
    transactions: impl IntoIterator<Item = RawTransaction>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    for t in transactions {
        serde_json::to_writer(&mut out, &t)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes transactions in `format`: [`write_csv`] or [`write_json_lines`].
pub fn write_transactions(
    out: impl Write,
    format: Format,
    transactions: impl IntoIterator<Item = RawTransaction>,
) -> std::io::Result<()> {
    match format {
        Format::Csv => write_csv(out, transactions),
        Format::JsonLines => write_json_lines(out, transactions),
    }
}

/// A CSV cell: quoted when it holds a comma, a quote or a line break.
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_the_calendar_are_refused() {
        for bad in [
            "2026-02-31T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-13-01T00:00:00Z",
            "300000000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "9223372036854775807",
            "1e300",
            "1767225600000.5",
            "2026-1-1T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(
            parse_timestamp("2024-02-29T23:59:59.9Z"),
            Some(1_709_251_199_900)
        );
        assert_eq!(parse_timestamp("1767225600000.0"), Some(1_767_225_600_000));
        assert_eq!(parse_timestamp("0000-01-01T00:00:00Z"), Some(EARLIEST_MS));
        assert_eq!(parse_timestamp("9999-12-31T23:59:59.999Z"), Some(LATEST_MS));
    }

    #[test]
    fn labels_in_their_usual_spellings() {
        for yes in ["1", "1.0", "true", "TRUE", "Yes", "y", "T", "fraud"] {
            assert_eq!(parse_label(yes), Some(true), "{yes}");
        }
        for no in ["0", "0.0", "false", "No", "n", "F", "normal"] {
            assert_eq!(parse_label(no), Some(false), "{no}");
        }
        for bad in ["2", "maybe", "-1", "NaN"] {
            assert_eq!(parse_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn messages_quote_at_most_64_characters() {
        let long = "x".repeat(10_000);
        assert_eq!(shown(&long).len(), 67);
        assert_eq!(shown("short"), "short");
        assert_eq!(shown(&"é".repeat(100)).chars().count(), 67);
    }
}
