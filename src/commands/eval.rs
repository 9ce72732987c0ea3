//! `promcast eval PATH...`: back-tests forecasts and anomaly scores on
//! recorded series and prints the comparison, as tables or as JSON.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::duration::PromDuration;
use crate::eval::dataset::{self, Recording, Windows};
use crate::eval::methods::Method;
use crate::eval::{Evaluator, FileReport, NOTES, Phase, Report};

use super::table;

/// What `promcast eval` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// CSV files and folders of them.
    pub paths: Vec<PathBuf>,
    /// NAB `combined_windows.json`, for anomaly scoring.
    pub labels: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    pub json: bool,
    /// Files evaluated at once.
    pub jobs: usize,
}

/// Why `promcast eval` failed after printing its report.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// No file yielded a single score.
    #[error("nothing could be evaluated: {0}")]
    NothingScored(String),
}

/// Runs the back-test and prints the report to stdout; progress goes to
/// stderr. Fails, after the report, when no file could be scored at any
/// horizon.
pub fn run(evaluator: &Evaluator, request: &Request) -> anyhow::Result<()> {
    let files = dataset::discover(&request.paths)?;
    let windows = request.labels.as_deref().map(Windows::read).transpose()?;
    let recordings = files
        .iter()
        .map(|(path, name)| dataset::read_csv(path, name.clone()))
        .collect::<Result<Vec<_>, _>>()?;

    let interactive = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>48} [{bar:24}] {msg}")
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?
        .progress_chars("=> ");
    let started = Instant::now();
    let order: Vec<usize> = (0..recordings.len()).collect();
    let work = |recording: &Recording| {
        let bar = multi.add(
            ProgressBar::new(1)
                .with_style(style.clone())
                .with_prefix(recording.name.clone()),
        );
        let progress = |phase: Phase| match phase {
            Phase::Training(e) => {
                bar.set_length(e.max_epochs as u64);
                bar.set_position(e.epoch as u64);
                bar.set_message(format!("training, epoch {}", e.epoch));
            }
            Phase::Refitting { done, total } => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(format!("ets and mstl at {done}/{total} origins"));
            }
        };
        let labelled = windows.as_ref().and_then(|w| w.of(&recording.path));
        let report = evaluator.file(recording, labelled, &progress);
        bar.finish_and_clear();
        multi.remove(&bar);
        report
    };
    let finished = |recording: &Recording, report: &FileReport, done: usize| {
        let line = format!(
            "[{done}/{}] {} {} ({:.0} s elapsed)",
            recordings.len(),
            recording.name,
            report.error.as_deref().unwrap_or("done"),
            started.elapsed().as_secs_f64()
        );
        if interactive {
            let _ = multi.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    let files = super::work_through(&recordings, &order, request.jobs, work, finished);
    let report = Report::new(evaluator.settings(), files);
    if request.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    match nothing_scored(&report) {
        Some(why) => Err(EvalError::NothingScored(why).into()),
        None => Ok(()),
    }
}

/// Why no file has a score at any horizon, or `None` where one has.
fn nothing_scored(report: &Report) -> Option<String> {
    let scored_nowhere = |f: &FileReport| {
        f.error.is_some() || report.horizons.iter().all(|h| unscored(f, h).is_some())
    };
    if !report.files.iter().all(scored_nowhere) {
        return None;
    }
    let first = report.files.first()?;
    let why = first.error.clone().unwrap_or_else(|| {
        report
            .horizons
            .iter()
            .filter_map(|h| unscored(first, h))
            .collect::<Vec<_>>()
            .join("; ")
    });
    Some(match report.files.len() {
        1 => format!("{}: {why}", first.file),
        n => format!(
            "{}: {why} (and {} more files; see the table above)",
            first.file,
            n - 1
        ),
    })
}

/// Why an evaluated file has no MASE at horizon `h`; `None` where it has
/// one, and for a file that failed as a whole (its row says why).
fn unscored(f: &FileReport, h: &str) -> Option<String> {
    if f.error.is_some() {
        return None;
    }
    match f.origins.get(h) {
        None => Some(format!(
            "{h} is not a whole number of the file's {} steps",
            PromDuration::from_secs(f.step_s.unsigned_abs())
        )),
        Some(0) => Some(format!(
            "no origin where every method forecast {h} ahead and the target was recorded (too short a forecast part, or too little history before it: mstl needs two days)"
        )),
        Some(_) if !f.mase_scale.is_some_and(|s| s > 0.0) => Some(
            "no MASE: the training part (first 70 %) has no day-on-day change to scale errors by"
                .to_owned(),
        ),
        Some(_) => None,
    }
}

/// Whether anomaly windows were asked for (`--labels`) and found for any
/// file.
fn labelled(report: &Report) -> bool {
    report.files.iter().any(|f| f.anomaly.is_some())
}

fn number(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.1} %", 100.0 * v))
}

/// The report as text tables.
pub fn render(report: &Report) -> String {
    let evaluated = report.files.iter().filter(|f| f.error.is_none()).count();
    let mut out = format!(
        "MASE per horizon: median across {evaluated} files (geometric mean); * marks the lowest median\n\n"
    );
    let mut header = vec!["method"];
    header.extend(report.horizons.iter().map(String::as_str));
    let best: Vec<Option<f64>> = report
        .horizons
        .iter()
        .map(|h| {
            report
                .methods
                .values()
                .filter_map(|m| m.mase.get(h).copied().flatten())
                .min_by(f64::total_cmp)
        })
        .collect();
    let rows: Vec<Vec<String>> = Method::ALL
        .iter()
        .filter_map(|m| {
            let summary = report.methods.get(m.name())?;
            let mut row = vec![m.name().to_owned()];
            for (h, best) in report.horizons.iter().zip(&best) {
                let median = summary.mase.get(h).copied().flatten();
                let mark = if median.is_some() && median == *best {
                    "*"
                } else {
                    ""
                };
                row.push(format!(
                    "{}{mark} ({})",
                    number(median, 3),
                    number(summary.mase_geomean.get(h).copied().flatten(), 3)
                ));
            }
            Some(row)
        })
        .collect();
    out += &table(&header, &rows);
    for h in &report.horizons {
        let mut reasons: Vec<String> = report.files.iter().filter_map(|f| unscored(f, h)).collect();
        reasons.sort();
        reasons.dedup();
        let scored = report
            .files
            .iter()
            .any(|f| f.error.is_none() && unscored(f, h).is_none());
        if !scored && !reasons.is_empty() {
            out += &format!("{h}: no file scored: {}\n", reasons.join("; "));
        }
    }

    out += &format!(
        "\nLSTM interval coverage (nominal {:.0} %), all origins pooled:",
        100.0 * report.interval
    );
    for h in &report.horizons {
        out += &format!(
            " {h} {}",
            percent(report.coverage.get(h).copied().flatten())
        );
    }
    out += "; median across files:";
    for h in &report.horizons {
        out += &format!(
            " {h} {}",
            percent(report.coverage_median.get(h).copied().flatten())
        );
    }
    let a = &report.anomaly;
    let labelled = labelled(report);
    out += &if labelled {
        format!(
            "\n\nAnomaly scoring (anomaly_score > 1): {} of {} labelled windows detected ({}); {} false alarms in {:.1} days ({} per day); NAB score {} (standard profile); {} of points alarming\n",
            a.totals.detected,
            a.totals.windows,
            percent(a.detected_share),
            a.totals.false_alarms,
            a.totals.days,
            number(a.false_alarms_per_day, 2),
            number(a.nab_score, 1),
            percent(a.alarm_share),
        )
    } else {
        format!(
            "\n\nAnomaly scoring (anomaly_score > 1): {} of points alarming (--labels scores alarms against labelled windows)\n",
            percent(a.alarm_share),
        )
    };

    out += "\nPer file\n\n";
    let mut header = vec!["file", "horizon", "origins"];
    header.extend(Method::ALL.iter().map(|m| m.name()));
    header.push("coverage");
    if labelled {
        header.extend(["windows", "detected", "false alarms"]);
    }
    let mut rows = Vec::new();
    for f in &report.files {
        if let Some(e) = &f.error {
            rows.push(vec![f.file.clone(), "-".into(), "-".into(), e.clone()]);
            continue;
        }
        // A file's anomaly tallies go on its first scored row.
        let mut anomaly = f.anomaly.as_ref().filter(|_| labelled);
        for (i, h) in report.horizons.iter().enumerate() {
            let mut row = vec![
                if i == 0 {
                    f.file.clone()
                } else {
                    String::new()
                },
                h.clone(),
                f.origins.get(h).map_or("-".into(), ToString::to_string),
            ];
            if let Some(why) = unscored(f, h) {
                row.push(why);
                rows.push(row);
                continue;
            }
            for m in Method::ALL {
                row.push(number(
                    f.mase
                        .get(m.name())
                        .and_then(|x| x.get(h))
                        .copied()
                        .flatten(),
                    3,
                ));
            }
            row.push(percent(f.coverage.get(h).and_then(|c| c.share())));
            if let Some(a) = anomaly.take() {
                row.extend([a.windows, a.detected, a.false_alarms].map(|n| n.to_string()));
            }
            rows.push(row);
        }
    }
    out += &table(&header, &rows);
    out += &format!(
        "\nHow these are computed (train share {:.0} %, origin stride {}):\n",
        100.0 * report.protocol.train_share,
        report.protocol.stride
    );
    for note in NOTES {
        out += &format!("- {note}\n");
    }
    out
}
