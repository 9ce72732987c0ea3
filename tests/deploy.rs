//! The deploy kit against the real thing.
//!
//! `promtool_checks_pass` runs `deploy/prometheus/check`: `promtool check
//! config` and `check rules`, and the rules' `promtool test rules` units.
//!
//! `every_dashboard_rule_and_cookbook_expression_returns_data` back-fills a
//! day of node-exporter-like history into a real Prometheus started with
//! the shipped `deploy/prometheus/prometheus.yml` (rules loaded, promcast
//! as `remote_read` target, scraped, federated), starts promcast with the
//! shipped `deploy/promcast/promcast.yml`, and runs every PromQL expression
//! of the Grafana dashboard, of the alert rules and of README.md's PromQL
//! cookbook through Prometheus's query API: each must evaluate without
//! error or warning, and return data. An alert's condition only returns
//! data when it fires, so for alerts the check is on the expression
//! without its final comparison (`X > 0.9` → `X`): the series the alert
//! watches must exist.

mod common {
    pub mod harness;
    pub mod http;
    pub mod process;
    pub mod prometheus;
    pub mod readme;
    #[allow(dead_code)] // the harness can be secured; this suite never secures it
    pub mod secrets;
}

use std::fs;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::harness::{Harness, two_ports};
use common::process::{require_binary, test_tool};
use common::prometheus::{PROMETHEUS_BIN, PROMTOOL_BIN, run_promtool_backfill};
use common::readme;
use promcast::calendar::now_ms;
use serde::Deserialize as _;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn promtool_checks_pass() {
    require_binary(PROMTOOL_BIN);
    let output = Command::new(repo("deploy/prometheus/check"))
        .env("PROMTOOL", PROMTOOL_BIN)
        .output()
        .expect("run deploy/prometheus/check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(
        output.status.success(),
        "deploy/prometheus/check failed:\n{text}"
    );
    assert!(
        text.contains("Unit Testing"),
        "the rule unit tests ran:\n{text}"
    );
}

/// An expression to run, where it comes from, and whether it must return
/// data as it is or only without its final comparison.
struct Expression {
    origin: String,
    expr: String,
    alert: bool,
}

fn rule_expressions() -> Vec<Expression> {
    let mut out = Vec::new();
    let dir = repo("deploy/prometheus/rules");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("read rules directory")
        .map(|e| e.expect("rules entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file).expect("read rule file");
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("rule file is YAML");
        for group in doc["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                let name = rule["alert"]
                    .as_str()
                    .or(rule["record"].as_str())
                    .expect("alert or record name");
                out.push(Expression {
                    origin: format!("{}: {name}", file.display()),
                    expr: rule["expr"].as_str().expect("expr").trim().to_owned(),
                    alert: rule["alert"].is_string(),
                });
            }
        }
    }
    out
}

fn dashboard_expressions() -> Vec<Expression> {
    let path = repo("deploy/grafana/dashboards/promcast.json");
    let dashboard: Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read dashboard")).expect("JSON");
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(Expression {
                    origin: format!("dashboard panel {:?}", panel["title"]),
                    expr: expr.to_owned(),
                    alert: false,
                });
            }
        }
    }
    out
}

/// README.md's cookbook, where a query with a final comparison is an alert.
fn cookbook_expressions() -> Vec<Expression> {
    readme::blocks("## PromQL cookbook", "promql")
        .iter()
        .flat_map(|block| readme::queries(block))
        .map(|expr| Expression {
            origin: "README.md, PromQL cookbook".to_owned(),
            alert: without_final_comparison(&expr) != expr.trim_end(),
            expr,
        })
        .collect()
}

#[test]
fn cookbook_queries_are_read_whole() {
    let cookbook = cookbook_expressions();
    let exprs: Vec<&str> = cookbook.iter().map(|e| e.expr.as_str()).collect();
    assert!(exprs.len() >= 9, "{exprs:#?}");
    assert!(
        exprs.iter().any(|e| e.contains("\n  / ignoring(horizon)")),
        "a query continues on its indented lines: {exprs:#?}"
    );
    assert!(
        exprs
            .iter()
            .any(|e| e.starts_with("avg_over_time(\n") && e.ends_with("[1d:5m]\n)")),
        "a query continues until its brackets close: {exprs:#?}"
    );
    assert!(
        exprs.iter().all(|e| !e.contains('#')),
        "comments stand between queries: {exprs:#?}"
    );
    let alerts = cookbook.iter().filter(|e| e.alert).count();
    assert_eq!(alerts, 3, "the three alerts: {exprs:#?}");
}

/// Grafana's variables as the dashboard's defaults would set them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "2m")
        .replace("$__interval", "1m")
        .replace("$instance", ".*")
}

/// `X > 0.9` → `X`: what an alert watches, without when it fires.
fn without_final_comparison(expr: &str) -> String {
    let trimmed = expr.trim_end();
    let number_start = trimmed
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .map_or(0, |i| i + 1);
    let head = trimmed[..number_start].trim_end();
    for op in ["==", "!=", ">=", "<=", ">", "<"] {
        if number_start < trimmed.len()
            && let Some(operand) = head.strip_suffix(op)
        {
            return operand.trim_end().to_owned();
        }
    }
    trimmed.to_owned()
}

#[test]
fn comparison_stripping() {
    assert_eq!(without_final_comparison("up == 0"), "up");
    assert_eq!(without_final_comparison("a / b\n  < 0.05\n"), "a / b");
    assert_eq!(without_final_comparison("x{y=\"1\"} <= 0"), "x{y=\"1\"}");
    assert_eq!(without_final_comparison("rate(x[5m])"), "rate(x[5m])");
}

/// A day of one-minute samples of the node-exporter metrics the rules and
/// the dashboard use, for one host: a filling disk, a daily memory and CPU
/// cycle. Ends two minutes before now.
fn write_node_history(path: &Path) -> i64 {
    const MINUTE: i64 = 60;
    let end = now_ms() / 1000 / MINUTE * MINUTE - 2 * MINUTE;
    let start = end - 26 * 3600;
    let mut out = BufWriter::new(fs::File::create(path).expect("create OpenMetrics"));
    let base = r#"instance="node-1:9100",job="node""#;
    let fs_labels = format!(r#"{base},device="/dev/sda1",fstype="ext4",mountpoint="/""#);
    let cycle = |t: i64| (2.0 * std::f64::consts::PI * (t % 86_400) as f64 / 86_400.0).sin();
    let mut write = |name: &str, kind: &str, value: &dyn Fn(i64) -> f64, labels: &str| {
        writeln!(out, "# TYPE {name} {kind}").expect("write");
        for t in (start..=end).step_by(MINUTE as usize) {
            writeln!(out, "{name}{{{labels}}} {:.3} {t}", value(t)).expect("write");
        }
    };
    write(
        "node_filesystem_size_bytes",
        "gauge",
        &|_| 100e9,
        &fs_labels,
    );
    write(
        "node_filesystem_avail_bytes",
        "gauge",
        &|t| 60e9 - (t - start) as f64 * 2e5,
        &fs_labels,
    );
    write("node_memory_MemTotal_bytes", "gauge", &|_| 16e9, base);
    write(
        "node_memory_MemAvailable_bytes",
        "gauge",
        &|t| 8e9 + 2e9 * cycle(t),
        base,
    );
    // CPU counters accumulate the busy (or idle) share of each minute.
    let busy = |t: i64| 0.4 + 0.2 * cycle(t);
    writeln!(out, "# TYPE node_cpu_seconds counter").expect("write");
    for (mode, idle) in [("idle", true), ("user", false)] {
        let mut total = 0.0;
        for t in (start..=end).step_by(MINUTE as usize) {
            let share = busy(t);
            total += 60.0 * if idle { 1.0 - share } else { share };
            writeln!(
                out,
                "node_cpu_seconds_total{{{base},cpu=\"0\",mode=\"{mode}\"}} {total:.3} {t}"
            )
            .expect("write");
        }
    }
    writeln!(out, "# EOF").expect("write");
    out.flush().expect("flush");
    end
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_rule_and_cookbook_expression_returns_data() {
    require_binary(PROMETHEUS_BIN);
    require_binary(PROMTOOL_BIN);
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let dir = tmp.path().to_path_buf();
    let openmetrics = dir.join("node.om");
    let end = write_node_history(&openmetrics);
    let tsdb = dir.join("tsdb");
    fs::create_dir_all(&tsdb).expect("create TSDB directory");
    run_promtool_backfill(&openmetrics, &tsdb, &dir.join("promtool.log"));

    let (prom_port, promcast_port) = two_ports();
    let mut h = Harness::new(dir, prom_port, promcast_port);
    // The shipped configurations, pointed at this test's ports and files.
    let prometheus_yml = fs::read_to_string(repo("deploy/prometheus/prometheus.yml"))
        .expect("read deploy/prometheus/prometheus.yml")
        .replace("localhost:9201", &format!("127.0.0.1:{promcast_port}"))
        .replace(
            "  - rules/*.yml",
            &format!("  - {}/*.yml", repo("deploy/prometheus/rules").display()),
        );
    assert!(prometheus_yml.contains(&format!("127.0.0.1:{promcast_port}/api/v1/read")));
    h.start_prometheus_with(&prometheus_yml, &tsdb);
    h.wait_prometheus_ready().await;
    let promcast_yml =
        fs::read_to_string(repo("deploy/promcast/promcast.yml")).expect("read promcast.yml");
    h.start_promcast_with(&promcast_yml);
    h.wait_promcast_up().await;
    h.wait_promcast_scraped().await;

    let mut expressions = dashboard_expressions();
    let dashboard_count = expressions.len();
    expressions.extend(rule_expressions());
    assert!(
        dashboard_count >= 10 && expressions.len() > dashboard_count + 8,
        "{dashboard_count} dashboard and {} rule expressions found",
        expressions.len() - dashboard_count
    );
    expressions.extend(cookbook_expressions());
    // Rates need two scrapes of promcast, and its read latency histogram a
    // first remote read: retry each expression for a while before failing.
    let deadline = Instant::now() + Duration::from_secs(180);
    for e in &expressions {
        let full = substitute(&e.expr);
        let watched = if e.alert {
            without_final_comparison(&full)
        } else {
            full.clone()
        };
        loop {
            let now = now_ms() / 1000;
            // Parses and evaluates, without warnings (a failed remote read).
            let answer = h.range(&full, end - 1800, now, 30).await;
            h.assert_no_warnings(&full, &answer);
            let data = h.range(&watched, end - 1800, now, 30).await;
            h.assert_no_warnings(&watched, &data);
            if !data.series.is_empty() {
                println!("ok: {} ({} series): {watched}", e.origin, data.series.len());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: `{watched}` returned no data{}",
                e.origin,
                h.diag()
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Every YAML file in deploy/ parses, and every promcast configuration in
/// them (the Docker example's file, the Kubernetes ConfigMaps) is one that
/// promcast accepts.
#[test]
fn shipped_yaml_parses_and_promcast_configs_load() {
    let mut configs = vec![(
        "deploy/docker/promcast.yml".to_owned(),
        fs::read_to_string(repo("deploy/docker/promcast.yml")).expect("read"),
    )];
    let mut files = 0;
    for dir in [
        "deploy/docker",
        "deploy/kubernetes",
        "deploy/grafana/provisioning/datasources",
        "deploy/grafana/provisioning/dashboards",
    ] {
        for entry in fs::read_dir(repo(dir)).expect("read deploy directory") {
            let path = entry.expect("entry").path();
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                continue;
            }
            files += 1;
            let text = fs::read_to_string(&path).expect("read YAML");
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if value["kind"] == "ConfigMap"
                    && let Some(config) = value["data"]["promcast.yml"].as_str()
                {
                    configs.push((format!("{} ConfigMap", path.display()), config.to_owned()));
                }
            }
        }
    }
    assert!(files >= 6, "{files} YAML files");
    assert!(
        configs.len() >= 3,
        "{} promcast configurations",
        configs.len()
    );
    for (origin, text) in configs {
        if let Err(e) = promcast::config::Config::parse(&text, &origin) {
            panic!("{origin}: {e}");
        }
    }
}

/// The YAML documents of a file under deploy/.
fn yaml_documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// The Secret and key that a container's environment variable `name` is
/// taken from, through `env[].valueFrom.secretKeyRef` or a whole Secret in
/// `envFrom`.
fn secret_of<'a>(container: &'a serde_yaml::Value, name: &str) -> Option<(&'a str, String)> {
    let mut env = container["env"].as_sequence().into_iter().flatten();
    if let Some(var) = env.find(|v| v["name"] == name) {
        let secret = &var["valueFrom"]["secretKeyRef"];
        return Some((secret["name"].as_str()?, secret["key"].as_str()?.to_owned()));
    }
    container["envFrom"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find_map(|source| source["secretRef"]["name"].as_str())
        .map(|secret| (secret, name.to_owned()))
}

/// The replicas' manifest keeps its models in S3 and nothing on a shared
/// volume, takes the S3 credentials from a Secret it ships, keeps
/// promcast's `cluster.replicas` equal to the StatefulSet's replica count
/// (else families would have no trainer or two), probes each pod, and
/// bounds disruptions.
#[test]
fn the_replicas_manifest_agrees_with_itself() {
    let path = repo("deploy/kubernetes/replicas.yaml");
    let docs = yaml_documents(&path);
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {}", path.display()))
    };
    let text = of_kind("ConfigMap")["data"]["promcast.yml"]
        .as_str()
        .expect("promcast.yml in the ConfigMap");
    let config = promcast::config::Config::parse(text, "replicas.yaml").expect("config");
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("YAML");
    let store = yaml["model_store"]["url"].as_str().unwrap_or_default();
    assert!(
        store.starts_with("s3://"),
        "the replicas share models through S3, not {store:?}"
    );

    let statefulset = of_kind("StatefulSet");
    assert_eq!(
        statefulset["spec"]["replicas"].as_u64(),
        Some(u64::from(config.cluster.replicas)),
        "cluster.replicas must equal the StatefulSet's replicas"
    );
    assert!(
        config.cluster.ordinal.is_none(),
        "ordinals come from the pods"
    );
    let pod = &statefulset["spec"]["template"];
    assert!(
        !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim")
            && statefulset["spec"]["volumeClaimTemplates"].is_null()
            && pod["spec"]["volumes"]
                .as_sequence()
                .expect("volumes")
                .iter()
                .all(|v| v["persistentVolumeClaim"].is_null()),
        "no volume claim: the models are in the store"
    );

    let container = &pod["spec"]["containers"][0];
    let secret = of_kind("Secret");
    let secret_name = secret["metadata"]["name"].as_str().expect("Secret name");
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        let (name, key) = secret_of(container, var)
            .unwrap_or_else(|| panic!("{var} does not come from a Secret"));
        assert_eq!(name, secret_name, "{var} comes from the shipped Secret");
        assert!(
            !secret["stringData"][key.as_str()].is_null()
                || !secret["data"][key.as_str()].is_null(),
            "the shipped Secret has {key}, for {var}"
        );
    }
    let ordinal = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "PROMCAST_CLUSTER_ORDINAL")
        .expect("the ordinal from the pod");
    assert_eq!(
        ordinal["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");

    let budget = of_kind("PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget["spec"]["selector"], statefulset["spec"]["selector"],
        "the budget covers the StatefulSet's pods"
    );
}

/// The files under `dir` whose names pass `keep`, sorted.
fn files_in(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    files.sort();
    files
}

/// Runs a validator, returning its exit status and its whole output.
fn validate(tool: &Path, args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let output = Command::new(tool)
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Kubernetes 1.37, the newest API schema kubernetes-validate 1.37.0 (the
/// version tests/tools/setup pins) bundles.
const KUBERNETES_VERSION: &str = "1.37.0";

/// Every resource of every manifest in deploy/kubernetes/ is valid against
/// the Kubernetes API schema, with unknown fields refused (`--strict`), as
/// the API server's strict field validation would refuse them. A
/// misspelled field in a copy of a manifest shows that the check bites.
#[test]
fn kubernetes_manifests_pass_the_api_schema() {
    let tool = test_tool("kubernetes-validate");
    let args = ["--strict", "--kubernetes-version", KUBERNETES_VERSION];
    let manifests = files_in("deploy/kubernetes", |n| {
        n.ends_with(".yaml") || n.ends_with(".yml")
    });
    assert!(manifests.len() >= 3, "{manifests:?}");
    let (ok, text) = validate(&tool, &args, &manifests);
    println!("{text}");
    assert!(ok, "kubernetes-validate failed:\n{text}");
    let resources: usize = manifests.iter().map(|m| yaml_documents(m).len()).sum();
    assert_eq!(
        text.matches(" passed for resource ").count(),
        resources,
        "every resource is validated:\n{text}"
    );

    refuses_a_misspelling(
        &tool,
        &args,
        &repo("deploy/kubernetes/replicas.yaml"),
        "terminationGracePeriodSeconds:",
        "terminationGracePeriodSecond:",
    );
}

/// `tool` refuses a copy of `file` whose first `right` reads `wrong`, and
/// names the misspelled key: the check bites.
fn refuses_a_misspelling(tool: &Path, args: &[&str], file: &Path, right: &str, wrong: &str) {
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let broken = tmp.path().join(file.file_name().expect("a file name"));
    let text = fs::read_to_string(file).expect("read");
    assert!(text.contains(right), "{} has no {right:?}", file.display());
    fs::write(&broken, text.replacen(right, wrong, 1)).expect("write");
    let (ok, output) = validate(tool, args, &[broken]);
    let key = wrong.trim().trim_end_matches(':');
    assert!(
        !ok && output.contains(key),
        "a misspelled key is refused:\n{output}"
    );
}

/// Every compose file in deploy/docker/ is valid against the compose-spec
/// schema (the one `docker compose` implements); a misspelled service key
/// in a copy shows that the check bites.
#[test]
fn compose_files_pass_the_compose_spec_schema() {
    let tool = test_tool("check-jsonschema");
    let args = ["--builtin-schema", "vendor.compose-spec"];
    let files = files_in("deploy/docker", |n| {
        n.starts_with("compose") && (n.ends_with(".yml") || n.ends_with(".yaml"))
    });
    assert!(!files.is_empty(), "no compose file in deploy/docker");
    let (ok, text) = validate(&tool, &args, &files);
    println!("{text}");
    assert!(
        ok && text.contains("ok -- validation done"),
        "check-jsonschema failed:\n{text}"
    );

    refuses_a_misspelling(
        &tool,
        &args,
        &files[0],
        "\n    restart: ",
        "\n    restarts: ",
    );
}

/// The compose stack's parts point at each other: at least two promcast
/// replicas, numbered 0 to N-1 out of N; their store's bucket is the one
/// the one-shot service creates on the moto service their configuration
/// names, and that moto is the version the tests run; Prometheus reads
/// from and scrapes every replica.
#[test]
fn the_compose_stack_agrees_with_itself() {
    let mut compose = yaml_documents(&repo("deploy/docker/compose.yml"))
        .pop()
        .expect("compose.yml");
    compose.apply_merge().expect("merge keys");
    let services = compose["services"].as_mapping().expect("services");
    let replicas: Vec<(&str, &serde_yaml::Value)> = services
        .iter()
        .filter(|(_, s)| s["image"] == "promcast:local")
        .map(|(name, s)| (name.as_str().expect("service name"), s))
        .collect();
    assert!(replicas.len() >= 2, "two promcast replicas or more");

    let flag = |service: &serde_yaml::Value, name: &str| -> Option<u64> {
        service["command"]
            .as_sequence()?
            .iter()
            .find_map(|a| a.as_str()?.strip_prefix(&format!("--{name}=")))
            .map(|v| v.parse().expect("a number"))
    };
    let mut ordinals = Vec::new();
    for (name, service) in &replicas {
        assert_eq!(
            flag(service, "cluster.replicas"),
            Some(replicas.len() as u64),
            "{name}: --cluster.replicas is the number of replicas"
        );
        ordinals.push(flag(service, "cluster.ordinal").expect("--cluster.ordinal"));
        assert_eq!(
            service["depends_on"]["s3-bucket"]["condition"], "service_completed_successfully",
            "{name} starts once the bucket exists"
        );
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert!(service["environment"][var].is_string(), "{name}: {var}");
        }
    }
    ordinals.sort_unstable();
    assert_eq!(ordinals, (0..replicas.len() as u64).collect::<Vec<_>>());

    let config: serde_yaml::Value = serde_yaml::from_str(
        &fs::read_to_string(repo("deploy/docker/promcast.yml")).expect("read promcast.yml"),
    )
    .expect("YAML");
    let store = config["model_store"]["url"]
        .as_str()
        .expect("model_store.url");
    let bucket = store
        .strip_prefix("s3://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("an S3 store, not {store:?}"));
    let endpoint = config["model_store"]["endpoint"]
        .as_str()
        .expect("model_store.endpoint");
    let host = endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.split(':').next())
        .expect("a plain-HTTP endpoint");
    let image = compose["services"][host]["image"]
        .as_str()
        .unwrap_or_default();
    let setup = fs::read_to_string(repo("tests/tools/setup")).expect("read tests/tools/setup");
    let moto = setup
        .split_once("moto[server]==")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("moto's pin in tests/tools/setup");
    assert_eq!(
        image,
        format!("motoserver/moto:{moto}"),
        "the store is the moto the tests run"
    );
    let create = compose["services"]["s3-bucket"]["command"]
        .as_sequence()
        .expect("s3-bucket's command");
    assert!(
        create.iter().any(|a| a == "PUT")
            && create.iter().any(|a| *a == format!("{endpoint}/{bucket}")),
        "s3-bucket creates {bucket} at {endpoint}: {create:?}"
    );

    let prometheus: serde_yaml::Value = serde_yaml::from_str(
        &fs::read_to_string(repo("deploy/docker/prometheus.yml")).expect("read prometheus.yml"),
    )
    .expect("YAML");
    let mut reads: Vec<&str> = prometheus["remote_read"]
        .as_sequence()
        .expect("remote_read")
        .iter()
        .inspect(|r| assert_eq!(r["read_recent"], true, "{r:?}"))
        .map(|r| r["url"].as_str().expect("url"))
        .collect();
    reads.sort_unstable();
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "promcast")
        .expect("the promcast scrape job");
    let mut scraped: Vec<&str> = job["static_configs"][0]["targets"]
        .as_sequence()
        .expect("targets")
        .iter()
        .map(|t| t.as_str().expect("target"))
        .collect();
    scraped.sort_unstable();
    let mut names: Vec<&str> = replicas.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    assert_eq!(
        reads,
        names
            .iter()
            .map(|n| format!("http://{n}:9201/api/v1/read"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        scraped,
        names
            .iter()
            .map(|n| format!("{n}:9201"))
            .collect::<Vec<_>>()
    );
}
