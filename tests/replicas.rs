//! Replicas sharing one model directory: `promcast train` saves a model
//! there, two serving replicas (`--cluster.replicas=2`) load it, agree on
//! which of them trains the family, and answer the same remote read with
//! the same bytes, so that Prometheus may merge their answers or a
//! Service may send a query to either.

mod common {
    pub mod http;
    pub mod process;
    #[allow(dead_code)] // one request type and answer here
    pub mod remote_read;
}

use common::http::{get_text, http_client};
use common::process::{free_port, log_section, spawn_promcast_with, wait_healthy};
use common::remote_read::{decode_samples_answer, forecast_request, post_read_typed};

const FAMILY: &str = "demo_cpu_usage_percent";

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_one_model_directory_answer_alike() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // A small training budget: the test checks the sharing, not accuracy.
    let config = "model:\n  hidden: 8\n  max_epochs: 1\n  windows_per_epoch: 128\n  patience: 1\n";
    let config_file = dir.path().join("promcast.yml");
    std::fs::write(&config_file, config).expect("write config");
    let trained = std::process::Command::new("timeout")
        .arg("300")
        .arg(env!("CARGO_BIN_EXE_promcast"))
        .arg(format!(
            "--model.dir={}",
            dir.path().join("models").display()
        ))
        .arg(format!("--config.file={}", config_file.display()))
        .args(["train", FAMILY])
        .output()
        .expect("run promcast train");
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );

    let client = http_client();
    let mut replicas = Vec::new();
    for ordinal in 0..2 {
        let port = free_port();
        let mut process = spawn_promcast_with(
            dir.path(),
            port,
            None,
            config,
            &dir.path().join(format!("promcast-{ordinal}.log")),
            &[
                "--cluster.replicas=2".to_owned(),
                format!("--cluster.ordinal={ordinal}"),
            ],
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&client, &base, &mut process).await;
        replicas.push((base, process));
    }

    // Both serve the saved model, and agree on its trainer.
    let mut trainers = Vec::new();
    for (base, process) in &replicas {
        let (_, body) = get_text(&client, &format!("{base}/api/v1/models"))
            .await
            .expect("GET /api/v1/models");
        let models: serde_json::Value = serde_json::from_str(&body).expect("models JSON");
        let family = models["data"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["family"] == FAMILY))
            .unwrap_or_else(|| panic!("{FAMILY} in {body}{}", log_section(process)));
        assert_eq!(family["version"], 1, "{family}");
        assert_eq!(family["origin"], "loaded", "{family}");
        trainers.push(family["trainer"].as_str().unwrap_or_default().to_owned());
    }
    trainers.sort();
    assert!(
        trainers == ["here", "replica 0"] || trainers == ["here", "replica 1"],
        "one replica trains, the other names it: {trainers:?}"
    );

    // The same read, at fixed times, to both: the same bytes.
    let end = (promcast::calendar::now_ms() / 60_000 - 10) * 60_000;
    let request = forecast_request(FAMILY, end - 3_600_000, end);
    let mut answers = Vec::new();
    for (base, process) in &replicas {
        let (status, _, body) = post_read_typed(&client, base, &request).await;
        assert_eq!(status, 200, "{}", log_section(process));
        answers.push(body);
    }
    let series = decode_samples_answer(&answers[0]).len();
    assert!(series >= 3, "the demo family's forecasts: {series} series");
    assert!(answers[0] == answers[1], "the replicas' answers differ");
}
