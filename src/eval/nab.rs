//! The Numenta Anomaly Benchmark's scorer (NAB v1.1): per-row anomaly
//! scores against labelled windows, one threshold per profile swept over
//! the whole corpus, normalised against NAB's null detector.
//!
//! The protocol, as NAB's `sweeper.py`, `optimizer.py` and `runner.py`
//! compute it:
//!
//! - The first `min(⌊0.15·n⌋, 750)` rows of a file of `n` rows are its
//!   probationary period and are not scored. Windows still open and close
//!   during it, so a window that straddles its end is scored on its later
//!   rows, weighted by their position in the whole window, and costs A_FN
//!   when missed; a window wholly inside it is not scored at all.
//! - A row is a detection when its score is at or above the threshold.
//!   σ below is NAB's scaled sigmoid, `σ(y) = 2/(1 + e^{5y}) − 1`.
//! - Inside a window of `w` rows ending at row `e`, the earliest detection
//!   earns `A_TP·σ(−(e − i + 1)/w)/σ(−1)`, so A_TP at the left edge; later
//!   ones earn nothing. A window without detection costs A_FN.
//! - Outside windows every detected row costs A_FP, or
//!   `−A_FP·σ((i − e)/(w − 1))` after a window of `w` rows ending at `e`.
//! - The threshold is the one of the distinct scores (or none: nothing
//!   detected) that maximises the corpus's raw score; ties go to the
//!   highest threshold.
//! - Normalised score `100·(raw − null)/(perfect − null)`: null is NAB's
//!   null detector, the better of never and always detecting over the
//!   corpus (never on a tie); perfect is A_TP per scored window.
//!
//! NAB finds a window's rows by exact timestamp match; here a window runs
//! from the first row at or after its start to the first row at its end
//! (or the last row before the end), which is the same rows wherever the
//! labels name recorded timestamps, as NAB's validation demands. Rows are
//! taken in file order: NAB's files repeat an hour where clocks went back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dataset::{DatasetError, Windows, csv_error, io};
use crate::calendar::{DAY_MS, parse_timestamp};

#[cfg(test)]
mod tests;

/// NAB's probationary period: this share of a file's rows...
const PROBATION_SHARE: f64 = 0.15;
/// ...but no more than 15 % of 5000 rows.
const PROBATION_CAP: usize = 750;

/// A NAB application profile: what a detection, a false positive and a
/// miss are worth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    /// NAB's name for it.
    pub name: &'static str,
    /// A_TP: reward of a detection at a window's left edge.
    pub tp: f64,
    /// A_FP: cost of a detected row far from any window.
    pub fp: f64,
    /// A_FN: cost of a window without detection.
    #[serde(rename = "fn")]
    pub fn_: f64,
}

/// NAB's three profiles (`config/profiles.json`).
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// One file's anomaly scores, as a detector gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// `<category>/<file>.csv`, as in NAB's labels.
    pub key: String,
    /// Each row's time (Unix ms), in file order.
    pub times: Vec<i64>,
    /// Each row's anomaly score, one per time; a row whose score is not
    /// finite (none recorded) is never a detection.
    pub scores: Vec<f64>,
    /// Labelled windows, inclusive `[start, end]` in Unix ms.
    pub windows: Vec<(i64, i64)>,
}

impl Scored {
    /// The part of the key before its first `/` (the whole key without
    /// one).
    pub fn category(&self) -> &str {
        self.key.split_once('/').map_or(&self.key, |(c, _)| c)
    }
}

/// Raw, baseline and normalised scores of a set of files.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Sum of the rows' and windows' scores at the threshold.
    pub raw: f64,
    /// The null detector's raw score.
    pub null: f64,
    /// A perfect detector's raw score: A_TP per scored window.
    pub perfect: f64,
    /// `100·(raw − null)/(perfect − null)`; `None` when perfect does not
    /// beat null (no scored window).
    pub normalised: Option<f64>,
}

impl Score {
    fn new(raw: f64, null: f64, perfect: f64) -> Self {
        let span = perfect - null;
        Self {
            raw,
            null,
            perfect,
            normalised: (span > 0.0).then(|| 100.0 * (raw - null) / span),
        }
    }
}

/// One detector's NAB score on a corpus under one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusScore {
    /// The profile scored.
    pub profile: Profile,
    /// The threshold maximising the corpus's raw score; infinite when
    /// detecting nothing is best.
    pub threshold: f64,
    /// Over every file.
    pub total: Score,
    /// Per category (see [`Scored::category`]), at the same threshold
    /// and against the null detector's corpus-wide choice.
    pub categories: BTreeMap<String, Score>,
}

/// Production-style tallies of detections at one threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Alarms {
    /// Windows with rows after probation.
    pub windows: usize,
    /// Of those, windows with a detection after probation.
    pub detected: usize,
    /// Detected rows outside windows after probation.
    pub false_positive_rows: usize,
    /// Runs of consecutive detected rows outside windows after probation,
    /// each counted once.
    pub false_alarms: usize,
    /// Time spanned by the scored rows, in days, summed over files.
    pub days: f64,
    /// `false_alarms / days`; `None` without scored time.
    pub false_alarms_per_day: Option<f64>,
}

/// NAB's scaled sigmoid of a relative position: near 1 well before 0, 0 at
/// 0, −1 from 3 on.
pub(crate) fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// The detector folders under a NAB results folder, in name order.
pub fn detectors(results_dir: &Path) -> Result<Vec<String>, DatasetError> {
    Ok(entries(results_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect())
}

/// Reads a detector's results, `results_dir/<detector>/<category>/<detector>_<file>.csv`,
/// in path order, each with the windows `windows` labels
/// `<category>/<file>.csv` with. Columns are found by header name
/// (`timestamp`, `anomaly_score`); an empty score is a row without one.
/// Files not named after the detector are skipped, as NAB's
/// `<detector>_<profile>_scores.csv` beside the category folders are.
pub fn read_detector(
    results_dir: &Path,
    detector: &str,
    windows: &Windows,
) -> Result<Vec<Scored>, DatasetError> {
    let root = results_dir.join(detector);
    let prefix = format!("{detector}_");
    let mut files = Vec::new();
    for folder in entries(&root)?.into_iter().filter(|p| p.is_dir()) {
        let Some(category) = folder.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        for path in entries(&folder)? {
            let name = path.file_name().and_then(|n| n.to_str());
            let Some(file) = name.and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if !file.ends_with(".csv") || !path.is_file() {
                continue;
            }
            let key = format!("{category}/{file}");
            let Some(labelled) = windows.of(Path::new(&key)) else {
                return Err(DatasetError::Unlabelled { path, key });
            };
            let (times, scores) = read_results(&path)?;
            files.push(Scored {
                key,
                times,
                scores,
                windows: labelled.to_vec(),
            });
        }
    }
    if files.is_empty() {
        return Err(DatasetError::NoFiles(root));
    }
    Ok(files)
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut paths = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    paths.sort();
    Ok(paths)
}

/// Times and scores of one results file.
fn read_results(path: &Path) -> Result<(Vec<i64>, Vec<f64>), DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = csv_error(path);
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(1, format!("no `{name}` column in the header")))
    };
    let (time_at, score_at) = (column("timestamp")?, column("anomaly_score")?);
    let (mut times, mut scores) = (Vec::new(), Vec::new());
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(ts), Some(score)) = (fields.get(time_at), fields.get(score_at)) else {
            return Err(bad(
                i + 1,
                format!("expected {} columns, found {}", header.len(), fields.len()),
            ));
        };
        times.push(
            parse_timestamp(ts).ok_or_else(|| bad(i + 1, format!("invalid timestamp {ts:?}")))?,
        );
        scores.push(if score.is_empty() {
            f64::NAN
        } else {
            score
                .parse()
                .map_err(|_| bad(i + 1, format!("invalid anomaly_score {score:?}")))?
        });
    }
    Ok((times, scores))
}

/// Where a row stands for scoring.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In the probationary period.
    Probation,
    /// In the file's `window`-th window (in start order); as the window's
    /// earliest detection it earns `weight`·A_TP.
    Window { window: usize, weight: f64 },
    /// Outside windows; detected, it adds `weight`·A_FP (`weight` < 0).
    Outside { weight: f64 },
}

/// Rows of NAB's probationary period in a file of `rows` rows.
fn probation(rows: usize) -> usize {
    ((rows as f64 * PROBATION_SHARE).floor() as usize).min(PROBATION_CAP)
}

/// Each window's first and last row, in start order; windows without rows
/// are left out.
fn window_rows(times: &[i64], windows: &[(i64, i64)]) -> Vec<(usize, usize)> {
    let mut sorted = windows.to_vec();
    sorted.sort_unstable();
    let n = times.len();
    let mut ranges = Vec::new();
    // Each search starts at the previous window's start, so rows repeated
    // after a clock change are found in file order, as NAB walks them.
    let mut from = 0;
    for (start, end) in sorted {
        let Some(first) = (from..n).find(|&i| times[i] >= start) else {
            break;
        };
        from = first;
        let reached = (first..n).find(|&i| times[i] >= end).unwrap_or(n);
        let last = if reached < n && times[reached] == end {
            Some(reached)
        } else {
            reached.checked_sub(1)
        };
        if let Some(last) = last.filter(|&l| l >= first) {
            ranges.push((first, last));
        }
    }
    ranges
}

/// Every row's place, and the number of windows found in the file.
fn places(file: &Scored) -> (Vec<Place>, usize) {
    let ranges = window_rows(&file.times, &file.windows);
    let probation = probation(file.times.len());
    let left_edge = scaled_sigmoid(-1.0);
    let mut places = Vec::with_capacity(file.times.len());
    let (mut next, mut current) = (0, None);
    let mut previous: Option<(usize, usize)> = None;
    for i in 0..file.times.len() {
        // A window starting inside another takes over from its start, as
        // NAB's sweep switches to it.
        while ranges.get(next).is_some_and(|r| r.0 == i) {
            current = Some(next);
            next += 1;
        }
        let place = match current {
            Some(window) => {
                let (first, last) = ranges[window];
                let width = (last - first + 1) as f64;
                let position = -((last - i + 1) as f64) / width;
                Place::Window {
                    window,
                    weight: scaled_sigmoid(position) / left_edge,
                }
            }
            // Past a one-row window the division gives +∞: the full cost.
            None => Place::Outside {
                weight: previous.map_or(-1.0, |(first, last)| {
                    scaled_sigmoid((i - last) as f64 / (last - first) as f64)
                }),
            },
        };
        places.push(if i < probation {
            Place::Probation
        } else {
            place
        });
        if let Some(window) = current.filter(|&w| ranges[w].1 == i) {
            previous = Some(ranges[window]);
            current = None;
        }
    }
    (places, ranges.len())
}

/// Whether a row's score is a detection at `threshold`.
fn detects(score: f64, threshold: f64) -> bool {
    score.is_finite() && score >= threshold
}

/// A scored row with a score, as the sweep sees it.
struct Row {
    score: f64,
    category: usize,
    /// The corpus-wide index of its window, if in one.
    window: Option<usize>,
    weight: f64,
}

/// A corpus laid out for sweeping thresholds.
struct Corpus {
    categories: Vec<String>,
    /// Rows after probation with a finite score, highest score first.
    rows: Vec<Row>,
    /// Per scored window: its category and the best weight a detection
    /// in it can earn (its first scored row's).
    windows: Vec<(usize, f64)>,
    /// Per category: the sum of its outside rows' weights, what a
    /// detector that always detects pays in A_FP.
    outside: Vec<f64>,
}

impl Corpus {
    fn new(files: &[Scored]) -> Self {
        let names: BTreeSet<&str> = files.iter().map(Scored::category).collect();
        let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut corpus = Self {
            categories: names.iter().map(|n| (*n).to_owned()).collect(),
            outside: vec![0.0; names.len()],
            rows: Vec::new(),
            windows: Vec::new(),
        };
        for file in files {
            let category = index[file.category()];
            let (places, count) = places(file);
            let mut ids: Vec<Option<usize>> = vec![None; count];
            for (place, &score) in places.iter().zip(&file.scores) {
                let (window, weight) = match *place {
                    Place::Probation => continue,
                    Place::Window { window, weight } => {
                        let id = *ids[window].get_or_insert(corpus.windows.len());
                        match corpus.windows.get_mut(id) {
                            Some(w) => w.1 = w.1.max(weight),
                            None => corpus.windows.push((category, weight)),
                        }
                        (Some(id), weight)
                    }
                    Place::Outside { weight } => {
                        corpus.outside[category] += weight;
                        (None, weight)
                    }
                };
                if score.is_finite() {
                    corpus.rows.push(Row {
                        score,
                        category,
                        window,
                        weight,
                    });
                }
            }
        }
        corpus.rows.sort_by(|a, b| b.score.total_cmp(&a.score));
        corpus
    }

    /// The threshold with the best raw score: lowering it one distinct
    /// score at a time, each row newly detected changes the total by its
    /// own cost or by how much it improves its window's best.
    fn best_threshold(&self, profile: &Profile) -> f64 {
        let mut window_score = vec![-profile.fn_; self.windows.len()];
        let mut total = -profile.fn_ * self.windows.len() as f64;
        let (mut best, mut best_total) = (f64::INFINITY, total);
        for group in self.rows.chunk_by(|a, b| a.score == b.score) {
            for row in group {
                match row.window {
                    Some(w) => {
                        let earned = profile.tp * row.weight;
                        if earned > window_score[w] {
                            total += earned - window_score[w];
                            window_score[w] = earned;
                        }
                    }
                    None => total += profile.fp * row.weight,
                }
            }
            if total > best_total {
                (best, best_total) = (group[0].score, total);
            }
        }
        best
    }

    /// Raw score per category at `threshold`, summed afresh so that the
    /// figures do not carry the sweep's rounding.
    fn raw(&self, profile: &Profile, threshold: f64) -> Vec<f64> {
        let mut raw = vec![0.0; self.categories.len()];
        let mut best: Vec<Option<f64>> = vec![None; self.windows.len()];
        for row in self.rows.iter().take_while(|r| r.score >= threshold) {
            match row.window {
                Some(w) => best[w] = Some(best[w].map_or(row.weight, |b| b.max(row.weight))),
                None => raw[row.category] += profile.fp * row.weight,
            }
        }
        for (&(category, _), best) in self.windows.iter().zip(best) {
            raw[category] += best.map_or(-profile.fn_, |b| profile.tp * b);
        }
        raw
    }

    /// The null detector's raw score per category: NAB's scores every row
    /// 0.5, so its own sweep chooses between never and always detecting.
    fn null(&self, profile: &Profile) -> Vec<f64> {
        let mut never = vec![0.0; self.categories.len()];
        let mut always: Vec<f64> = self.outside.iter().map(|o| profile.fp * o).collect();
        for &(category, weight) in &self.windows {
            never[category] -= profile.fn_;
            always[category] += profile.tp * weight;
        }
        if always.iter().sum::<f64>() > never.iter().sum::<f64>() {
            always
        } else {
            never
        }
    }
}

/// Scores a detector's files under `profile` as NAB does: one threshold
/// for the whole corpus, chosen to maximise the raw score.
pub fn score_corpus(files: &[Scored], profile: &Profile) -> CorpusScore {
    let corpus = Corpus::new(files);
    let threshold = corpus.best_threshold(profile);
    let raw = corpus.raw(profile, threshold);
    let null = corpus.null(profile);
    let mut perfect = vec![0.0; corpus.categories.len()];
    for &(category, _) in &corpus.windows {
        perfect[category] += profile.tp;
    }
    let categories: BTreeMap<String, Score> = corpus
        .categories
        .iter()
        .enumerate()
        .map(|(c, name)| (name.clone(), Score::new(raw[c], null[c], perfect[c])))
        .collect();
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    CorpusScore {
        profile: *profile,
        threshold,
        total: Score::new(sum(&raw), sum(&null), sum(&perfect)),
        categories,
    }
}

/// Tallies the detections at `threshold` as an operator would count
/// alarms: rows in probation count neither way, and a run of consecutive
/// detected rows outside windows is one false alarm (a run that began
/// during probation counts from its first scored row).
pub fn at_threshold(files: &[Scored], threshold: f64) -> Alarms {
    let mut alarms = Alarms::default();
    for file in files {
        let (places, count) = places(file);
        let (mut scored, mut hit) = (vec![false; count], vec![false; count]);
        let mut in_run = false;
        let (mut earliest, mut latest) = (i64::MAX, i64::MIN);
        let rows = places.iter().zip(&file.scores).zip(&file.times);
        for ((place, &score), &time) in rows {
            let detected = detects(score, threshold);
            match *place {
                Place::Probation => continue,
                Place::Window { window, .. } => {
                    scored[window] = true;
                    hit[window] |= detected;
                    in_run = false;
                }
                Place::Outside { .. } => {
                    if detected {
                        alarms.false_positive_rows += 1;
                        alarms.false_alarms += usize::from(!in_run);
                    }
                    in_run = detected;
                }
            }
            (earliest, latest) = (earliest.min(time), latest.max(time));
        }
        alarms.windows += scored.iter().filter(|s| **s).count();
        alarms.detected += hit.iter().filter(|h| **h).count();
        if earliest <= latest {
            alarms.days += (latest - earliest) as f64 / DAY_MS as f64;
        }
    }
    alarms.false_alarms_per_day =
        (alarms.days > 0.0).then(|| alarms.false_alarms as f64 / alarms.days);
    alarms
}

/// A plain-text table of detectors' normalised scores: one line per
/// detector and profile, with the threshold, the whole corpus and each
/// category.
pub fn table(scores: &[(String, [CorpusScore; 3])]) -> String {
    let categories: BTreeSet<&str> = scores
        .iter()
        .flat_map(|(_, profiles)| profiles)
        .flat_map(|s| s.categories.keys().map(String::as_str))
        .collect();
    let figure = |s: Option<&Score>| {
        s.and_then(|s| s.normalised)
            .map_or_else(|| "-".to_owned(), |n| format!("{n:.3}"))
    };
    let mut cells: Vec<Vec<String>> = vec![
        ["detector", "profile", "threshold", "all"]
            .into_iter()
            .chain(categories.iter().copied())
            .map(str::to_owned)
            .collect(),
    ];
    for (detector, profiles) in scores {
        for (i, s) in profiles.iter().enumerate() {
            let name = if i == 0 { detector.as_str() } else { "" };
            let threshold = if s.threshold.is_finite() {
                format!("{:.6}", s.threshold)
            } else {
                "never".to_owned()
            };
            let mut row = vec![
                name.to_owned(),
                s.profile.name.to_owned(),
                threshold,
                figure(Some(&s.total)),
            ];
            row.extend(categories.iter().map(|c| figure(s.categories.get(*c))));
            cells.push(row);
        }
    }
    let mut widths = vec![0; cells[0].len()];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                // Names read from the left, figures line up on the right.
                if i < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
