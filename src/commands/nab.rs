//! `promcast eval --nab-results DIR PATH...`: promcast's anomaly score on
//! the Numenta Anomaly Benchmark's protocol. Scores every row of every
//! file as the server would have (see [`crate::eval::detect`]), writes
//! them in NAB's results layout under `DIR/promcast/`, then scores every
//! detector found in `DIR` — promcast's, and any published results copied
//! beside it — on NAB's three profiles.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;

use crate::eval::dataset::{self, Recording, Windows};
use crate::eval::detect::{self, Detection, Settings};
use crate::eval::nab::{self, CorpusScore, PROFILES};
use crate::forecast::anomaly;

/// What `promcast eval --nab-results` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// NAB-style data folders (`<category>/<file>.csv`) or files; none
    /// with `score_only`.
    pub paths: Vec<PathBuf>,
    /// Where results are written and read (`DIR/<detector>/...`).
    pub results: PathBuf,
    /// NAB `combined_windows.json`; without it nothing is scored.
    pub labels: Option<PathBuf>,
    /// Score the results already in `results` without running promcast.
    pub score_only: bool,
    /// Files run at once.
    pub jobs: usize,
}

/// Runs promcast on every file (unless `score_only`), then prints the
/// scores of every detector in the results folder.
pub fn run(settings: &Settings, device: &Device, request: &Request) -> anyhow::Result<()> {
    let windows = request.labels.as_deref().map(Windows::read).transpose()?;
    if !request.score_only {
        let files = dataset::discover(&request.paths)?;
        let recordings = files
            .iter()
            .map(|(path, name)| dataset::read_csv(path, name.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let detections = detect_all(settings, device, &recordings, request.jobs);
        for (recording, detection) in recordings.iter().zip(&detections) {
            let labelled = windows
                .as_ref()
                .and_then(|w| w.of(&recording.path))
                .unwrap_or_default();
            detection.write(&request.results, labelled)?;
        }
        let trainings: usize = detections.iter().map(|d| d.trainings).sum();
        let warm: usize = detections.iter().map(|d| d.warm_trainings).sum();
        let training_s: f64 = detections.iter().map(|d| d.training_seconds).sum();
        println!(
            "promcast: {} files, {} rows, {trainings} models trained ({warm} from the previous weights, {training_s:.0} s of training), {:.0} s wall time; results in {}\n",
            detections.len(),
            detections.iter().map(|d| d.samples.len()).sum::<usize>(),
            started.elapsed().as_secs_f64(),
            request.results.join("promcast").display()
        );
        for d in detections.iter().filter(|d| d.last_failure.is_some()) {
            println!(
                "{}: {} training runs failed, the last: {}",
                d.name,
                d.failed_trainings,
                d.last_failure.as_deref().unwrap_or_default()
            );
        }
    }
    match &windows {
        Some(windows) => print!("{}", scores(&request.results, windows)?),
        None => println!("no --labels: results written, not scored"),
    }
    Ok(())
}

/// Every recording detected, `jobs` at a time, longest first so that the
/// longest file does not start last; in the recordings' order.
fn detect_all(
    settings: &Settings,
    device: &Device,
    recordings: &[Recording],
    jobs: usize,
) -> Vec<Detection> {
    let mut order: Vec<usize> = (0..recordings.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(recordings[i].samples.len()));
    let started = Instant::now();
    super::work_through(
        recordings,
        &order,
        jobs,
        |recording| {
            let probation = detect::probation_rows(recording.samples.len());
            detect::detect(settings, recording, probation, device)
        },
        |recording, detection, done| {
            eprintln!(
                "[{done}/{}] {}: {} models ({} warm), {:.0} s ({:.0} s elapsed)",
                recordings.len(),
                recording.name,
                detection.trainings,
                detection.warm_trainings,
                detection.seconds,
                started.elapsed().as_secs_f64()
            );
        },
    )
}

/// Every detector in `dir` on NAB's three profiles, then promcast's
/// alarms at the production threshold.
fn scores(dir: &Path, windows: &Windows) -> anyhow::Result<String> {
    let mut table = Vec::new();
    let mut production = None;
    for detector in nab::detectors(dir)? {
        let files = nab::read_detector(dir, &detector, windows)?;
        let profiles: [CorpusScore; 3] = PROFILES.map(|p| nab::score_corpus(&files, &p));
        if detector == "promcast" {
            // `anomaly_score > 1` served is above a half in the file.
            let threshold = anomaly::unit_interval(1.0).next_up();
            production = Some(nab::at_threshold(&files, threshold));
        }
        table.push((detector, profiles));
    }
    let mut out = format!(
        "NAB scores (normalised: 0 = the better of never and always alarming, 100 = perfect; one threshold per profile swept over all files):\n\n{}",
        nab::table(&table)
    );
    if let Some(a) = production {
        out += &format!(
            "\npromcast at the production threshold (anomaly_score > 1): {} of {} windows detected, {} false-positive rows, {} false alarms in {:.1} series-days ({} per series-day)\n",
            a.detected,
            a.windows,
            a.false_positive_rows,
            a.false_alarms,
            a.days,
            a.false_alarms_per_day
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
        );
    }
    Ok(out)
}
