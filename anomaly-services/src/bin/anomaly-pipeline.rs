//! The main job: the whole pipeline in one process on embedded defaults, with a report.
//!
//! `cargo run --release` at the repository root runs it; `--help` lists the options.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anomaly_services::generator::Generator;
use anomaly_services::input::{ColumnMap, Format, InputFile, write_csv};
use anomaly_services::messages::Severity;
use anomaly_services::pipeline::{
    PipelineConfig, run_streaming, synthetic_input, with_random_cut_forest,
};
use anomaly_services::report::{self, CsvTables};
use indicatif::{ProgressBar, ProgressStyle};

const HELP: &str = "\
anomaly-pipeline: card transactions (synthetic, or your own with --input) through all six
stages (feature engineering, inference, drift detection, retraining, alert routing) in one
process, with in-memory stand-ins for Kafka, Redis, PostgreSQL and Slack. Prints a summary and
writes a report.

USAGE: anomaly-pipeline [OPTIONS]

OPTIONS:
  --input FILE        run on the transactions of FILE (CSV with a header row, or JSON
                      lines), streamed from disk; rows that are not transactions are
                      dead letters listed with their line numbers
  --format F          csv or jsonl                    [default: from FILE's extension]
  --map FIELD=COLUMN  the column holding FIELD (repeatable). Fields and the columns read
                      by default: event_id, card_id, timestamp (timestamp_ms: Unix ms or
                      ISO-8601 UTC), amount, merchant, category, latitude, longitude,
                      label (is_fraud: 1/0, true/false; optional), phase. card_id,
                      timestamp and amount are required
  --mapping FILE      mappings from FILE, one FIELD = COLUMN a line (# comments)
  --export-transactions FILE
                      write the synthetic stream (--events, --seed, --cards) to FILE as
                      CSV in the layout --input reads, and stop
  --events N          transactions to generate                      [default: 200000]
  --seed S            seed of the generator and the models          [default: 42]
  --cards N           distinct cards                                [default: 2000]
  --fraud STYLE       blatant: each fraud one large purchase of resaleable goods far from
                      home; mimicry: card testing bursts, account takeovers and purchases
                      that imitate the card's habits (docs/PIPELINE.md) [default: blatant]
  --out DIR           where report.html, summary.json, run.json, scored_events.csv and
                      alerts.csv are written                        [default: report]
  --replay-speed X    event time runs X times faster than real time; 0 = as fast as
                      possible (the generator draws 20 transactions/s of event time)
                                                                    [default: 0]
  --threshold T       anomaly threshold on the ensemble score       [default: 0.85]
  --n-trees N         HalfSpaceTrees trees                          [default: 10]
  --height H          HalfSpaceTrees tree height                    [default: 8]
  --window W          HalfSpaceTrees window size                    [default: 250]
  --model M           hst: HalfSpaceTrees + SAD; rcf: a Random Cut Forest (50 trees,
                      samples of 256) joins them                    [default: hst]
  --min-severity S    alerts sent to the notifier: LOW, MEDIUM, HIGH or CRITICAL
                                                                    [default: HIGH]
  --quiet             no progress bar
  -h, --help          this text
  -V, --version       the version

The same seed gives the same results. Notified alerts are written to DIR/run.json (the
embedded stand-in for Slack).";

struct Cli {
    config: PipelineConfig,
    out: PathBuf,
    quiet: bool,
    input: Option<InputFile>,
    export: Option<PathBuf>,
}

/// What the command line asks for.
enum Command {
    Run(Box<Cli>),
    Help,
    Version,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut cli = Cli {
        config: PipelineConfig::default(),
        out: PathBuf::from("report"),
        quiet: false,
        input: None,
        export: None,
    };
    let mut args = args.peekable();
    let mut rcf = false;
    let (mut input, mut format, mut columns) = (None::<PathBuf>, None, ColumnMap::default());
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let c = &mut cli.config;
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--events" => c.generator.events = parse_number(&value()?, &flag)?,
            "--seed" => c.generator.seed = parse_number(&value()?, &flag)?,
            "--cards" => c.generator.cards = parse_number(&value()?, &flag)?,
            "--fraud" => {
                c.generator.fraud = value()?.parse().map_err(|e| format!("--fraud: {e}"))?
            }
            "--out" => cli.out = PathBuf::from(value()?),
            "--replay-speed" => c.replay_speed = parse_number(&value()?, &flag)?,
            "--threshold" => c.threshold = parse_number(&value()?, &flag)?,
            "--n-trees" => c.model.hst.n_trees = parse_number(&value()?, &flag)?,
            "--height" => c.model.hst.height = parse_number(&value()?, &flag)?,
            "--window" => c.model.hst.window_size = parse_number(&value()?, &flag)?,
            "--min-severity" => c.min_notify_severity = value()?.parse::<Severity>()?,
            "--model" => match value()?.as_str() {
                "hst" => rcf = false,
                "rcf" => rcf = true,
                other => return Err(format!("--model must be hst or rcf, got {other}")),
            },
            "--quiet" => cli.quiet = true,
            "--input" => input = Some(PathBuf::from(value()?)),
            "--format" => {
                format = Some(match value()?.as_str() {
                    "csv" => Format::Csv,
                    "jsonl" => Format::JsonLines,
                    other => return Err(format!("--format must be csv or jsonl, got {other}")),
                })
            }
            "--map" => columns
                .set_from(&value()?)
                .map_err(|e| format!("--map: {e}"))?,
            "--mapping" => columns
                .read_file(&PathBuf::from(value()?))
                .map_err(|e| format!("--mapping: {e}"))?,
            "--export-transactions" => cli.export = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    let c = &cli.config;
    if !(c.replay_speed >= 0.0 && c.replay_speed.is_finite()) {
        return Err(format!(
            "--replay-speed must be >= 0, got {}",
            c.replay_speed
        ));
    }
    if !(0.0..=1.0).contains(&c.threshold) {
        return Err(format!(
            "--threshold must be in [0, 1], got {}",
            c.threshold
        ));
    }
    if c.generator.events == 0 || c.generator.cards == 0 {
        return Err("--events and --cards must be positive".into());
    }
    if let Some(path) = input {
        cli.config.input = Some(path.display().to_string());
        cli.input = Some(InputFile {
            format: format.unwrap_or_else(|| Format::from_path(&path)),
            path,
            columns,
        });
    }
    if rcf {
        let seed = cli.config.generator.seed;
        cli.config.model = with_random_cut_forest(cli.config.model, seed);
    }
    Ok(Command::Run(Box::new(cli)))
}

fn parse_number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: `{text}` is not a valid value"))
}

/// A progress bar on stderr (indicatif), drawn only when `enabled` (a terminal, no --quiet).
fn progress_bar(enabled: bool) -> impl FnMut(u64, u64) {
    let bar = if enabled {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    // A constant template: it parses; the default style is the fallback all the same.
    let style = ProgressStyle::with_template(
        "[{bar:40}] {pos}/{len} events, {msg} ({elapsed_precise}, {eta} left)",
    )
    .map(|style| style.progress_chars("#>-"))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let start = std::time::Instant::now();
    move |done, total| {
        let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(format!("{rate:.0} events/s"));
        if done >= total {
            bar.finish();
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args().skip(1)) {
        Ok(Command::Run(cli)) => cli,
        Ok(Command::Help) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("anomaly-pipeline {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cli.export {
        let written = std::fs::File::create(path)
            .and_then(|file| write_csv(file, Generator::new(cli.config.generator.clone())));
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let show_progress = !cli.quiet && std::io::stderr().is_terminal();
    // The input is opened first: a wrong path or column must not truncate the last report.
    let input = match cli.input.as_ref().map(InputFile::open).transpose() {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut tables =
        match std::fs::create_dir_all(&cli.out).and_then(|()| CsvTables::create(&cli.out)) {
            Ok(tables) => tables,
            Err(e) => {
                eprintln!(
                    "error: cannot write the report to {}: {e}",
                    cli.out.display()
                );
                return ExitCode::FAILURE;
            }
        };
    let progress = progress_bar(show_progress);
    let result = match input {
        None => run_streaming(
            &cli.config,
            synthetic_input(&cli.config),
            &mut tables,
            progress,
        ),
        Some(input) => run_streaming(&cli.config, input, &mut tables, progress),
    }
    .and_then(|result| Ok((tables.finish()?, result).1));
    let result = match result {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = report::summarize(&result);
    // A closed stdout (`| head`) must not stop the report from being written.
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{}", report::render_text(&summary, &result));
    if let Err(e) = report::write_summaries(&cli.out, &summary, &result) {
        eprintln!(
            "error: cannot write the report to {}: {e}",
            cli.out.display()
        );
        return ExitCode::FAILURE;
    }
    let _ = writeln!(stdout, "report: {}", cli.out.join("report.html").display());
    ExitCode::SUCCESS
}
