//! The operator commands as a terminal runs them: `promcast train`,
//! `promcast forecast` and `promcast forget` on the embedded demo
//! upstream, and `promcast eval` on recorded series written by the test.

use std::path::Path;
use std::process::{Command, Output};

/// Runs promcast with `args` and `model_dir`, bounded to 5 minutes.
fn promcast(model_dir: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("300")
        .arg(env!("CARGO_BIN_EXE_promcast"))
        .arg(format!("--model.dir={}", model_dir.display()))
        .arg(format!("--config.file={}", config.display()))
        .args(args)
        .output()
        .expect("run promcast")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Cells of the table row that starts with `prefix`.
fn row<'a>(table: &'a str, prefix: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no row starting with {prefix:?} in:\n{table}"))
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn train_then_forecast_from_the_saved_model() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let models = dir.path().join("models");
    let config = dir.path().join("promcast.yml");
    // A small training budget: the test checks the plumbing, not accuracy.
    std::fs::write(
        &config,
        "model:\n  max_epochs: 2\n  windows_per_epoch: 128\n  patience: 2\n",
    )
    .expect("write config");

    // Before training, the seasonal baseline answers.
    let family = "demo_cpu_usage_percent";
    let selector = format!("{family}{{instance=\"web-1:9100\"}}");
    let before = promcast(&models, &config, &["forecast", &selector]);
    assert!(before.status.success(), "{}", stderr(&before));
    let text = stdout(&before);
    assert!(text.contains("seasonal baseline"), "{text}");
    for horizon in ["15m", "1h", "6h"] {
        let cells = row(
            &text,
            &format!("{family}{{instance=\"web-1:9100\", job=\"node\"}}  {horizon}"),
        );
        let numbers: Vec<f64> = cells[2..]
            .iter()
            .map(|c| c.parse().unwrap_or(f64::NAN))
            .collect();
        let [predicted, lower, upper, score] = numbers[..] else {
            panic!("{cells:?}");
        };
        assert!(
            lower <= predicted && predicted <= upper && score >= 0.0,
            "{horizon}: {cells:?}"
        );
        assert!(
            (0.0..=100.0).contains(&predicted),
            "a CPU percentage: {cells:?}"
        );
    }

    let trained = promcast(&models, &config, &["train", family]);
    assert!(
        trained.status.success(),
        "{}\n{}",
        stdout(&trained),
        stderr(&trained)
    );
    let text = stdout(&trained);
    let cells = row(&text, family);
    assert_eq!(&cells[1..3], ["trained", "1"], "{text}");
    // The demo's models live apart: a real upstream over the same
    // --model.dir neither loads nor forgets them.
    let saved = format!("{family}.json");
    assert!(models.join("demo").join(&saved).is_file());
    assert!(!models.join(&saved).exists());
    let real = promcast(
        &models,
        &config,
        &["forget", family, "--upstream.url=http://127.0.0.1:9"],
    );
    assert!(
        !real.status.success() && stderr(&real).contains("no saved model"),
        "{}",
        stderr(&real)
    );

    let after = promcast(&models, &config, &["forecast", family]);
    assert!(after.status.success(), "{}", stderr(&after));
    let text = stdout(&after);
    assert!(
        text.contains(&format!("{family}: LSTM model version 1")),
        "{text}"
    );
    // All three demo instances, three horizons each.
    let rows = text.lines().filter(|l| l.starts_with(family)).count();
    assert_eq!(rows, 1 + 9, "{text}");

    // Forgotten, the family is back to the baseline; forgotten twice, an error.
    let forgot = promcast(&models, &config, &["forget", family]);
    assert!(forgot.status.success(), "{}", stderr(&forgot));
    assert!(stdout(&forgot).contains(&saved), "{}", stdout(&forgot));
    assert!(!models.join("demo").join(&saved).exists());
    let again = promcast(&models, &config, &["forecast", family]);
    assert!(
        stdout(&again).contains("seasonal baseline"),
        "{}",
        stdout(&again)
    );
    let twice = promcast(&models, &config, &["forget", family]);
    assert!(
        !twice.status.success() && stderr(&twice).contains("no saved model"),
        "{}",
        stderr(&twice)
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("promcast.yml");
    std::fs::write(&config, "").expect("write config");
    let models = dir.path().join("models");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let unreachable = format!("http://{}", closed.local_addr().expect("its address"));
    drop(closed);
    for (args, reason) in [
        (&["forecast", "demo_cpu_usage_percent{"][..], "selector"),
        (
            &["forecast", "demo_cpu_usage_percent", "--at", "yesterday"][..],
            "--at",
        ),
        (&["forecast", "no_such_metric"][..], "no series"),
        (&["train", "no_such_metric"][..], "no series"),
        // The upstream's own failure, as the server and `train` report it,
        // not an empty answer.
        (
            &["forecast", "node_load1", "--upstream.url", &unreachable][..],
            "upstream request failed",
        ),
    ] {
        let out = promcast(&models, &config, args);
        assert!(
            !out.status.success(),
            "{args:?} must fail: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains(reason),
            "{args:?}: the error must mention {reason:?}: {}",
            stderr(&out)
        );
    }

    // A store promcast cannot use, and an ordinal from the environment
    // (as a pod's index label sets it) beyond the replicas.
    let run = |env: &[(&str, &str)], args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_promcast"))
            .envs(env.iter().copied())
            .arg(format!("--config.file={}", config.display()))
            .args(args)
            .output()
            .expect("run promcast")
    };
    for (env, args, reason) in [
        (
            &[][..],
            &["--model.store=gs://bucket/models", "forget", "up"][..],
            "--model.store: model store \"gs://bucket/models\": unsupported scheme",
        ),
        (
            &[("PROMCAST_CLUSTER_ORDINAL", "5")][..],
            &["--cluster.replicas=3", "forget", "up"][..],
            "cluster ordinal 5 is not below",
        ),
    ] {
        let out = run(env, args);
        assert!(
            !out.status.success() && stderr(&out).contains(reason),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// Points every `step_min` minutes over `days` of a daily cycle with a
/// little deterministic noise, and a spike of `spike` at point `at`, as
/// NAB CSV.
fn nab_csv(step_min: usize, days: usize, at: usize, spike: f64) -> String {
    let per_day = 1440 / step_min;
    let mut csv = String::from("timestamp,value\n");
    for i in 0..days * per_day {
        let (d, minute) = (i / per_day, i % per_day * step_min);
        let day = minute as f64 / 1440.0 * std::f64::consts::TAU;
        let noise = ((i * 7919) % 17) as f64 / 17.0 - 0.5;
        let value = 50.0 + 20.0 * day.sin() + noise + if i == at { spike } else { 0.0 };
        csv += &format!(
            "2024-03-{:02} {:02}:{:02}:00,{value:.3}\n",
            d + 1,
            minute / 60,
            minute % 60
        );
    }
    csv
}

#[test]
fn eval_scores_every_method_and_finds_a_labelled_spike() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data").join("cycles");
    std::fs::create_dir_all(&data).expect("data folder");
    // Day 8 of 8, 12:00: point 7 * 288 + 144, inside the forecast part.
    let spike_at = 7 * 288 + 144;
    std::fs::write(data.join("spiky.csv"), nab_csv(5, 8, spike_at, 60.0)).expect("write csv");
    std::fs::write(data.join("calm.csv"), nab_csv(5, 6, 0, 0.0)).expect("write csv");
    let labels = dir.path().join("windows.json");
    std::fs::write(
        &labels,
        r#"{"cycles/spiky.csv": [["2024-03-08 11:30:00.000000", "2024-03-08 12:30:00.000000"]], "cycles/calm.csv": []}"#,
    )
    .expect("write labels");
    let config = dir.path().join("promcast.yml");
    std::fs::write(
        &config,
        "model:\n  hidden: 16\n  max_epochs: 4\n  windows_per_epoch: 512\n  patience: 4\n",
    )
    .expect("write config");

    let out = promcast(
        &dir.path().join("models"),
        &config,
        &[
            "eval",
            "--json",
            "--stride=6",
            "--horizons=5m,1h",
            &format!("--labels={}", labels.display()),
            &dir.path().join("data").display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(report["horizons"], serde_json::json!(["5m", "1h"]));
    let files = report["files"].as_array().expect("files");
    let names: Vec<&str> = files.iter().filter_map(|f| f["file"].as_str()).collect();
    assert_eq!(names, ["cycles/calm.csv", "cycles/spiky.csv"]);
    for method in ["lstm", "seasonal_naive", "predict_linear", "ets", "mstl"] {
        for h in ["5m", "1h"] {
            let mase = report["methods"][method]["mase"][h].as_f64();
            assert!(
                mase.is_some_and(|m| m.is_finite() && m > 0.0),
                "{method} {h}: {mase:?}"
            );
        }
    }
    // A clean daily cycle: yesterday's value is nearly exact an hour
    // ahead, a straight line through the last hour is not.
    let m = |method: &str| report["methods"][method]["mase"]["1h"].as_f64().unwrap();
    assert!(m("seasonal_naive") < m("predict_linear"), "{report:#}");
    // Every file scored on the same number of origins per horizon.
    for f in files {
        assert!(f["origins"]["1h"].as_u64().unwrap() > 50, "{f:#}");
    }
    let coverage = report["coverage"]["1h"].as_f64().expect("coverage");
    assert!((0.0..=1.0).contains(&coverage));
    // The spike lies in its labelled window: detected, and it is the only
    // window scored.
    let anomaly = &report["anomaly"];
    assert_eq!(anomaly["windows"], 1, "{anomaly:#}");
    assert_eq!(anomaly["detected"], 1, "{anomaly:#}");
    assert!(anomaly["nab_score"].as_f64().unwrap() > 0.0, "{anomaly:#}");

    // As tables, and with a global flag after the subcommand.
    let text = promcast(
        &dir.path().join("models"),
        &config,
        &[
            "eval",
            "--stride=24",
            "--horizons=1h",
            &data.join("calm.csv").display().to_string(),
            "--log.level=warn",
        ],
    );
    assert!(text.status.success(), "{}", stderr(&text));
    let table = stdout(&text);
    assert!(row(&table, "seasonal_naive").len() == 2, "{table}");
    // Without --labels, no detection figures (the notes on how figures
    // are computed stay whole).
    let (figures, _) = table.split_once("How these are computed").expect("notes");
    assert!(figures.contains("of points alarming"), "{table}");
    for unasked in ["NAB score", "false alarms", "detected"] {
        assert!(!figures.contains(unasked), "{unasked}: {table}");
    }
}

#[test]
fn eval_says_why_it_scores_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("promcast.yml");
    std::fs::write(
        &config,
        "model:\n  hidden: 8\n  max_epochs: 2\n  windows_per_epoch: 128\n  patience: 2\n",
    )
    .expect("write config");
    let models = dir.path().join("models");

    // Half-hourly points: 5m is no whole number of steps; 1h is scored.
    let half_hourly = dir.path().join("half_hourly.csv");
    std::fs::write(&half_hourly, nab_csv(30, 8, 0, 0.0)).expect("write csv");
    let out = promcast(
        &models,
        &config,
        &[
            "eval",
            "--stride=5",
            "--horizons=5m,1h",
            &half_hourly.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let reason = "5m is not a whole number of the file's 30m steps";
    assert!(
        table.contains(&format!("5m: no file scored: {reason}")),
        "{table}"
    );
    let five = row(&table, "half_hourly.csv");
    assert_eq!(five[1..], ["5m", "-", reason], "{table}");
    // The file's next row, its name left blank.
    let hour: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("1h "))
        .unwrap_or_else(|| panic!("no 1h row in:\n{table}"))
        .split_whitespace()
        .collect();
    assert!(hour[1].parse::<usize>().is_ok_and(|n| n > 0), "{table}");

    // With too little data nothing is scored: a reason, and a failure.
    let short = dir.path().join("short.csv");
    std::fs::write(&short, nab_csv(30, 1, 0, 0.0)).expect("write csv");
    let out = promcast(
        &models,
        &config,
        &["eval", "--horizons=1h", &short.display().to_string()],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("nothing could be evaluated: short.csv: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn eval_refuses_bad_input_with_a_reason() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("promcast.yml");
    std::fs::write(&config, "").expect("write config");
    let models = dir.path().join("models");
    let missing = dir.path().join("missing.csv");
    let out = promcast(&models, &config, &["eval", &missing.display().to_string()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));

    let broken = dir.path().join("broken.csv");
    std::fs::write(
        &broken,
        "timestamp,value\n2024-03-01 00:00:00,1\nyesterday,2\n",
    )
    .expect("write csv");
    let out = promcast(&models, &config, &["eval", &broken.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("broken.csv:3: invalid timestamp \"yesterday\""),
        "{}",
        stderr(&out)
    );

    let out = promcast(
        &models,
        &config,
        &["eval", "--horizons=soon", &broken.display().to_string()],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--horizons"), "{}", stderr(&out));
}

#[test]
fn eval_runs_nab_protocol_and_scores_detectors_side_by_side() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data").join("cycles");
    std::fs::create_dir_all(&data).expect("data folder");
    // Day 6 of 6, 12:00, well after the probationary rows (the first 259).
    let spike_at = 5 * 288 + 144;
    std::fs::write(data.join("spiky.csv"), nab_csv(5, 6, spike_at, 60.0)).expect("write csv");
    std::fs::write(data.join("calm.csv"), nab_csv(5, 4, 0, 0.0)).expect("write csv");
    let labels = dir.path().join("windows.json");
    std::fs::write(
        &labels,
        r#"{"cycles/spiky.csv": [["2024-03-06 11:00:00.000000", "2024-03-06 13:00:00.000000"]], "cycles/calm.csv": []}"#,
    )
    .expect("write labels");
    let config = dir.path().join("promcast.yml");
    std::fs::write(
        &config,
        "defaults:\n  horizons: [5m, 1h]\n  retrain_interval: 12h\nmodel:\n  hidden: 8\n  max_epochs: 3\n  warm_epochs: 1\n  windows_per_epoch: 256\n  patience: 3\n",
    )
    .expect("write config");
    // A detector that alarms exactly at the window's first row: NAB's
    // perfect score, 100, whatever promcast scores.
    let results = dir.path().join("results");
    let perfect = results.join("perfect").join("cycles");
    std::fs::create_dir_all(&perfect).expect("results folder");
    for (file, days, alarm) in [("spiky", 6, Some(5 * 288 + 132)), ("calm", 4, None)] {
        let rows: String = nab_csv(5, days, 0, 0.0)
            .lines()
            .skip(1)
            .enumerate()
            .map(|(i, l)| {
                let ts = l.split(',').next().unwrap_or_default();
                format!("{ts},{}\n", u8::from(Some(i) == alarm))
            })
            .collect();
        std::fs::write(
            perfect.join(format!("perfect_{file}.csv")),
            format!("timestamp,anomaly_score\n{rows}"),
        )
        .expect("write results");
    }

    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval".to_owned(),
            format!("--nab-results={}", results.display()),
            format!("--labels={}", labels.display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        promcast(&dir.path().join("models"), &config, &args)
    };
    let out = run(&[&dir.path().join("data").display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("promcast: 2 files, 2880 rows"), "{table}");
    // promcast's rows in NAB's layout, one per input row, scores in [0, 1),
    // labels where the window is.
    let written = std::fs::read_to_string(results.join("promcast/cycles/promcast_spiky.csv"))
        .expect("promcast's results for spiky.csv");
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6 * 288);
    assert!(
        rows.iter()
            .all(|r| r[2].parse::<f64>().is_ok_and(|s| (0.0..1.0).contains(&s)))
    );
    assert_eq!(rows.iter().filter(|r| r[3] == "1").count(), 25);
    assert_eq!(rows[spike_at][0], "2024-03-06 12:00:00");
    // Every detector in the folder on the three profiles; the perfect one
    // at 100 on each, and promcast finds the spike at its alarm threshold.
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        assert!(table.contains(profile), "{table}");
    }
    assert_eq!(
        row(&table, "perfect")[1..4],
        ["standard", "1.000000", "100.000"],
        "{table}"
    );
    assert_eq!(row(&table, "promcast  ")[1], "standard", "{table}");
    assert!(
        table.contains("(anomaly_score > 1): 1 of 1 windows detected"),
        "{table}"
    );

    // Scoring again runs nothing and prints the same scores.
    let again = run(&["--score-only"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let rescored = stdout(&again);
    assert!(!rescored.contains("models trained"), "{rescored}");
    let scores = |t: &str| t[t.find("NAB scores").expect("scores")..].to_owned();
    assert_eq!(scores(&rescored), scores(&table));
}
