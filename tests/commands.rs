//! The operator commands as a terminal runs them: `promcast train` and
//! `promcast forecast`, on the embedded demo upstream.

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
    assert!(models.join(format!("{family}.json")).is_file());

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
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("promcast.yml");
    std::fs::write(&config, "").expect("write config");
    let models = dir.path().join("models");
    for (args, reason) in [
        (&["forecast", "demo_cpu_usage_percent{"][..], "selector"),
        (
            &["forecast", "demo_cpu_usage_percent", "--at", "yesterday"][..],
            "--at",
        ),
        (&["forecast", "no_such_metric"][..], "no series"),
        (&["train", "no_such_metric"][..], "no series"),
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
}
