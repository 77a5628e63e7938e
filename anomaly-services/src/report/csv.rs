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
            scored: open("scored_events.csv", SCORED_HEADER)?,
            alerts: open("alerts.csv", ALERTS_HEADER)?,
        })
    }

    /// Appends a row to `scored_events.csv`.
    pub fn scored(&mut self, e: &ScoredEvent) -> std::io::Result<()> {
        writeln!(
            self.scored,
            "{},{},{},{},{},{},{},{},{}",
            e.event_id,
            e.timestamp_ms,
            e.card_id,
            e.amount,
            e.score,
            u8::from(e.is_anomaly),
            u8::from(e.is_fraud),
            e.model_version,
            e.phase
        )
    }

    /// Appends a row to `alerts.csv`.
    pub fn alert(&mut self, a: &Alert) -> std::io::Result<()> {
        write!(
            self.alerts,
            "{},{:?},{},{},{},{},",
            a.alert_id,
            a.kind,
            a.severity.name(),
            a.timestamp_ms,
            a.event_id,
            a.card_id.as_deref().unwrap_or(""),
        )?;
        match a.score {
            Some(score) => writeln!(self.alerts, "{score}"),
            None => writeln!(self.alerts),
        }
    }

    /// Flushes both files.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.scored.flush()?;
        self.alerts.flush()
    }
}

impl crate::pipeline::EventSink for CsvTables {
    fn scored(&mut self, event: ScoredEvent) -> std::io::Result<()> {
        CsvTables::scored(self, &event)
    }

    fn alert(&mut self, alert: &Alert) -> std::io::Result<()> {
        CsvTables::alert(self, alert)
    }
}
