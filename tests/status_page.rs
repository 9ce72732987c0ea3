//! The status page at `/` as a browser shows it: headless Chromium
//! (Debian's `chromium`, which `.ci/run` installs) loads it from a promcast
//! serving its embedded demo, takes a screenshot and dumps the rendered DOM,
//! which must hold the model table and a chart per demo family.

mod common {
    pub mod http;
    pub mod process;
    pub mod standalone;
}

use std::path::Path;
use std::process::Command;

use common::http::get_text;
use common::process::{log_section, require_binary};
use common::standalone::Standalone;

const CHROMIUM_BIN: &str = "/usr/bin/chromium";
const DEMO_FAMILIES: [&str; 4] = [
    "demo_cpu_usage_percent",
    "demo_filesystem_avail_bytes",
    "demo_http_request_duration_seconds_p99",
    "demo_memory_used_bytes",
];

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=…`), bounded to 90 s, and returns its stdout.
fn chromium(url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().expect("profile directory");
    let output = Command::new("timeout")
        .arg("90")
        .arg(CHROMIUM_BIN)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium {mode} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_renders_in_headless_chromium() {
    require_binary(CHROMIUM_BIN);
    let Standalone {
        _dir,
        promcast,
        client,
        base,
    } = Standalone::start(None, "").await;
    let (status, _) = get_text(&client, &format!("{base}/")).await.expect("GET /");
    assert_eq!(status, 200, "{}", log_section(&promcast));

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(
        &format!("{base}/"),
        &format!("--screenshot={}", screenshot.display()),
    );
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank page compresses to a few kB; tables and charts do not.
    assert!(
        png.len() > 30_000,
        "screenshot of {} bytes: blank page?",
        png.len()
    );
    println!("screenshot: {}", screenshot.display());

    let dom = chromium(&format!("{base}/"), "--dump-dom");
    let table = dom
        .split("<table id=\"models\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no model table in the rendered page:\n{dom}"));
    for family in DEMO_FAMILIES {
        assert!(
            table.contains(&format!("<td>{family}</td>")),
            "{family} missing from the model table:\n{table}"
        );
    }
    let charts: Vec<&str> = dom
        .split("<svg class=\"chart\"")
        .skip(1)
        .map(|c| c.split("</svg>").next().unwrap_or_default())
        .collect();
    assert_eq!(
        charts.len(),
        DEMO_FAMILIES.len(),
        "one chart per family:\n{dom}"
    );
    for chart in charts {
        for part in [
            "class=\"actual\"",
            "class=\"forecast\"",
            "class=\"band\"",
            "class=\"now\"",
        ] {
            assert!(
                chart.contains(part),
                "{part} missing from a chart:\n{chart}"
            );
        }
        let points = |class: &str| {
            chart
                .split(&format!("class=\"{class}\""))
                .nth(1)
                .and_then(|c| c.split("points=\"").nth(1))
                .map_or(0, |p| {
                    p.split('"').next().unwrap_or_default().split(' ').count()
                })
        };
        assert!(
            points("actual") >= 50,
            "the actual line has {} points",
            points("actual")
        );
        assert!(
            points("forecast") >= 50,
            "the forecast line has {} points",
            points("forecast")
        );
    }
}
