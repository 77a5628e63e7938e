//! The main job: the whole pipeline in one process on embedded defaults, with a report.
//!
//! `cargo run --release` at the repository root runs it; `--help` lists the options.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anomaly_services::allocation;
use anomaly_services::generator::{FraudStyle, Generator};
use anomaly_services::input::{ColumnMap, Format, InputFile, write_transactions};
use anomaly_services::messages::Severity;
use anomaly_services::pipeline::{
    PipelineConfig, run_streaming, synthetic_input, with_random_cut_forest,
};
use anomaly_services::report::{self, CsvTables};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// The command line. Defaults are those of `PipelineConfig::default()`, shown in `--help`
/// through [`with_defaults`].
#[derive(Parser, Debug)]
#[command(
    name = "anomaly-pipeline",
    version,
    // As before clap: a flag given twice takes its last value.
    args_override_self = true,
    about = "\
Card transactions (synthetic, or your own with --input) through all six stages (feature
engineering, inference, drift detection, retraining, alert routing) in one process, with
in-memory stand-ins for Kafka, Redis, PostgreSQL and Slack. Prints a summary and writes a
report.",
    after_help = "\
The same seed gives the same results. Notified alerts are written to DIR/run.json (the
embedded stand-in for Slack)."
)]
struct Cli {
    /// Run on the transactions of FILE (CSV with a header row, or JSON lines), streamed from
    /// disk; rows that are not transactions are dead letters listed with their line numbers.
    #[arg(long, value_name = "FILE", help_heading = "Your transactions")]
    input: Option<PathBuf>,
    /// The format of --input's (or --export-transactions') FILE [default: from its
    /// extension].
    #[arg(long, value_enum, help_heading = "Your transactions")]
    format: Option<InputFormat>,
    /// The column holding FIELD (repeatable; after --mapping, so it overrides the file).
    /// Fields and the columns read by default: event_id, card_id, timestamp (timestamp_ms:
    /// Unix ms or ISO-8601 UTC), amount, merchant, category, latitude, longitude, label
    /// (is_fraud: 1/0, true/false; optional), phase. card_id, timestamp and amount are
    /// required.
    #[arg(
        long = "map",
        value_name = "FIELD=COLUMN",
        help_heading = "Your transactions"
    )]
    maps: Vec<String>,
    /// Mappings from FILE, one FIELD = COLUMN a line (# comments).
    #[arg(long, value_name = "FILE", help_heading = "Your transactions")]
    mapping: Option<PathBuf>,
    /// Write the synthetic stream (--events, --seed, --cards, --fraud) to FILE in the layout
    /// --input reads, and stop: JSON lines for .jsonl, .ndjson or .json (or --format jsonl),
    /// otherwise CSV.
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    export_transactions: Option<PathBuf>,
    /// Transactions to generate.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    events: Option<u64>,
    /// Seed of the generator and the models.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Distinct cards.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cards: Option<u32>,
    /// What fraud looks like: blatant, each fraud one large purchase of resaleable goods far
    /// from home; mimicry, card testing bursts, account takeovers and purchases that imitate
    /// the card's habits (docs/PIPELINE.md).
    #[arg(long, value_enum, value_name = "STYLE", hide_possible_values = true)]
    fraud: Option<FraudStyle>,
    /// Where report.html, summary.json, run.json, scored_events.csv and alerts.csv are
    /// written.
    #[arg(long, value_name = "DIR", default_value = "report")]
    out: PathBuf,
    /// Event time runs X times faster than real time; 0 = as fast as possible (the generator
    /// draws 20 transactions/s of event time).
    #[arg(long, value_name = "X", value_parser = at_least_zero)]
    replay_speed: Option<f64>,
    /// Anomaly threshold on the ensemble score, in [0, 1].
    #[arg(long, value_name = "T", value_parser = unit_interval)]
    threshold: Option<f64>,
    /// HalfSpaceTrees trees.
    #[arg(long, value_name = "N", help_heading = "Model")]
    n_trees: Option<u32>,
    /// HalfSpaceTrees tree height.
    #[arg(long, value_name = "H", help_heading = "Model")]
    height: Option<u32>,
    /// HalfSpaceTrees window size.
    #[arg(long, value_name = "W", help_heading = "Model")]
    window: Option<u32>,
    /// hst: HalfSpaceTrees + SAD; rcf: a Random Cut Forest (50 trees, samples of 256) joins
    /// them.
    #[arg(
        long,
        value_enum,
        value_name = "M",
        default_value = "hst",
        help_heading = "Model"
    )]
    model: ModelChoice,
    /// Alerts sent to the notifier: LOW, MEDIUM, HIGH or CRITICAL.
    #[arg(long, value_name = "S")]
    min_severity: Option<Severity>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum InputFormat {
    Csv,
    Jsonl,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModelChoice {
    Hst,
    Rcf,
}

fn at_least_zero(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| *x >= 0.0 && x.is_finite())
        .ok_or_else(|| "expected a number >= 0".into())
}

fn unit_interval(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| (0.0..=1.0).contains(x))
        .ok_or_else(|| "expected a number in [0, 1]".into())
}

/// The command with the defaults of `PipelineConfig::default()`: one place for them.
fn with_defaults() -> clap::Command {
    let config = PipelineConfig::default();
    let generator = &config.generator;
    let fraud = generator
        .fraud
        .to_possible_value()
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default();
    let defaults = [
        ("events", generator.events.to_string()),
        ("seed", generator.seed.to_string()),
        ("cards", generator.cards.to_string()),
        ("fraud", fraud),
        ("replay_speed", config.replay_speed.to_string()),
        ("threshold", config.threshold.to_string()),
        ("n_trees", config.model.hst.n_trees.to_string()),
        ("height", config.model.hst.height.to_string()),
        ("window", config.model.hst.window_size.to_string()),
        ("min_severity", config.min_notify_severity.name().to_owned()),
    ];
    defaults
        .into_iter()
        .fold(Cli::command(), |command, (id, value)| {
            command.mut_arg(id, |arg| arg.default_value(value))
        })
}

/// What to run, from the command line.
struct Job {
    config: PipelineConfig,
    out: PathBuf,
    quiet: bool,
    input: Option<InputFile>,
    /// --export-transactions: where, and in which format.
    export: Option<(PathBuf, Format)>,
}

impl Cli {
    fn into_job(self) -> Result<Job, String> {
        let mut config = PipelineConfig::default();
        // `None` where clap had no value: with the defaults shown in --help, never.
        let generator = &mut config.generator;
        generator.events = self.events.unwrap_or(generator.events);
        generator.seed = self.seed.unwrap_or(generator.seed);
        generator.cards = self.cards.unwrap_or(generator.cards);
        generator.fraud = self.fraud.unwrap_or(generator.fraud);
        config.replay_speed = self.replay_speed.unwrap_or(config.replay_speed);
        config.threshold = self.threshold.unwrap_or(config.threshold);
        let hst = &mut config.model.hst;
        hst.n_trees = self.n_trees.unwrap_or(hst.n_trees);
        hst.height = self.height.unwrap_or(hst.height);
        hst.window_size = self.window.unwrap_or(hst.window_size);
        config.min_notify_severity = self.min_severity.unwrap_or(config.min_notify_severity);
        // Checked with or without --input: a mistake in them is one either way.
        let mut columns = ColumnMap::default();
        if let Some(file) = &self.mapping {
            columns
                .read_file(file)
                .map_err(|e| format!("--mapping: {e}"))?;
        }
        for map in &self.maps {
            columns.set_from(map).map_err(|e| format!("--map: {e}"))?;
        }
        let input = match self.input {
            None => None,
            Some(path) => {
                config.input = Some(path.display().to_string());
                Some(InputFile {
                    format: file_format(self.format, &path),
                    path,
                    columns,
                })
            }
        };
        if let ModelChoice::Rcf = self.model {
            let seed = config.generator.seed;
            config.model = with_random_cut_forest(config.model, seed);
        }
        Ok(Job {
            config,
            out: self.out,
            quiet: self.quiet,
            input,
            export: self.export_transactions.map(|path| {
                let format = file_format(self.format, &path);
                (path, format)
            }),
        })
    }
}

/// --format if given, else what the file's extension says.
fn file_format(explicit: Option<InputFormat>, path: &Path) -> Format {
    match explicit {
        Some(InputFormat::Csv) => Format::Csv,
        Some(InputFormat::Jsonl) => Format::JsonLines,
        None => Format::from_path(path),
    }
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
    // Only speed depends on it (the results do not), so a kernel that refuses is no reason to
    // stop or to warn.
    let _ = allocation::disable_transparent_huge_pages();
    // Exits on --help, --version and flags that do not parse (status 2), as clap programs do.
    let matches = with_defaults().get_matches();
    let job = match Cli::from_arg_matches(&matches)
        .map_err(|e| e.to_string())
        .and_then(Cli::into_job)
    {
        Ok(job) => job,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((path, format)) = &job.export {
        let written = std::fs::File::create(path).and_then(|file| {
            let stream = Generator::new(job.config.generator.clone());
            write_transactions(file, *format, stream)
        });
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let show_progress = !job.quiet && std::io::stderr().is_terminal();
    // The input is opened first: a wrong path or column must not truncate the last report.
    let input = match job.input.as_ref().map(InputFile::open).transpose() {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut tables =
        match std::fs::create_dir_all(&job.out).and_then(|()| CsvTables::create(&job.out)) {
            Ok(tables) => tables,
            Err(e) => {
                eprintln!(
                    "error: cannot write the report to {}: {e}",
                    job.out.display()
                );
                return ExitCode::FAILURE;
            }
        };
    let progress = progress_bar(show_progress);
    let result = match input {
        None => run_streaming(
            &job.config,
            synthetic_input(&job.config),
            &mut tables,
            progress,
        ),
        Some(input) => run_streaming(&job.config, input, &mut tables, progress),
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
    if let Err(e) = report::write_summaries(&job.out, &summary, &result) {
        eprintln!(
            "error: cannot write the report to {}: {e}",
            job.out.display()
        );
        return ExitCode::FAILURE;
    }
    let _ = writeln!(stdout, "report: {}", job.out.join("report.html").display());
    ExitCode::SUCCESS
}
