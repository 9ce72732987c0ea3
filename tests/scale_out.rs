//! Three replicas sharing models through S3, as issue 15's acceptance asks:
//! moto as the S3 server, three promcast processes on the embedded demo
//! behind Debian's haproxy (standing in for a Kubernetes Service), and a
//! real Prometheus reading them through haproxy. Retraining every 20 s
//! (so that the staleness bound, twice that, passes within the test):
//!
//! 1. every family is trained by exactly one replica, its rendezvous
//!    trainer, and each training becomes exactly one generation (training
//!    runs across the replicas = generations in the bucket, no conflict);
//! 2. `kill -9` of a trainer: every family keeps answering through the
//!    balancer and Prometheus, and the survivors answer its families with
//!    the same bytes;
//! 3. nothing retrains those families before the bound; after it, one
//!    survivor takes each of them over, once;
//! 4. the killed replica, restarted with an empty disk, loads every model
//!    from the bucket and trains nothing.

mod common {
    pub mod exposition;
    #[allow(dead_code)] // its Prometheus only: the replicas are this suite's own
    pub mod harness;
    pub mod http;
    pub mod process;
    #[allow(dead_code)] // an empty Prometheus: nothing back-filled
    pub mod prometheus;
    #[allow(dead_code)] // one request type and answer here
    pub mod remote_read;
    pub mod s3;
    #[allow(dead_code)] // the harness can be secured; this suite never secures it
    pub mod secrets;
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::exposition::metric_sum;
use common::harness::{Harness, two_ports};
use common::http::get_text;
use common::process::{ChildGuard, free_port, log_section, wait_healthy};
use common::remote_read::{forecast_request, post_read_typed};
use common::s3::S3;

const FAMILIES: [&str; 4] = [
    "demo_cpu_usage_percent",
    "demo_filesystem_avail_bytes",
    "demo_http_request_duration_seconds_p99",
    "demo_memory_used_bytes",
];
const REPLICAS: usize = 3;
/// The bucket prefix; the demo's models go in its `demo/` folder.
const STORE: &str = "s3://models/scale";
const PREFIX: &str = "scale/demo";
/// A small network (the test checks the sharing, not accuracy), retrained
/// every 20 s: a family is taken over 40 s after its last model.
const CONFIG: &str = "defaults:
  retrain_interval: 20s
model:
  hidden: 8
  max_epochs: 1
  windows_per_epoch: 128
  patience: 1
";

struct Replica {
    base: String,
    port: u16,
    process: ChildGuard,
}

/// Starts replica `ordinal` of three on `port`, its files in `dir` (none
/// of them models), with the bucket's credentials in its environment.
async fn start_replica(
    dir: &Path,
    s3: &S3,
    ordinal: usize,
    port: u16,
    client: &reqwest::Client,
) -> Replica {
    std::fs::create_dir_all(dir).expect("replica directory");
    let config = dir.join("promcast.yml");
    std::fs::write(&config, CONFIG).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promcast"));
    cmd.current_dir(dir)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--model.store={STORE}"))
        .arg(format!("--cluster.replicas={REPLICAS}"))
        .arg(format!("--cluster.ordinal={ordinal}"))
        .envs(s3.env());
    let log = dir.join(format!("promcast-{}.log", free_port()));
    let mut process = ChildGuard::spawn(&format!("promcast-{ordinal}"), cmd, &log);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(client, &base, &mut process).await;
    Replica {
        base,
        port,
        process,
    }
}

/// haproxy in front of the replicas: round robin, `/-/ready` checked
/// every 500 ms, a refused connection retried on another replica.
fn start_haproxy(dir: &Path, port: u16, replicas: &[u16]) -> ChildGuard {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server r{i} 127.0.0.1:{p} check inter 500ms fall 1 rise 1\n"))
        .collect();
    let config = format!(
        "defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend promcast
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /-/ready
{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("write haproxy.cfg");
    let mut cmd = Command::new("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&path);
    ChildGuard::spawn("haproxy", cmd, &dir.join("haproxy.log"))
}

/// What a replica says of every family: (version, origin, trainer).
async fn models(
    client: &reqwest::Client,
    replica: &Replica,
) -> BTreeMap<String, (u64, String, String)> {
    let (status, body) = get_text(client, &format!("{}/api/v1/models", replica.base))
        .await
        .unwrap_or_else(|e| panic!("GET /api/v1/models: {e}{}", log_section(&replica.process)));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("models JSON");
    json["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| {
            let text = |key: &str| m[key].as_str().unwrap_or_default().to_owned();
            (
                text("family"),
                (
                    m["version"].as_u64().unwrap_or(0),
                    text("origin"),
                    text("trainer"),
                ),
            )
        })
        .collect()
}

/// A replica's successful training runs and store conflicts.
async fn counters(client: &reqwest::Client, replica: &Replica) -> (f64, f64) {
    let (_, text) = get_text(client, &format!("{}/metrics", replica.base))
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}{}", log_section(&replica.process)));
    (
        metric_sum(
            &text,
            "promcast_training_runs_total",
            &[r#"result="success""#],
        ),
        metric_sum(&text, "promcast_model_store_conflicts_total", &[]),
    )
}

/// Each family's pointer: (generation, trained at).
async fn pointers(s3: &S3) -> BTreeMap<&'static str, (u64, i64)> {
    let mut all = BTreeMap::new();
    for family in FAMILIES {
        all.insert(family, s3.pointer(PREFIX, family).await);
    }
    all
}

async fn generations(s3: &S3) -> Vec<u64> {
    pointers(s3).await.values().map(|p| p.0).collect()
}

/// The generations saved, once the successful training runs of
/// `replicas`, plus `earlier_runs` of replicas gone, add up to them (a
/// save moves its pointer just before its run is counted, so this polls
/// for up to 10 s); none if they never do. No replica may have lost a save.
async fn runs_match_generations(
    client: &reqwest::Client,
    s3: &S3,
    replicas: &[&Replica],
    earlier_runs: f64,
) -> Option<Vec<u64>> {
    for _ in 0..20 {
        let mut runs = earlier_runs;
        for replica in replicas {
            let (trained, conflicts) = counters(client, replica).await;
            assert_eq!(
                conflicts,
                0.0,
                "{} lost a save{}",
                replica.base,
                log_section(&replica.process)
            );
            runs += trained;
        }
        let saved = generations(s3).await;
        if runs == saved.iter().sum::<u64>() as f64 {
            return Some(saved);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Polls `done` every second for up to `limit`, failing with `what`.
async fn wait_for<F: AsyncFnMut() -> bool>(limit: Duration, what: &str, mut done: F) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A remote read of `family`'s forecasts over the half hour before `end`.
async fn remote_read(
    client: &reqwest::Client,
    replica: &Replica,
    family: &str,
    end: i64,
) -> Vec<u8> {
    let request = forecast_request(family, end - 1_800_000, end);
    let (status, _, body) = post_read_typed(client, &replica.base, &request).await;
    assert_eq!(status, 200, "{}", log_section(&replica.process));
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_models_through_s3_and_survive_a_kill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (prom_port, balancer_port) = two_ports();
    let mut h = Harness::new(dir.path().to_owned(), prom_port, balancer_port);
    let client = h.client.clone();
    let s3 = S3::start(dir.path(), &client).await;
    let mut replicas = Vec::new();
    for ordinal in 0..REPLICAS {
        let replica_dir = dir.path().join(format!("replica-{ordinal}"));
        replicas.push(start_replica(&replica_dir, &s3, ordinal, free_port(), &client).await);
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let _haproxy = start_haproxy(dir.path(), balancer_port, &ports);
    let prometheus_config = format!(
        "global:\n  scrape_interval: 15s\nremote_read:\n  - url: http://127.0.0.1:{balancer_port}/api/v1/read\n    read_recent: true\n"
    );
    let tsdb = dir.path().join("tsdb");
    std::fs::create_dir_all(&tsdb).expect("tsdb directory");
    h.start_prometheus_with(&prometheus_config, &tsdb);
    h.wait_prometheus_ready().await;

    // 1. Every family gets a model, trained by its trainer alone, which
    //    every replica then serves.
    wait_for(
        Duration::from_secs(150),
        "every family trained and served everywhere",
        async || {
            let saved = generations(&s3).await;
            if saved.contains(&0) {
                return false;
            }
            for replica in &replicas {
                let served = models(&client, replica).await;
                if FAMILIES
                    .iter()
                    .any(|f| served.get(*f).is_none_or(|m| m.0 == 0))
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let mut trainer_of = BTreeMap::new();
    for (ordinal, replica) in replicas.iter().enumerate() {
        for (family, (_, _, trainer)) in models(&client, replica).await {
            if trainer == "here" {
                assert!(
                    trainer_of.insert(family.clone(), ordinal).is_none(),
                    "{family} has two trainers"
                );
            }
        }
    }
    assert_eq!(
        trainer_of.len(),
        FAMILIES.len(),
        "one trainer each: {trainer_of:?}"
    );

    // Each training is one generation: after two more scheduler ticks of
    // retraining, the runs across replicas equal the generations saved.
    let first = generations(&s3).await;
    tokio::time::sleep(Duration::from_secs(65)).await;
    let all: Vec<&Replica> = replicas.iter().collect();
    let retrained = runs_match_generations(&client, &s3, &all, 0.0)
        .await
        .expect("training runs never matched the generations saved");
    assert!(
        retrained.iter().zip(&first).all(|(now, then)| now > then),
        "every family retrains each cycle: {first:?} then {retrained:?}"
    );

    // 2. kill -9 the trainer of the first family.
    let victim = trainer_of[FAMILIES[0]];
    let orphans: Vec<&str> = FAMILIES
        .iter()
        .copied()
        .filter(|f| trainer_of[*f] == victim)
        .collect();
    // Between two of its trainings, so that its count of runs is final: a
    // run is counted before its family stops showing `training`.
    wait_for(
        Duration::from_secs(60),
        "the victim between trainings",
        async || {
            let url = format!("{}/api/v1/models", replicas[victim].base);
            let (_, body) = get_text(&client, &url).await.expect("GET /api/v1/models");
            !body.contains(r#""training":true"#)
        },
    )
    .await;
    let victim_runs = counters(&client, &replicas[victim]).await.0;
    replicas[victim].process.child.kill().expect("kill -9");
    replicas[victim].process.child.wait().expect("reap");
    let frozen = pointers(&s3).await;
    let survivors: Vec<&Replica> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, r)| r)
        .collect();

    // Queries for every family keep succeeding through haproxy and
    // Prometheus.
    let now_s = promcast::calendar::now_ms() / 1000;
    for round in 0..3 {
        for family in FAMILIES {
            let query = format!("predicted_{family}{{horizon=\"1h\"}}");
            let answer = h.range(&query, now_s - 1800, now_s, 60).await;
            assert!(
                !answer.series.is_empty(),
                "round {round}: {query} returned nothing after the kill{}",
                h.diag()
            );
        }
    }

    // The survivors answer the orphaned families with the same bytes.
    let end = (promcast::calendar::now_ms() / 60_000 - 5) * 60_000;
    for family in &orphans {
        let a = remote_read(&client, survivors[0], family, end).await;
        let b = remote_read(&client, survivors[1], family, end).await;
        assert!(a == b, "the survivors answer {family} differently");
    }

    // 3. The orphans are taken over once their newest model is older
    //    than the bound (twice the retrain interval), not before.
    wait_for(
        Duration::from_secs(120),
        "the orphans taken over",
        async || {
            let now = pointers(&s3).await;
            orphans.iter().all(|f| now[f].0 > frozen[f].0)
        },
    )
    .await;
    let taken = pointers(&s3).await;
    for family in &orphans {
        let waited = taken[family].1 - frozen[family].1;
        assert!(
            waited > 40_000,
            "{family} retrained {waited} ms after its last model: before the bound"
        );
    }

    // 4. The victim comes back on an empty disk, while its families'
    //    models are fresh: it loads every model and trains nothing.
    let fresh = dir.path().join("replica-restarted");
    let port = replicas[victim].port;
    let back = start_replica(&fresh, &s3, victim, port, &client).await;
    let served = models(&client, &back).await;
    let saved = generations(&s3).await;
    for (family, generation) in FAMILIES.iter().zip(&saved) {
        let (version, origin, _) = &served[*family];
        assert!(
            *version + 1 >= *generation && origin == "loaded",
            "{family}: {served:?}, bucket at {generation}"
        );
    }
    assert_eq!(
        counters(&client, &back).await.0,
        0.0,
        "the restarted replica trained"
    );
    assert_eq!(
        models(&client, &back).await[FAMILIES[0]].2,
        "here",
        "it trains its families again"
    );

    // Every training since the start was one generation: the runs of the
    // survivors, of the victim before the kill and since its return equal
    // the generations saved.
    let living: Vec<&Replica> = survivors.iter().copied().chain([&back]).collect();
    assert!(
        runs_match_generations(&client, &s3, &living, victim_runs)
            .await
            .is_some(),
        "the takeover trained more than once (or lost a run)"
    );
    assert!(
        std::fs::read_dir(&fresh)
            .expect("replica directory")
            .filter_map(Result::ok)
            .all(|e| !e.file_name().to_string_lossy().ends_with(".bpk")),
        "models written to the local disk"
    );
    drop(back);
    drop(replicas);
    drop(s3);
}
