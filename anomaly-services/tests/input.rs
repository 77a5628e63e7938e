//! The main job on a user's own transactions (`--input`): the same events read from a file
//! give the same run as generated in memory; bad rows are dead letters with their line
//! numbers; an input without labels runs without precision or recall.

use std::path::{Path, PathBuf};

use anomaly_services::generator::Generator;
use anomaly_services::input::{ColumnMap, Format, InputFile, write_csv, write_json_lines};
use anomaly_services::pipeline::{PipelineConfig, PipelineRun, run, run_streaming};
use anomaly_services::report::{self, CsvTables, Summary};

fn config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.generator.events = 20_000;
    config.generator.cards = 300;
    config.generator.seed = 23;
    config.retraining.debounce_events = 2_000;
    config.retraining.history = 2_000;
    config.retraining.holdout = 1_000;
    config
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anomaly-input-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `file` streaming into `dir`, as the binary does.
fn run_file(config: &PipelineConfig, file: &InputFile, dir: &Path) -> (PipelineRun, Summary) {
    let mut tables = CsvTables::create(dir).unwrap();
    let result = run_streaming(config, file.open().unwrap(), &mut tables, |_, _| {}).unwrap();
    tables.finish().unwrap();
    let summary = report::summarize(&result);
    report::write_summaries(dir, &summary, &result).unwrap();
    (result, summary)
}

fn without_timings(mut summary: Summary) -> Summary {
    summary.seconds = 0.0;
    summary.throughput = 0.0;
    summary
}

/// The synthetic stream written to CSV and to JSON lines, then read back: the same scored
/// events, alerts, drifts, jobs and figures as the run that generated it in memory.
#[test]
fn a_file_of_the_synthetic_stream_gives_the_same_run() {
    let dir = scratch("round-trip");
    let config = config();
    let in_memory = run(&config, |_, _| {}).unwrap();
    let expected_summary = report::summarize(&in_memory);
    let expected_dir = dir.join("in-memory");
    report::write(&expected_dir, &expected_summary, &in_memory).unwrap();

    let csv_path = dir.join("stream.csv");
    let file = std::fs::File::create(&csv_path).unwrap();
    write_csv(file, Generator::new(config.generator.clone())).unwrap();
    let jsonl_path = dir.join("stream.jsonl");
    let file = std::fs::File::create(&jsonl_path).unwrap();
    write_json_lines(file, Generator::new(config.generator.clone())).unwrap();

    for (path, format) in [(csv_path, Format::Csv), (jsonl_path, Format::JsonLines)] {
        let out = dir.join(format!("{format:?}"));
        std::fs::create_dir_all(&out).unwrap();
        let file = InputFile {
            path,
            format,
            columns: ColumnMap::default(),
        };
        let (result, summary) = run_file(&config, &file, &out);
        for table in ["scored_events.csv", "alerts.csv"] {
            let read = |d: &Path| std::fs::read(d.join(table)).unwrap();
            assert!(
                read(&expected_dir) == read(&out),
                "{format:?}: {table} differs"
            );
        }
        assert_eq!(
            without_timings(summary),
            without_timings(expected_summary.clone()),
            "{format:?}"
        );
        assert_eq!(result.drifts, in_memory.drifts, "{format:?}");
        assert_eq!(result.jobs, in_memory.jobs, "{format:?}");
        assert_eq!(result.notified, in_memory.notified, "{format:?}");
        assert_eq!(result.boundaries, in_memory.boundaries, "{format:?}");
        assert!(result.labelled);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The main job's binary with `args`; its standard output, once it has succeeded.
fn run_pipeline(args: &[&std::ffi::OsStr]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_anomaly-pipeline"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn repository_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The sample in the repository, through the binary with its mapping file: every good row
/// is scored, every bad one is a dead letter at its line, and the report lists them.
#[test]
fn the_sample_file_runs_and_reports_its_bad_rows_by_line() {
    let dir = scratch("sample");
    let sample = repository_file("examples/data/transactions.csv");
    let mapping = repository_file("examples/data/transactions.mapping");
    let stdout = run_pipeline(&[
        "--input".as_ref(),
        sample.as_os_str(),
        "--mapping".as_ref(),
        mapping.as_os_str(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(
        stdout.contains("events: 3000 scored, 6 dead-lettered"),
        "{stdout}"
    );

    let details: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let letters: Vec<(i64, String)> = details["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["offset"].as_i64().unwrap(),
                d["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The bad rows' lines, each with the reason a user can act on.
    let expected = [
        (102, "amount is missing"),
        (503, "amount `twelve` is not a number"),
        (1204, "6 fields, the header has 10"),
        (1805, "timestamp `last tuesday`"),
        (2406, "refunds and reversals are not scored"),
        (2907, "label `maybe`"),
    ];
    assert_eq!(letters.len(), expected.len());
    for ((line, error), (expected_line, expected_error)) in letters.iter().zip(expected) {
        assert_eq!(*line, expected_line);
        assert!(error.contains(expected_error), "line {line}: {error}");
    }
    // Each bad line's content really is the row the dead letter names.
    let text = std::fs::read_to_string(&sample).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (line, _) in &letters {
        assert!(
            lines[*line as usize - 1].starts_with("tx-bad-"),
            "line {line}"
        );
    }
    let scored = std::fs::read_to_string(dir.join("scored_events.csv")).unwrap();
    assert_eq!(scored.lines().count(), 1 + 3000);
    assert!(!scored.contains("tx-bad-"));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"dead-letters\">"));
    assert!(html.contains("<td>1805</td>"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// JSON lines with other key names and no label: mapped, scored, and reported without
/// precision or recall; a missing required column is refused before the run.
#[test]
fn an_unlabelled_mapped_input_runs_without_precision_and_recall() {
    let dir = scratch("unlabelled");
    let path = dir.join("tx.jsonl");
    let mut lines = Vec::new();
    for (i, tx) in Generator::new(config().generator).take(3_000).enumerate() {
        lines.push(
            serde_json::json!({
                "id": tx.event_id, "pan_token": tx.card_id,
                "time": anomaly_services::timestamps::iso8601(tx.timestamp_ms),
                "value": tx.amount, "category": tx.category,
            })
            .to_string(),
        );
        if i == 10 {
            lines.push("{not json".into());
        }
    }
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut columns = ColumnMap::default();
    for mapping in [
        "event_id=id",
        "card_id=pan_token",
        "timestamp=time",
        "amount=value",
    ] {
        columns.set_from(mapping).unwrap();
    }
    let file = InputFile {
        path: path.clone(),
        format: Format::JsonLines,
        columns,
    };
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (result, summary) = run_file(&config(), &file, &out);
    assert!(!result.labelled && !summary.labelled);
    // Without labels the error stream means nothing: no DDM drift, no retraining job.
    assert!(
        result
            .drifts
            .iter()
            .all(|d| d.detector == anomaly_services::messages::DriftSource::Adwin)
    );
    assert!(result.jobs.is_empty());
    assert_eq!((summary.scored, summary.dead_letters), (3_000, 1));
    assert_eq!(result.dead_letters[0].offset, 12);
    assert_eq!(summary.roc_auc, None);
    assert_eq!(summary.true_positives + summary.false_negatives, 0);
    let text = report::render_text(&summary, &result);
    assert!(text.contains("no label column"), "{text}");
    assert!(!text.contains("precision 0"));

    // A CSV without the amount's column is refused, naming what to map.
    let csv = dir.join("no-amount.csv");
    std::fs::write(&csv, "card_id,timestamp_ms\nc1,1767225600000\n").unwrap();
    let refused = InputFile {
        path: csv,
        format: Format::Csv,
        columns: ColumnMap::default(),
    }
    .open()
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(refused.contains("--map amount=COLUMN"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spreadsheet's export: a byte-order mark, CRLF line ends, blank lines, quoted fields with
/// commas, quotes and a line break, an over-long line. Line numbers stay those of the file,
/// and the ids come out quoted in the CSVs.
#[test]
fn awkward_csv_keeps_its_line_numbers_and_its_quoting() {
    let dir = scratch("awkward");
    let header = "\u{feff}event_id,card_id,timestamp_ms,amount,category,is_fraud";
    let mut lines = vec![header.to_owned()];
    for i in 0..400 {
        if i == 100 {
            lines.push(String::new()); // blank: skipped, counted
        }
        if i == 200 {
            lines.push(format!(
                "long,card,1767225600000,{},grocery,0",
                "9".repeat(1 << 21)
            ));
        }
        let card = if i % 2 == 0 {
            "\"card, \"\"A\"\"\""
        } else {
            "card-b"
        };
        // A quoted line break: the record spans two lines of the file.
        let category = if i == 300 {
            "\"multi\nline\""
        } else {
            "grocery"
        };
        lines.push(format!(
            "e{i},{card},{},{}.5,{category},{}",
            1_767_225_600_000i64 + i * 1000,
            10 + i % 7,
            u8::from(i % 50 == 0)
        ));
    }
    let text = lines.join("\r\n") + "\r\n";
    let path = dir.join("export.csv");
    std::fs::write(&path, &text).unwrap();
    let file = InputFile {
        path,
        format: Format::Csv,
        columns: ColumnMap::default(),
    };
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (result, summary) = run_file(&config(), &file, &out);
    assert_eq!((summary.scored, summary.dead_letters), (400, 1));
    // The over-long line is the one dead letter, at its own line number.
    let long_line = text
        .split("\r\n")
        .position(|l| l.starts_with("long,"))
        .unwrap() as i64
        + 1;
    assert_eq!(result.dead_letters[0].offset, long_line);
    assert!(result.dead_letters[0].error.contains("longer than"));
    let scored = std::fs::read_to_string(out.join("scored_events.csv")).unwrap();
    assert!(
        scored.contains(",\"card, \"\"A\"\"\","),
        "ids with commas and quotes are quoted"
    );
    // Read back as CSV, every row has the header's nine columns.
    let mut splitter_rows = 0;
    for row in scored.lines().skip(1) {
        let mut cells = 0;
        let mut quoted = false;
        for c in row.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => cells += 1,
                _ => {}
            }
        }
        assert_eq!(cells + 1, 9, "{row}");
        splitter_rows += 1;
    }
    assert_eq!(splitter_rows, 400);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sink that fails after `fail_after` scored events.
struct FailingSink {
    fail_after: usize,
    seen: usize,
}

impl anomaly_services::pipeline::EventSink for FailingSink {
    fn scored(&mut self, _: &anomaly_services::messages::ScoredEvent) -> std::io::Result<()> {
        self.seen += 1;
        if self.seen > self.fail_after {
            return Err(std::io::Error::other("disk full"));
        }
        Ok(())
    }

    fn alert(&mut self, _: &anomaly_services::messages::Alert) -> std::io::Result<()> {
        Ok(())
    }
}

/// When writing fails, or the input cannot be read further, the run stops with that error
/// (no hang with every channel full, no success on half the data).
#[test]
fn a_failing_writer_or_reader_stops_the_run_with_its_error() {
    let mut config = config();
    config.generator.events = 50_000;
    let mut sink = FailingSink {
        fail_after: 1_000,
        seen: 0,
    };
    let input = anomaly_services::pipeline::synthetic_input(&config);
    let error = run_streaming(&config, input, &mut sink, |_, _| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("disk full"), "{error}");
    assert_eq!(sink.seen, 1_001, "the writer stopped at its first error");

    // A reader whose file breaks after 3,000 records.
    let records = Generator::new(config.generator.clone())
        .take(3_000)
        .enumerate()
        .map(|(i, tx)| (i as i64, Ok(tx)))
        .chain(std::iter::once((
            3_000,
            Err(anomaly_services::pipeline::UnreadableRecord {
                error: "input/output error".into(),
                raw: String::new(),
                fatal: true,
            }),
        )))
        .chain(
            Generator::new(config.generator.clone())
                .enumerate()
                .map(|(i, tx)| (i as i64, Ok(tx))),
        );
    let input = anomaly_services::pipeline::Input {
        records,
        expected: 50_000,
        source: "broken".into(),
        labelled: true,
        boundaries: None,
    };
    let mut sink = FailingSink {
        fail_after: usize::MAX,
        seen: 0,
    };
    let error = run_streaming(&config, input, &mut sink, |_, _| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("reading the input: input/output error"),
        "{error}"
    );
    assert!(
        sink.seen <= 3_000,
        "nothing after the broken record was scored"
    );
}

/// `--export-transactions` writes the format its file's extension (or --format) names, and
/// both formats read back into the same run.
#[test]
fn the_export_follows_the_extension_and_reads_back_in_either_format() {
    let dir = scratch("export");
    let (csv, jsonl, forced) = (
        dir.join("stream.csv"),
        dir.join("stream.jsonl"),
        dir.join("stream.txt"),
    );
    for (path, format) in [(&csv, None), (&jsonl, None), (&forced, Some("jsonl"))] {
        let mut args = vec!["--export-transactions".as_ref(), path.as_os_str()];
        args.extend(["--events", "2000"].map(std::ffi::OsStr::new));
        if let Some(format) = format {
            args.extend(["--format", format].map(std::ffi::OsStr::new));
        }
        run_pipeline(&args);
    }
    let text = |path: &Path| std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text(&csv).lines().next(),
        Some(anomaly_services::input::CSV_HEADER)
    );
    assert_eq!(text(&csv).lines().count(), 2001);
    assert_eq!(text(&jsonl), text(&forced));
    assert_eq!(text(&jsonl).lines().count(), 2000);
    for line in text(&jsonl).lines() {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap();
        assert!(object["card_id"].is_string() && object["amount"].is_number());
    }
    let scored = |input: &Path, name: &str| {
        let out = dir.join(name);
        run_pipeline(&[
            "--input".as_ref(),
            input.as_os_str(),
            "--quiet".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        std::fs::read(out.join("scored_events.csv")).unwrap()
    };
    // One --format cannot describe two files: exporting while reading a file is refused.
    let both = std::process::Command::new(env!("CARGO_BIN_EXE_anomaly-pipeline"))
        .arg("--input")
        .arg(&jsonl)
        .arg("--export-transactions")
        .arg(dir.join("again.csv"))
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
    let from_csv = scored(&csv, "from-csv");
    assert_eq!(String::from_utf8_lossy(&from_csv).lines().count(), 2001);
    assert!(from_csv == scored(&jsonl, "from-jsonl"));
    let _ = std::fs::remove_dir_all(&dir);
}
