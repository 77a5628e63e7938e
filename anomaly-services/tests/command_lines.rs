//! The service binaries' command lines against docs/OPERATIONS.md: every setting of the
//! configuration table is in the `--help` of exactly the services the table says read it,
//! with the table's default; a bad value, as a variable or as a flag, stops the service with
//! the documented message; secrets never show.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};

mod common;

const SERVICES: [(&str, &str); 6] = [
    ("producer", env!("CARGO_BIN_EXE_producer")),
    ("feature-engineer", env!("CARGO_BIN_EXE_feature-engineer")),
    ("ml-inference", env!("CARGO_BIN_EXE_ml-inference")),
    ("drift-detector", env!("CARGO_BIN_EXE_drift-detector")),
    ("retraining-worker", env!("CARGO_BIN_EXE_retraining-worker")),
    ("alert-router", env!("CARGO_BIN_EXE_alert-router")),
];

/// One row of the configuration table, per variable.
struct Documented {
    readers: BTreeSet<&'static str>,
    /// The default as a literal (`None` where the table describes it in words).
    default: Option<String>,
}

fn documented() -> BTreeMap<String, Documented> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/OPERATIONS.md"
    ))
    .unwrap();
    let table = text
        .split("| variable | read by | default | meaning |")
        .nth(1)
        .expect("OPERATIONS.md has the configuration table")
        .split("\n\n")
        .next()
        .unwrap();
    let mut rows = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let variables: Vec<String> = cells[0]
            .trim_start_matches("| ")
            .split(", ")
            .map(|v| v.trim_matches('`').to_owned())
            .collect();
        let readers: BTreeSet<&str> = match cells[1] {
            "all" => SERVICES.iter().map(|(name, _)| *name).collect(),
            "all but alert-router" => SERVICES
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| *name != "alert-router")
                .collect(),
            list => list
                .split(", ")
                .map(|name| {
                    SERVICES
                        .iter()
                        .map(|(service, _)| *service)
                        .find(|service| *service == name)
                        .unwrap_or_else(|| panic!("{name} in `{line}` is not a service"))
                })
                .collect(),
        };
        let defaults: Vec<Option<String>> = cells[2]
            .split(", ")
            .map(|d| {
                let literal = d.starts_with('`') && d.ends_with('`') && !d.contains('<');
                literal.then(|| d.trim_matches('`').to_owned())
            })
            .collect();
        for (i, variable) in variables.into_iter().enumerate() {
            let default = match cells[2] {
                "empty" => Some(String::new()),
                _ => defaults.get(i).cloned().flatten(),
            };
            rows.insert(
                variable,
                Documented {
                    readers: readers.clone(),
                    default,
                },
            );
        }
    }
    assert!(rows.len() > 20, "the table was not found whole");
    rows
}

/// The variables a binary's `--help` lists, with the default it shows (if any).
fn help_settings(binary: &str) -> BTreeMap<String, Option<String>> {
    // A clean environment: values set around the test would show in the help.
    let help = Command::new(binary)
        .env_clear()
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    let mut settings = BTreeMap::new();
    // clap puts each argument's `[env: X=...]` and `[default: ...]` after its help text.
    for chunk in text.split("[env: ").skip(1) {
        let variable: String = chunk
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let bracket = chunk.find(']').unwrap();
        let default = chunk[bracket..]
            .trim_start_matches(']')
            .trim_start()
            .strip_prefix("[default: ")
            .map(|rest| rest[..rest.find(']').unwrap()].to_owned());
        settings.insert(variable, default);
    }
    settings
}

#[test]
fn every_services_help_lists_the_settings_operations_md_says_it_reads() {
    let table = documented();
    let mut listed = BTreeSet::new();
    for (port, (service, binary)) in (8000..).zip(SERVICES) {
        let help = help_settings(binary);
        let expected: BTreeSet<&String> = table
            .iter()
            .filter(|(_, row)| row.readers.contains(service))
            .map(|(variable, _)| variable)
            .collect();
        assert_eq!(
            help.keys().collect::<BTreeSet<_>>(),
            expected,
            "{service}: --help against OPERATIONS.md"
        );
        for (variable, shown) in &help {
            let row = &table[variable];
            match (&row.default, variable.as_str()) {
                // Per service: the service's own port.
                (_, "HTTP_PORT") => {
                    assert_eq!(shown, &Some(port.to_string()), "{service}: HTTP_PORT")
                }
                (Some(default), _) if default.is_empty() => {
                    assert_eq!(shown.as_deref(), Some("\"\""), "{service} {variable}")
                }
                (Some(default), _) => {
                    assert_eq!(shown.as_ref(), Some(default), "{service} {variable}")
                }
                (None, _) => {}
            }
            listed.insert(variable.clone());
        }
    }
    assert_eq!(
        listed,
        table.keys().cloned().collect(),
        "settings no service reads"
    );
}

/// Runs `binary` with `env` and `args`, the HTTP port on a spare one, and nothing to connect
/// to: a bad setting stops it before it tries.
fn run(binary: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("HTTP_PORT", common::free_port().to_string())
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("TIMESCALE_URL", "postgresql://127.0.0.1:1/none")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // A setting that was accepted lets the service go on to connect: stop it then.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The message of the service's one ERROR log line.
fn error_message(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let errors: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "one error logged: {stdout}");
    errors[0]["message"].as_str().unwrap().to_owned()
}

#[test]
fn a_bad_value_stops_the_service_with_the_documented_message_as_variable_or_flag() {
    let table = documented();
    // A value each setting refuses, and what the message says it expects.
    let bad: [(&str, &str, &str); 22] = [
        ("KAFKA_OFFSET_RESET", "oldest", "latest or earliest"),
        ("KAFKA_BATCH_SIZE", "0", "a whole number from 1 to 100000"),
        (
            "KAFKA_LINGER_MS",
            "soon",
            "a whole number of milliseconds from 0 to 1000",
        ),
        (
            "KAFKA_COMMIT_INTERVAL_MS",
            "5",
            "a whole number of milliseconds from 10 to 60000",
        ),
        (
            "KAFKA_SESSION_TIMEOUT_MS",
            "100",
            "a whole number of milliseconds from 6000 to 1800000",
        ),
        (
            "KAFKA_FETCH_WAIT_MS",
            "0",
            "a whole number of milliseconds from 1 to 10000",
        ),
        ("HTTP_PORT", "70000", "a TCP port number"),
        (
            "REDIS_URL",
            "cache:6379",
            "a URL of the right scheme (redis:// or postgresql://)",
        ),
        (
            "TIMESCALE_URL",
            "mysql://db/x",
            "a URL of the right scheme (redis:// or postgresql://)",
        ),
        ("ANOMALY_THRESHOLD", "1.5", "a number in [0, 1]"),
        (
            "MODEL_CHECKPOINT_INTERVAL_S",
            "-1",
            "a whole number of seconds from 0 (no checkpoints) to 86400",
        ),
        (
            "SLACK_WEBHOOK_URL",
            "hooks.example/x",
            "an http(s) URL, or empty to disable Slack",
        ),
        (
            "MIN_SLACK_SEVERITY",
            "urgent",
            "LOW, MEDIUM, HIGH or CRITICAL",
        ),
        (
            "NOTIFY_MAX_AGE_S",
            "0",
            "a whole number of seconds from 1 to 2592000 (30 days)",
        ),
        (
            "NOTIFY_RETRY_MAX_S",
            "7200",
            "a whole number of seconds from 1 to 3600",
        ),
        ("REPLAY_SPEED", "fast", "a number >= 0"),
        ("PRODUCER_EVENTS", "many", "a whole number >= 0"),
        ("PRODUCER_SEED", "-3", "a whole number >= 0"),
        (
            "PRODUCER_CARDS",
            "4294967296",
            "a whole number from 0 to 4294967295",
        ),
        (
            "PRODUCER_INSTANCE",
            "first",
            "a whole number from 0 to 4294967295",
        ),
        (
            "PRODUCER_INSTANCES",
            "all",
            "a whole number from 0 to 4294967295",
        ),
        ("PRODUCER_RUN", "x", "a whole number >= 0"),
    ];
    let checked: BTreeSet<&str> = bad.iter().map(|(variable, _, _)| *variable).collect();
    // Settings without a refusable value: any text is an address, a prefix, a schema, a name
    // or a log filter (a filter that does not parse is logged and `info` used).
    let free_text = [
        "KAFKA_BOOTSTRAP_SERVERS",
        "HTTP_BIND",
        "REDIS_PREFIX",
        "TIMESCALE_SCHEMA",
        "INSTANCE_ID",
        "RUST_LOG",
    ];
    let all: BTreeSet<&str> = checked.iter().chain(&free_text).copied().collect();
    assert_eq!(
        all,
        table.keys().map(String::as_str).collect(),
        "every setting is checked here or said to take any text"
    );
    for (variable, value, expected) in bad {
        let reader = *table[variable].readers.iter().next().unwrap();
        let binary = SERVICES.iter().find(|(name, _)| *name == reader).unwrap().1;
        let message = |variable: &str| {
            let shown = match variable {
                "SLACK_WEBHOOK_URL" => "***",
                _ => value,
            };
            format!("invalid {variable}={shown}: expected {expected}")
        };
        let by_variable = run(binary, &[(variable, value)], &[]);
        assert_eq!(
            by_variable.status.code(),
            Some(1),
            "{reader} {variable}={value}"
        );
        assert_eq!(error_message(&by_variable), message(variable));
        let flag = format!("--{}", variable.to_lowercase().replace('_', "-"));
        // A value starting with `-` is the flag's value, not another flag.
        let by_flag = run(binary, &[], &[&flag, value]);
        assert_eq!(by_flag.status.code(), Some(1), "{reader} {flag} {value}");
        assert_eq!(error_message(&by_flag), message(variable));
    }
}

#[test]
fn secrets_show_neither_in_help_nor_in_messages() {
    let secret = "s3cret-pw";
    for (binary, variables) in [
        (
            env!("CARGO_BIN_EXE_alert-router"),
            &["TIMESCALE_URL", "SLACK_WEBHOOK_URL"][..],
        ),
        (
            env!("CARGO_BIN_EXE_drift-detector"),
            &["TIMESCALE_URL", "REDIS_URL"][..],
        ),
    ] {
        let mut command = Command::new(binary);
        command.env_clear().arg("--help");
        for variable in variables {
            command.env(variable, format!("https://u:{secret}@host/x"));
        }
        let help = command.output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        for variable in variables {
            assert!(text.contains(&format!("[env: {variable}]")), "{text}");
        }
        assert!(!text.contains(secret), "{text}");
    }
    let refused = run(
        env!("CARGO_BIN_EXE_drift-detector"),
        &[("TIMESCALE_URL", &format!("mysql://u:{secret}@db/x"))],
        &[],
    );
    let message = error_message(&refused);
    assert_eq!(
        message,
        "invalid TIMESCALE_URL=mysql://u:***@db/x: expected a URL of the right scheme (redis:// or postgresql://)"
    );
}

#[test]
fn a_flag_wins_over_its_variable_and_unknown_flags_are_refused() {
    // The variable's bad value is not read, the flag's good one is: the configuration goes
    // on to KAFKA_OFFSET_RESET, which it checks after KAFKA_BATCH_SIZE.
    let output = run(
        env!("CARGO_BIN_EXE_feature-engineer"),
        &[("KAFKA_BATCH_SIZE", "0")],
        &[
            "--kafka-batch-size",
            "200",
            "--kafka-offset-reset",
            "oldest",
        ],
    );
    assert_eq!(
        error_message(&output),
        "invalid KAFKA_OFFSET_RESET=oldest: expected latest or earliest"
    );
    // Without the flag, the variable's value is the one refused.
    let output = run(
        env!("CARGO_BIN_EXE_feature-engineer"),
        &[("KAFKA_BATCH_SIZE", "0")],
        &["--kafka-offset-reset", "oldest"],
    );
    assert_eq!(
        error_message(&output),
        "invalid KAFKA_BATCH_SIZE=0: expected a whole number from 1 to 100000"
    );
    let unknown = Command::new(env!("CARGO_BIN_EXE_feature-engineer"))
        .env_clear()
        .arg("--timescale-url")
        .arg("postgresql://db/x")
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "a setting it does not read");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--timescale-url"));
}
