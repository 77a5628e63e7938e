//! The deployment under `deploy/`, checked with the real tools without a container engine
//! (`scripts/test` installs Debian's `docker-compose` and `prometheus` when absent): the compose
//! file is valid and sets only variables the services read, Prometheus's configuration and
//! rules pass promtool and its rule unit tests, and a real Prometheus scraping the six services
//! finds data for every dashboard panel and every rule, while every SQL panel returns rows.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    KillOnDrop, database_url, delete_redis_prefix, drop_schema, free_port, health, redis_url,
    unique, wait_until,
};

use anomaly_services::adapters::postgres::{PgEventStore, Table};
use rdkafka::mocking::MockCluster;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

/// Runs `program` with `args`; its standard output, or a failure naming what it printed.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs it)"));
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A YAML file as JSON (through Python's yaml module, which docker-compose itself uses).
fn yaml_to_json(yaml: &str) -> serde_json::Value {
    let json = run(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        Some(yaml),
    );
    serde_json::from_str(&json).unwrap()
}

/// The six services' names, as compose services and as Prometheus jobs.
const SERVICES: [&str; 6] = [
    "producer",
    "feature-engineer",
    "ml-inference",
    "drift-detector",
    "retraining-worker",
    "alert-router",
];

/// Every environment variable name the services' sources mention: string literals in
/// SCREAMING_SNAKE_CASE (with at least one underscore, which leaves out severities and
/// detector names).
fn variables_the_services_read() -> BTreeSet<String> {
    fn visit(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, names);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for literal in text.split('"').skip(1).step_by(2) {
                    let screaming = !literal.is_empty()
                        && literal.contains('_')
                        && literal.starts_with(|c: char| c.is_ascii_uppercase())
                        && literal
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    if screaming {
                        names.insert(literal.to_owned());
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    visit(&root().join("anomaly-services/src"), &mut names);
    names
}

/// OPERATIONS.md's table of what a deployment sets, per service.
fn required_variables() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("docs/OPERATIONS.md")).unwrap();
    let section = text
        .split("### What a deployment sets, per service")
        .nth(1)
        .expect("OPERATIONS.md has the section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() == 4 && SERVICES.contains(&cells[1])).then(|| {
                let variables = cells[2]
                    .split(',')
                    .map(|v| v.trim().trim_matches('`').to_owned())
                    .collect();
                (cells[1].to_owned(), variables)
            })
        })
        .collect()
}

#[test]
fn the_compose_file_is_valid_and_sets_the_variables_the_services_read() {
    let file = deploy("docker-compose.yml");
    let file = file.to_str().unwrap();
    run("docker-compose", &["-f", file, "config", "-q"], None);
    let config = yaml_to_json(&run("docker-compose", &["-f", file, "config"], None));
    let read = variables_the_services_read();
    let required = required_variables();
    assert_eq!(required.len(), SERVICES.len(), "{required:?}");
    for service in SERVICES {
        let environment = config["services"][service]["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{service} has no environment in the compose file"));
        for variable in environment.keys() {
            assert!(
                read.contains(variable),
                "{service}: the compose file sets {variable}, which no service reads"
            );
        }
        for variable in &required[service] {
            assert!(
                environment.contains_key(variable),
                "{service}: OPERATIONS.md requires {variable}, the compose file does not set it"
            );
        }
        assert_eq!(
            config["services"][service]["command"][0].as_str(),
            Some(service),
            "{service} runs its own binary"
        );
    }
}

#[test]
fn the_image_builds_what_ci_compiles() {
    let build = "cargo build --release --locked -p anomaly-services --bins";
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(dockerfile.contains(build), "the Dockerfile runs `{build}`");
    assert!(ci.contains(build), ".ci/run compiles the image's `{build}`");
    for binary in SERVICES.iter().chain(&["anomaly-pipeline"]) {
        assert!(
            dockerfile.contains(&format!("/build/target/release/{binary}")),
            "the image holds {binary}"
        );
    }
}

#[test]
fn prometheus_configuration_and_rules_pass_promtool() {
    let config = deploy("prometheus/prometheus.yml");
    run(
        "promtool",
        &["check", "config", config.to_str().unwrap()],
        None,
    );
    for rules in ["recording.yml", "alerts.yml"] {
        let path = deploy(&format!("prometheus/{rules}"));
        run(
            "promtool",
            &["check", "rules", path.to_str().unwrap()],
            None,
        );
    }
    // Every alert fires on its failure and stays silent when healthy (tests.yml).
    let tests = deploy("prometheus/tests.yml");
    run(
        "promtool",
        &["test", "rules", tests.to_str().unwrap()],
        None,
    );
    let alerts = yaml_to_json(&std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap());
    let tested = std::fs::read_to_string(&tests).unwrap();
    for rule in alerts["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            tested.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - exp_labels"
            )),
            "tests.yml makes {name} fire"
        );
        assert!(
            rule["labels"]["severity"].is_string() && rule["annotations"]["summary"].is_string(),
            "{name} has a severity and a summary"
        );
        let runbook = rule["annotations"]["runbook"].as_str().unwrap();
        let deploy_md = std::fs::read_to_string(root().join("docs/DEPLOY.md")).unwrap();
        assert!(
            deploy_md.contains(&format!("### {name}")),
            "DEPLOY.md has a runbook section for {name} ({runbook})"
        );
    }
}

/// Every PromQL expression of the dashboards, and every rule's (recording or alert).
fn expressions() -> (Vec<String>, Vec<String>) {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/pipeline-overview.json")).unwrap(),
    )
    .unwrap();
    let panels: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    let mut rules = Vec::new();
    for file in ["recording.yml", "alerts.yml"] {
        let parsed =
            yaml_to_json(&std::fs::read_to_string(deploy(&format!("prometheus/{file}"))).unwrap());
        for group in parsed["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                rules.push(rule["expr"].as_str().unwrap().trim().to_owned());
            }
        }
    }
    (panels, rules)
}

/// The metric names an expression reads (the services' own, `up`, and recorded series).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut in_quotes = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if !in_quotes && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        let is_metric = word.starts_with("anomaly_")
            || word == "up"
            || (word.contains(':') && word.contains("anomaly_"));
        if is_metric && c != '=' && !in_quotes {
            names.insert(word.clone());
        }
        word.clear();
    }
    names
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            "sum by (service) (rate(anomaly_errors_total{kind=\"x_total\"}[5m])) > 0.1 and on() up"
        ),
        ["anomaly_errors_total", "up"]
    );
    assert_eq!(
        names("service:anomaly_consumer_lag:sum > 0 and service:anomaly_events_in:rate1m == 0"),
        [
            "service:anomaly_consumer_lag:sum",
            "service:anomaly_events_in:rate1m"
        ]
    );
}

/// Prometheus's answer to an instant query: the result vector.
fn query(port: u16, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let reply = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", expr)
        .call()
        .map_err(|e| format!("{expr}: {e}"))?
        .into_string()
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(format!("{expr}: {reply}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A consumer service of the live check.
fn service(name: &str, bootstrap: &str, schema: &str, prefix: &str, port: u16) -> KillOnDrop {
    KillOnDrop(
        common::pipeline_service(name, bootstrap, schema, prefix, port)
            .spawn()
            .unwrap(),
    )
}

/// A real Prometheus (Debian's) scrapes the six services every second, with the stack's rules,
/// while they process a stream with drift phases over the mock cluster, real Redis and
/// PostgreSQL. Then every dashboard expression returns data, every rule evaluates and every
/// metric it reads exists, and every SQL panel returns rows from the schema the services wrote.
#[test]
fn a_real_prometheus_finds_data_for_every_panel_and_rule_and_every_sql_panel_returns_rows() {
    const EVENTS: u64 = 12_000;
    let cluster = MockCluster::new(3).unwrap();
    for topic in anomaly_services::services::TOPICS {
        cluster.create_topic(topic, 3, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_deployment");
    let prefix = unique("test:deployment") + ":";
    PgEventStore::connect(&database_url(), &schema).unwrap();
    let mut ports: BTreeMap<&str, u16> = BTreeMap::new();
    let mut running = Vec::new();
    for name in &SERVICES[1..] {
        let port = free_port();
        ports.insert(name, port);
        running.push(service(name, &bootstrap, &schema, &prefix, port));
    }
    for port in ports.values() {
        wait_until("every service up", Duration::from_secs(60), || {
            health(*port).is_some()
        });
    }
    let producer_port = free_port();
    ports.insert("producer", producer_port);

    // Prometheus with the stack's rules and one static target per service.
    let dir = std::env::temp_dir().join(unique("anomaly-prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    for rules in ["recording.yml", "alerts.yml"] {
        std::fs::copy(deploy(&format!("prometheus/{rules}")), dir.join(rules)).unwrap();
    }
    let mut config = String::from(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [recording.yml, alerts.yml]\nscrape_configs:\n",
    );
    for (name, port) in &ports {
        config.push_str(&format!(
            "  - job_name: {name}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prometheus_port = free_port();
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/test installs it)"),
    );
    wait_until("Prometheus up", Duration::from_secs(60), || {
        query(prometheus_port, "up").is_ok_and(|r| r.len() == SERVICES.len())
    });

    let mut producer = KillOnDrop(
        common::service_command(env!("CARGO_BIN_EXE_producer"), &bootstrap, producer_port)
            .env("REDIS_URL", redis_url())
            .env("REDIS_PREFIX", &prefix)
            .env("REPLAY_SPEED", "400")
            .env("PRODUCER_EVENTS", EVENTS.to_string())
            .env("PRODUCER_CARDS", "200")
            .spawn()
            .unwrap(),
    );
    let mut db = PgEventStore::connect(&database_url(), &schema).unwrap();
    wait_until(
        "every event scored and stored",
        Duration::from_secs(300),
        || db.count(Table::ScoredEvents).unwrap() >= EVENTS,
    );
    assert!(producer.0.wait().unwrap().success());
    wait_until(
        "a retraining job recorded",
        Duration::from_secs(120),
        || db.count(Table::RetrainingJobs).unwrap() > 0,
    );
    // A job publishes only a candidate at least as good as the running model; when this
    // run's kept the model, the version table gets the row a publication writes, through the
    // worker's own writer, so that the panel reading it is checked too.
    if db.count(Table::ModelVersions).unwrap() == 0 {
        db.write_model_version(&anomaly_services::messages::ModelUpdate {
            schema_version: anomaly_services::messages::SCHEMA_VERSION,
            model_version: 2,
            timestamp_ms: 1_767_225_600_000,
            reason: "ADWIN drift: written by the test (the run's job kept its model)".into(),
            previous_auc: Some(0.9),
            auc: Some(0.95),
        })
        .unwrap();
    }

    // Every dashboard expression has data; every rule evaluates, and reads metrics that exist.
    let (panels, rules) = expressions();
    wait_until(
        "the recording rules to have data",
        Duration::from_secs(60),
        || {
            panels
                .iter()
                .all(|expr| query(prometheus_port, expr).is_ok_and(|r| !r.is_empty()))
        },
    );
    for expr in &panels {
        assert!(
            !query(prometheus_port, expr).unwrap().is_empty(),
            "dashboard expression without data: {expr}"
        );
    }
    for expr in &rules {
        query(prometheus_port, expr).unwrap();
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        for name in names {
            let series = query(prometheus_port, &format!("{{__name__=\"{name}\"}}")).unwrap();
            assert!(
                !series.is_empty(),
                "{name} (read by `{expr}`) has no series"
            );
        }
    }

    // Every SQL panel runs against the schema the services wrote, and returns rows. Grafana's
    // time filter macro becomes "any time".
    let fraud: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/fraud-view.json")).unwrap(),
    )
    .unwrap();
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .unwrap();
    let annotations = fraud["annotations"]["list"].as_array().unwrap();
    assert!(
        !annotations.is_empty(),
        "drifts and models marked on the timeline"
    );
    let queries = fraud["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|panel| (&panel["title"], &panel["targets"][0]))
        .chain(annotations.iter().map(|a| (&a["name"], &a["target"])));
    for (title, target) in queries {
        let sql = target["rawSql"].as_str().unwrap();
        let runnable = expand_time_filter(sql);
        let rows = admin
            .query(&runnable, &[])
            .unwrap_or_else(|e| panic!("{title}: {e}\n{runnable}"));
        assert!(!rows.is_empty(), "{title} returns no row");
    }
    drop(running);
    delete_redis_prefix(&prefix);
    drop_schema(&schema);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `$__timeFilter(column)` -> `column > '-infinity'`.
fn expand_time_filter(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let close = after.find(')').unwrap();
        out.push_str(&format!("{} > '-infinity'::timestamptz", &after[..close]));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}
