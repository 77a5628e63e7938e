//! A user's own transactions as the main job's input: CSV or JSON lines, streamed from disk
//! (memory does not grow with the file), columns mapped onto the pipeline's fields. A row that
//! is not a transaction is reported with its line number, never fatal.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ids::name_uuid;
use crate::messages::{RawTransaction, SCHEMA_VERSION};
use crate::pipeline::{Input, InputRecord, UnreadableRecord};

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

/// The records of an input file, each with its line number.
pub type Records = Box<dyn Iterator<Item = (i64, InputRecord)> + Send>;

/// Where each field is in a row: a CSV column index, or a JSON key.
struct Layout {
    /// CSV: the index of each field's column, `None` when the file has none.
    indices: [Option<usize>; Field::ALL.len()],
    /// JSON lines: the key of each field.
    keys: [String; Field::ALL.len()],
}

impl InputFile {
    /// The file's records as a run's input, each with its line number: rows are read as
    /// the run asks for them. The input is labelled when the file has a label column (for
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
        let (records, labelled, expected): (Records, bool, u64) = match self.format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(BufReader::with_capacity(1 << 20, file));
                let header = reader
                    .headers()
                    .map_err(|e| io(std::io::Error::other(e)))?
                    .clone();
                let position = |column: &str| header.iter().position(|h| h.trim() == column);
                let indices = Field::ALL.map(|f| position(self.columns.column(f)));
                for field in Field::ALL.into_iter().filter(|f| f.required()) {
                    if indices[field as usize].is_none() {
                        return Err(InputError::MissingColumn {
                            path: self.path.clone(),
                            field: field.name(),
                            column: self.columns.column(field).to_owned(),
                            header: header.iter().collect::<Vec<_>>().join(", "),
                        });
                    }
                }
                let labelled = indices[Field::Label as usize].is_some();
                let layout = Layout { indices, keys };
                let width = header.len();
                let rows = reader.into_records().map(move |row| match row {
                    Ok(row) => {
                        let line = row.position().map_or(0, |p| p.line());
                        (line as i64, csv_transaction(&row, width, &layout, line))
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        let error = format!("line {line}: not a CSV row: {e}");
                        let raw = String::new();
                        (line as i64, Err(UnreadableRecord { error, raw }))
                    }
                });
                (Box::new(rows), labelled, lines.saturating_sub(1))
            }
            Format::JsonLines => {
                let labelled = first_json_has(&self.path, &keys[Field::Label as usize]);
                let layout = Layout {
                    indices: [None; Field::ALL.len()],
                    keys,
                };
                let rows = BufReader::with_capacity(1 << 20, file)
                    .lines()
                    .enumerate()
                    .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
                    .map(move |(index, line)| {
                        let line_number = index as u64 + 1;
                        let record = match line {
                            Ok(line) => json_transaction(&line, &layout, line_number),
                            Err(e) => Err(UnreadableRecord {
                                error: format!("line {line_number}: cannot be read: {e}"),
                                raw: String::new(),
                            }),
                        };
                        (line_number as i64, record)
                    });
                (Box::new(rows), labelled, lines)
            }
        };
        Ok(Input {
            records,
            expected,
            source,
            labelled,
        })
    }
}

/// Newlines in the file: the progress bar's end and the charts' resolution.
fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        lines += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[read - 1];
    }
    // A last line without its newline still counts.
    Ok(lines + u64::from(last != b'\n'))
}

fn first_json_has(path: &Path, key: &str) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&l).ok())
        .is_some_and(|object| object.contains_key(key))
}

fn csv_transaction(
    row: &csv::StringRecord,
    width: usize,
    layout: &Layout,
    line: u64,
) -> InputRecord {
    let raw = || row.iter().collect::<Vec<_>>().join(",");
    if row.len() != width {
        return Err(UnreadableRecord {
            error: format!("line {line}: {} fields, the header has {width}", row.len()),
            raw: raw(),
        });
    }
    let cell = |field: Field| layout.indices[field as usize].and_then(|i| row.get(i));
    transaction(cell, line).map_err(|error| UnreadableRecord { error, raw: raw() })
}

fn json_transaction(text: &str, layout: &Layout, line: u64) -> InputRecord {
    let unreadable = |error: String| UnreadableRecord {
        error,
        raw: text.to_owned(),
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| unreadable(format!("line {line}: not a JSON object: {e}")))?;
    // Numbers and booleans are read as their JSON text, strings as they are.
    let values: Vec<Option<String>> = Field::ALL
        .iter()
        .map(|&f| match object.get(&layout.keys[f as usize]) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        })
        .collect();
    transaction(|f| values[f as usize].as_deref(), line).map_err(unreadable)
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
                v.parse::<f64>()
                    .map_err(|_| format!("line {line}: {} `{v}` is not a number", field.name()))
            })
            .transpose()
    };
    let card_id = text(Field::CardId)?.unwrap_or_default().to_owned();
    let timestamp = text(Field::Timestamp)?.unwrap_or_default();
    let timestamp_ms = parse_timestamp(timestamp).ok_or_else(|| {
        format!(
            "line {line}: timestamp `{timestamp}` is neither Unix milliseconds nor ISO-8601 UTC (2026-01-01T12:30:00Z)"
        )
    })?;
    let amount = number(Field::Amount)?.unwrap_or_default();
    let is_fraud = match text(Field::Label)? {
        None => false,
        Some("1" | "true" | "True" | "TRUE" | "yes" | "fraud") => true,
        Some("0" | "false" | "False" | "FALSE" | "no" | "normal") => false,
        Some(other) => {
            return Err(format!(
                "line {line}: label `{other}` is not 1/0, true/false or yes/no"
            ));
        }
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

/// Unix milliseconds from an integer, or from ISO-8601 UTC (`YYYY-MM-DDTHH:MM:SS[.fff][Z]`,
/// a space allowed for the `T`).
///
/// ```
/// use anomaly_services::input::parse_timestamp;
///
/// assert_eq!(parse_timestamp("1767225600123"), Some(1_767_225_600_123));
/// assert_eq!(parse_timestamp("2026-01-01T00:00:00.123Z"), Some(1_767_225_600_123));
/// assert_eq!(parse_timestamp("2026-01-01 00:00:01"), Some(1_767_225_601_000));
/// assert_eq!(parse_timestamp("yesterday"), None);
/// ```
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    // Hand-written rather than a date crate: one fixed UTC layout is all the input needs.
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (
        clock.next()?.ok()?,
        clock.next()?.ok()?,
        clock.next()?.ok()?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || hour < 0
        || minute < 0
        || second < 0
    {
        return None;
    }
    let millis = match fraction.len() {
        0 => 0,
        n if fraction.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: i64 = fraction[..n.min(3)].parse().ok()?;
            digits * 10i64.pow(3 - n.min(3) as u32)
        }
        _ => return None,
    };
    // Howard Hinnant's days-from-civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
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

/// A CSV cell: quoted when it holds a comma, a quote or a line break.
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}
