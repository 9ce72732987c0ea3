//! Recorded series to back-test on: CSV files of `timestamp,value` (the
//! Numenta Anomaly Benchmark's format) and NAB's labelled anomaly windows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::calendar::parse_timestamp;

/// One recorded series.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The file it came from.
    pub path: PathBuf,
    /// Its name in reports: the path below the folder it was found in.
    pub name: String,
    /// `(unix ms, value)`, strictly ascending.
    pub samples: Vec<(i64, f64)>,
    /// Rows dropped because their timestamp was not after the previous
    /// row's (NAB's files repeat an hour where clocks went forward).
    pub dropped: usize,
}

/// Why a dataset, its labels or a detector's results could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Csv {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Labels { path: PathBuf, reason: String },
    /// A NAB results file names a data file without labelled windows.
    #[error("{path}: no labelled windows for {key}")]
    Unlabelled { path: PathBuf, key: String },
    #[error("{0}: no .csv files found")]
    NoFiles(PathBuf),
}

/// Turns an I/O error on `path` into a [`DatasetError`].
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |error| DatasetError::Io {
        path: path.to_owned(),
        error,
    }
}

/// A [`DatasetError::Csv`] at a line of the CSV file `path`.
pub(super) fn csv_error(path: &Path) -> impl Fn(usize, String) -> DatasetError + '_ {
    move |line, reason| DatasetError::Csv {
        path: path.to_owned(),
        line,
        reason,
    }
}

/// The CSV files named by `paths`, each with its name in reports: files
/// as given (named by their file name), folders searched recursively, in
/// path order (named by their path below the folder).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, DatasetError> {
    let mut found = Vec::new();
    for path in paths {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        if files.is_empty() {
            return Err(DatasetError::NoFiles(path.clone()));
        }
        let root = if path.is_dir() {
            path.as_path()
        } else {
            path.parent().unwrap_or(Path::new(""))
        };
        found.extend(files.into_iter().map(|f| {
            let name = f.strip_prefix(root).unwrap_or(&f).display().to_string();
            (f, name)
        }));
    }
    Ok(found)
}

fn walk(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), DatasetError> {
    if !path.is_dir() {
        std::fs::metadata(path).map_err(io(path))?;
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(path))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, files)?;
        } else if entry.extension().is_some_and(|e| e == "csv") {
            files.push(entry);
        }
    }
    Ok(())
}

/// Reads a `timestamp,value` CSV with a header row. Timestamps are
/// `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339 or Unix seconds. A row not later
/// than the one before is dropped, as Prometheus drops an out-of-order or
/// duplicate sample, and counted.
pub fn read_csv(path: &Path, name: String) -> Result<Recording, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = csv_error(path);
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim().eq_ignore_ascii_case("timestamp,value") => {}
        Some((_, header)) => {
            return Err(bad(
                1,
                format!("expected the header `timestamp,value`, found {header:?}"),
            ));
        }
        None => return Err(bad(1, "empty file".into())),
    }
    let mut samples: Vec<(i64, f64)> = Vec::new();
    let mut dropped = 0;
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (ts, value) = line.split_once(',').ok_or_else(|| {
            bad(
                line_no,
                format!("expected `timestamp,value`, found {line:?}"),
            )
        })?;
        let t =
            parse_timestamp(ts).ok_or_else(|| bad(line_no, format!("invalid timestamp {ts:?}")))?;
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| bad(line_no, format!("invalid value {value:?}")))?;
        if samples.last().is_some_and(|(prev, _)| *prev >= t) {
            dropped += 1;
        } else {
            samples.push((t, v));
        }
    }
    if samples.len() < 2 {
        return Err(bad(1, "fewer than two rows".into()));
    }
    Ok(Recording {
        path: path.to_owned(),
        name,
        samples,
        dropped,
    })
}

/// Labelled anomaly windows per file, as in NAB's `combined_windows.json`:
/// keys are paths relative to the data folder.
#[derive(Debug, Clone, Default)]
pub struct Windows(BTreeMap<String, Vec<(i64, i64)>>);

impl Windows {
    /// Reads a `combined_windows.json`.
    pub fn read(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bad = |reason: String| DatasetError::Labels {
            path: path.to_owned(),
            reason,
        };
        let raw: BTreeMap<String, Vec<[String; 2]>> =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut windows = BTreeMap::new();
        for (key, list) in raw {
            let parsed = list
                .iter()
                .map(|[a, b]| match (parse_timestamp(a), parse_timestamp(b)) {
                    (Some(a), Some(b)) if a <= b => Ok((a, b)),
                    _ => Err(bad(format!("{key}: invalid window [{a:?}, {b:?}]"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            windows.insert(key, parsed);
        }
        Ok(Self(windows))
    }

    /// The windows of the file at `path`: the entry whose key the path
    /// ends with, component by component (`realKnownCause/nyc_taxi.csv`
    /// matches `/data/nab/data/realKnownCause/nyc_taxi.csv`). `None` when
    /// the file is not labelled.
    pub fn of(&self, path: &Path) -> Option<&[(i64, i64)]> {
        self.0
            .iter()
            .find(|(key, _)| path.ends_with(Path::new(key.as_str())))
            .map(|(_, w)| w.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nab_csv_and_refuses_bad_rows_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.csv");
        std::fs::write(
            &good,
            "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,2\n2014-04-01 00:05:00,3\n",
        )
        .unwrap();
        let r = read_csv(&good, "a.csv".into()).unwrap();
        assert_eq!(
            r.samples,
            [(1_396_310_400_000, 1.5), (1_396_310_700_000, 2.0)]
        );
        assert_eq!(r.dropped, 1);

        let bad = dir.path().join("sub").join("b.csv");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            &bad,
            "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,x\n",
        )
        .unwrap();
        let err = read_csv(&bad, String::new()).unwrap_err().to_string();
        assert!(err.ends_with("b.csv:3: invalid value \"x\""), "{err}");

        std::fs::write(&bad, "time,v\n").unwrap();
        assert!(
            read_csv(&bad, String::new())
                .unwrap_err()
                .to_string()
                .contains(":1: expected the header")
        );

        assert_eq!(
            discover(&[dir.path().to_owned()]).unwrap(),
            [(good.clone(), "a.csv".into()), (bad, "sub/b.csv".into())]
        );
        assert_eq!(
            discover(std::slice::from_ref(&good)).unwrap(),
            [(good, "a.csv".into())]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(discover(&[empty.path().to_owned()]).is_err());
    }

    #[test]
    fn windows_match_by_path_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("w.json");
        std::fs::write(
            &labels,
            r#"{"realKnownCause/nyc_taxi.csv": [["2014-11-01 19:00:00.000000", "2014-11-02 12:00:00.000000"]]}"#,
        )
        .unwrap();
        let w = Windows::read(&labels).unwrap();
        let found = w
            .of(Path::new("/x/data/realKnownCause/nyc_taxi.csv"))
            .unwrap();
        assert_eq!(found, [(1_414_868_400_000, 1_414_929_600_000)]);
        assert!(w.of(Path::new("/x/data/other/nyc_taxi.csv")).is_none());
        std::fs::write(&labels, r#"{"a.csv": [["soon", "later"]]}"#).unwrap();
        assert!(
            Windows::read(&labels)
                .unwrap_err()
                .to_string()
                .contains("invalid window")
        );
    }
}
