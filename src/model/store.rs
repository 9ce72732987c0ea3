//! Model persistence: one burnpack file and one JSON metadata file per
//! family under the model directory. The metadata names the versioned
//! weights file and its SHA-256, and is renamed into place last, so a crash
//! mid-save leaves the previous model intact and a corrupt weights file is
//! detected at load instead of served.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::network::{LstmNet, NetSpec};
use super::train::Report;
use super::window::{FEATURES, MAX_HORIZON_STEPS, Shape};

/// Bumped when the saved layout changes incompatibly. 3: windows cut into
/// shared passes (`Shape::segment`); a model trained on fixed windows must
/// retrain.
const FORMAT: u32 = 3;

/// Everything about a saved model except its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Saved-layout version.
    pub format: u32,
    /// The family the model serves.
    pub family: String,
    /// Increases by one with every training of the family.
    pub version: u64,
    /// When training finished (Unix ms).
    pub trained_at_ms: i64,
    /// Model time step (ms).
    pub step_ms: i64,
    /// Window layout.
    pub shape: Shape,
    /// Network layout.
    pub spec: NetSpec,
    /// First and last timestamp of the training history (Unix ms).
    pub history_ms: (i64, i64),
    /// Source series trained on.
    pub series: usize,
    /// Source series the family had when it was trained: more than
    /// `series` when `limits.max_training_series` or
    /// `limits.max_training_samples` left some out (0: not recorded).
    #[serde(default)]
    pub series_available: usize,
    /// Training measurements, including the interval calibration.
    pub report: Report,
    /// Weights file name, relative to the model directory.
    pub weights: String,
    /// SHA-256 of the weights file, hex.
    pub sha256: String,
}

/// A model loaded or trained, ready to serve.
pub struct StoredModel {
    /// Metadata.
    pub meta: ModelMeta,
    /// The network, on the serving device.
    pub net: LstmNet,
}

/// Why a model could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: invalid metadata: {error}")]
    Meta {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{path}: unsupported model format {found} (this promcast reads {FORMAT})")]
    Format { path: PathBuf, found: u32 },
    #[error("{path}: checksum mismatch (file is corrupt or truncated)")]
    Checksum { path: PathBuf },
    #[error("{path}: weights do not fit the recorded network: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("{path}: inconsistent metadata: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Path of a family's metadata file.
pub fn meta_path(dir: &Path, family: &str) -> PathBuf {
    dir.join(format!("{family}.json"))
}

/// Writes `bytes` to `path` atomically: a temporary file of a name no
/// other writer uses, fsync, rename, and an fsync of the directory, so
/// that the rename itself survives a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let unique = format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let tmp = path.with_file_name(unique);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io {
            path: path.to_owned(),
            error,
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Holds a family's lock file (`<family>.lock`), exclusively to change its
/// model, shared to read it: a server and `promcast train` on one
/// directory take turns, and a reader never sees weights a writer is
/// about to delete. The lock goes with the file, when it is dropped.
struct FamilyLock {
    _file: Option<fs::File>,
}

impl FamilyLock {
    fn take(dir: &Path, family: &str, exclusive: bool) -> Result<Self, StoreError> {
        let path = dir.join(format!("{family}.lock"));
        let open = |create: bool| {
            fs::OpenOptions::new()
                .read(true)
                .write(create)
                .create(create)
                .truncate(false)
                .open(&path)
        };
        let file = match open(exclusive) {
            Err(e) if !exclusive && e.kind() == std::io::ErrorKind::NotFound => open(true),
            opened => opened,
        };
        let file = match file {
            Ok(file) => file,
            // A reader of a directory it may not write (a read-only
            // volume): nobody can be saving there, nothing to lock.
            Err(e) if !exclusive && is_read_only(&e) => return Ok(Self { _file: None }),
            Err(e) => return Err(io(&path)(e)),
        };
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(io(&path))?;
        Ok(Self { _file: Some(file) })
    }
}

fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Saves `net` with `meta` (whose `weights` and `sha256` are filled in
/// here), replacing the family's previous model only once both files are
/// complete. The version saved is above every version saved before, even
/// when another process saved one since `meta` was made.
pub fn save(dir: &Path, net: &LstmNet, mut meta: ModelMeta) -> Result<ModelMeta, StoreError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let _lock = FamilyLock::take(dir, &meta.family, true)?;
    let previous = load_meta(dir, &meta.family).ok();
    if let Some(previous) = &previous {
        meta.version = meta.version.max(previous.version + 1);
    }
    let weights_file = weights_name(&meta.family, meta.version);
    let weights_path = dir.join(&weights_file);
    let bytes = net.to_bytes().map_err(|reason| StoreError::Weights {
        path: weights_path.clone(),
        reason,
    })?;
    write_atomic(&weights_path, &bytes)?;
    meta.format = FORMAT;
    meta.weights = weights_file;
    meta.sha256 = sha256_hex(&bytes);
    let meta_file = meta_path(dir, &meta.family);
    let json = serde_json::to_vec_pretty(&meta).map_err(|error| StoreError::Meta {
        path: meta_file.clone(),
        error,
    })?;
    write_atomic(&meta_file, &json)?;
    if let Some(old) = previous.filter(|old| old.weights != meta.weights) {
        // Best effort: a leftover old weights file wastes space, nothing more.
        let _ = fs::remove_file(dir.join(old.weights));
    }
    Ok(meta)
}

/// Reads a family's metadata.
pub fn load_meta(dir: &Path, family: &str) -> Result<ModelMeta, StoreError> {
    let path = meta_path(dir, family);
    let text = fs::read(&path).map_err(io(&path))?;
    parse_meta(&text, family, path)
}

/// Parses and checks the metadata of `family`'s model, read from `path`
/// (named in errors).
pub fn parse_meta(text: &[u8], family: &str, path: PathBuf) -> Result<ModelMeta, StoreError> {
    let meta_error = |error| StoreError::Meta {
        path: path.clone(),
        error,
    };
    // The format first: an older layout may lack fields this one needs,
    // and "unsupported format" is the error that says what happened.
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let Format { format } = serde_json::from_slice(text).map_err(meta_error)?;
    if format != FORMAT {
        return Err(StoreError::Format {
            path,
            found: format,
        });
    }
    let meta: ModelMeta = serde_json::from_slice(text).map_err(meta_error)?;
    meta.check(family)
        .map_err(|reason| StoreError::Inconsistent { path, reason })?;
    Ok(meta)
}

/// Largest network a saved model may describe: far beyond what training
/// builds, small enough that a hostile file cannot make a load allocate
/// without bound.
const MAX_HIDDEN: usize = 4096;
const MAX_LAYERS: usize = 16;
/// Most normalisation points: a day at one-second steps, with room.
const MAX_NORM_POINTS: usize = 1 << 20;

impl ModelMeta {
    /// Checks what serving relies on, so that a file edited by hand or
    /// written by another build is refused at load instead of failing
    /// (or panicking) on every query: a positive step, a window layout and
    /// network that agree, one interval quantile per step ahead, and a
    /// weights file of the family's own in the model directory.
    fn check(&self, family: &str) -> Result<(), String> {
        let Self {
            shape,
            spec,
            report,
            ..
        } = self;
        let checks = [
            (
                self.family == family,
                format!("family {:?} in the file of {family:?}", self.family),
            ),
            (
                self.step_ms > 0,
                format!("step_ms {} is not positive", self.step_ms),
            ),
            (
                (1..=MAX_HORIZON_STEPS as usize + 1).contains(&shape.horizon_steps),
                format!(
                    "horizon_steps {} is outside 1..={}",
                    shape.horizon_steps,
                    MAX_HORIZON_STEPS + 1
                ),
            ),
            (
                shape.segment >= 1 && shape.segment <= shape.window,
                format!(
                    "segment {} is outside 1..=window ({})",
                    shape.segment, shape.window
                ),
            ),
            (
                (shape.window..=MAX_NORM_POINTS).contains(&shape.norm_points),
                format!(
                    "norm_points {} is outside window..={MAX_NORM_POINTS}",
                    shape.norm_points
                ),
            ),
            (
                spec.window == shape.window && spec.outputs == shape.horizon_steps,
                format!(
                    "network of {} steps and {} outputs for windows of {} and {} steps ahead",
                    spec.window, spec.outputs, shape.window, shape.horizon_steps
                ),
            ),
            (
                spec.inputs == FEATURES,
                format!("{} inputs, not {FEATURES}", spec.inputs),
            ),
            (
                (1..=MAX_HIDDEN).contains(&spec.hidden) && (1..=MAX_LAYERS).contains(&spec.layers),
                format!(
                    "{} layers of {} units: at most {MAX_LAYERS} of {MAX_HIDDEN}",
                    spec.layers, spec.hidden
                ),
            ),
            (
                report.residual_lo.len() == shape.horizon_steps
                    && report.residual_hi.len() == shape.horizon_steps,
                format!(
                    "{} and {} interval quantiles for {} steps ahead",
                    report.residual_lo.len(),
                    report.residual_hi.len(),
                    shape.horizon_steps
                ),
            ),
            (
                report
                    .residual_lo
                    .iter()
                    .chain(&report.residual_hi)
                    .all(|q| q.is_finite())
                    && report.one_step_sigma.is_finite()
                    && report.one_step_sigma >= 0.0,
                "interval quantiles or one-step sigma not finite".to_owned(),
            ),
            (
                self.history_ms.0 <= self.history_ms.1,
                format!(
                    "history ends ({}) before it starts ({})",
                    self.history_ms.1, self.history_ms.0
                ),
            ),
            (
                self.weights == weights_name(family, self.version),
                format!(
                    "weights file {:?}, not {:?}",
                    self.weights,
                    weights_name(family, self.version)
                ),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, reason)) => Err(reason),
            None => Ok(()),
        }
    }
}

/// The weights file of a family's model version.
fn weights_name(family: &str, version: u64) -> String {
    format!("{family}.v{version}.bpk")
}

/// Loads a family's model onto `device`, verifying the weights' checksum.
pub fn load(dir: &Path, family: &str, device: &Device) -> Result<StoredModel, StoreError> {
    let _lock = FamilyLock::take(dir, family, false)?;
    let meta = load_meta(dir, family)?;
    let path = dir.join(&meta.weights);
    let bytes = fs::read(&path).map_err(io(&path))?;
    if sha256_hex(&bytes) != meta.sha256 {
        return Err(StoreError::Checksum { path });
    }
    let net = LstmNet::from_bytes(meta.spec, device, Bytes::from_bytes_vec(bytes))
        .map_err(|reason| StoreError::Weights { path, reason })?;
    Ok(StoredModel { meta, net })
}

/// Families with a metadata file in `dir`.
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut families: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .collect();
    families.sort();
    families
}

/// Deletes a family's saved model: its metadata and weights, and those
/// moved aside as corrupt. Returns the names of the files removed, none
/// when nothing was saved. The metadata goes first: a removal cut short
/// leaves no model that would load.
pub fn remove(dir: &Path, family: &str) -> Result<Vec<String>, StoreError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = FamilyLock::take(dir, family, true)?;
    let mut names = match files_of(dir, family) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let meta = format!("{family}.json");
    names.sort_by(|a, b| (!a.starts_with(&meta), a).cmp(&(!b.starts_with(&meta), b)));
    for name in &names {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(names)
}

/// The names of `family`'s files in `dir` (see [`is_file_of`]).
fn files_of(dir: &Path, family: &str) -> std::io::Result<Vec<String>> {
    Ok(fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_file_of(name, family))
        .collect())
}

/// Whether `file` is one of `family`'s model files: `<family>.json` or
/// `<family>.v<version>.bpk`, either perhaps with `.corrupt` appended.
/// Family names are metric names, which have no dots, so another family's
/// files never match.
fn is_file_of(file: &str, family: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(family)
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return false;
    };
    let rest = rest.strip_suffix(".corrupt").unwrap_or(rest);
    rest == "json"
        || rest
            .strip_prefix('v')
            .and_then(|r| r.strip_suffix(".bpk"))
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// Moves a family's unusable model files aside (suffix `.corrupt`) so the
/// family retrains, keeping them for inspection. Every file of the family
/// goes, not only those its metadata names: that metadata may be the part
/// that is broken.
pub fn quarantine(dir: &Path, family: &str) {
    let _lock = FamilyLock::take(dir, family, true);
    for name in files_of(dir, family).unwrap_or_default() {
        if !name.ends_with(".corrupt") {
            let path = dir.join(&name);
            let _ = fs::rename(&path, dir.join(format!("{name}.corrupt")));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::window::Grid;
    use crate::model::{FEATURES, predict};

    /// Metadata of an untrained test model of `spec` with a 1-minute step.
    pub(crate) fn meta(spec: NetSpec, version: u64) -> ModelMeta {
        ModelMeta {
            format: FORMAT,
            family: "cpu".into(),
            version,
            trained_at_ms: 1,
            step_ms: 60_000,
            shape: Shape {
                window: spec.window,
                segment: spec.window / 2,
                horizon_steps: spec.outputs,
                norm_points: 8,
                weekly: false,
            },
            spec,
            history_ms: (0, 1),
            series: 1,
            series_available: 1,
            report: Report {
                epochs: 1,
                stopped_early: false,
                warm_start: false,
                train_windows: 1,
                validation_windows: 1,
                validation_loss: 0.5,
                validation_mae: 0.5,
                naive_mae: 1.0,
                residual_lo: vec![-1.0; spec.outputs],
                residual_hi: vec![1.0; spec.outputs],
                one_step_sigma: 0.1,
                seconds: 0.1,
            },
            weights: String::new(),
            sha256: String::new(),
        }
    }

    /// An untrained net of `window` steps, saved in `dir` as version 1 of
    /// family "cpu".
    fn saved_net(dir: &Path, window: usize, device: &Device) -> (NetSpec, LstmNet) {
        let spec = NetSpec {
            inputs: FEATURES,
            window,
            hidden: 6,
            layers: 2,
            outputs: 3,
        };
        let net = LstmNet::new(spec, device);
        save(dir, &net, meta(spec, 1)).unwrap();
        (spec, net)
    }

    #[test]
    fn round_trip_is_bit_identical_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let (spec, net) = saved_net(dir.path(), 4, &device);
        let loaded = load(dir.path(), "cpu", &device).unwrap();
        assert_eq!(loaded.meta.version, 1);
        let grid = Grid::from_values(0, 60_000, vec![1.0, 2.0, 4.0, 3.0, 5.0]);
        let shape = loaded.meta.shape;
        let w = grid.window(4, &shape).unwrap();
        let pass = grid.pass(w.start, w.points(), &shape).unwrap();
        assert_eq!(
            predict(&net, &[&pass], &[(0, &w)], &device),
            predict(&loaded.net, &[&pass], &[(0, &w)], &device)
        );

        // A second version replaces the first and removes its weights.
        save(dir.path(), &net, meta(spec, 2)).unwrap();
        assert!(!dir.path().join("cpu.v1.bpk").exists());
        assert_eq!(list(dir.path()), ["cpu"]);

        // Truncate the weights: load must refuse, quarantine moves them aside.
        let weights = dir.path().join("cpu.v2.bpk");
        let len = fs::metadata(&weights).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&weights)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert!(matches!(
            load(dir.path(), "cpu", &device),
            Err(StoreError::Checksum { .. })
        ));
        quarantine(dir.path(), "cpu");
        assert!(list(dir.path()).is_empty());
        assert!(dir.path().join("cpu.v2.bpk.corrupt").exists());
    }

    /// Removing a family deletes its files, those moved aside included,
    /// and no other family's.
    #[test]
    fn remove_deletes_one_familys_files() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let (spec, net) = saved_net(dir.path(), 4, &device);
        save(dir.path(), &net, meta(spec, 2)).unwrap();
        quarantine(dir.path(), "cpu");
        save(dir.path(), &net, meta(spec, 3)).unwrap();
        let mut other = meta(spec, 1);
        other.family = "cpu_busy".into();
        save(dir.path(), &net, other).unwrap();

        let removed = remove(dir.path(), "cpu").unwrap();
        assert_eq!(
            removed,
            [
                "cpu.json",
                "cpu.json.corrupt",
                "cpu.v2.bpk.corrupt",
                "cpu.v3.bpk"
            ]
        );
        assert_eq!(list(dir.path()), ["cpu_busy"]);
        assert!(load(dir.path(), "cpu_busy", &device).is_ok());
        assert!(remove(dir.path(), "cpu").unwrap().is_empty());
        assert!(
            remove(&dir.path().join("absent"), "cpu")
                .unwrap()
                .is_empty()
        );
    }

    /// Two writers of one family (a server and `promcast train`) and a
    /// reader on one directory: every save gets a version of its own above
    /// the ones before, no temporary file is left, and every load finds
    /// whole, matching files.
    #[test]
    fn concurrent_savers_and_a_reader_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let (spec, net) = saved_net(dir.path(), 4, &device);
        let saved = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        // Both start from version 2, as two trainers that
                        // read version 1 would.
                        let meta = save(dir.path(), &net, meta(spec, 2)).unwrap();
                        saved.lock().unwrap().push(meta.version);
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..40 {
                    load(dir.path(), "cpu", &device).unwrap();
                }
            });
        });
        let mut versions = saved.into_inner().unwrap();
        versions.sort_unstable();
        assert_eq!(versions, (2..22).collect::<Vec<u64>>());
        assert_eq!(load(dir.path(), "cpu", &device).unwrap().meta.version, 21);
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp") || n.ends_with(".bpk"))
            .collect();
        assert_eq!(left, ["cpu.v21.bpk"], "only the current weights remain");
    }

    /// An older model is refused for its format, by name, though its
    /// metadata lacks fields this layout needs.
    #[test]
    fn older_formats_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cpu.json"),
            r#"{"format": 2, "family": "cpu"}"#,
        )
        .unwrap();
        let err = load_meta(dir.path(), "cpu").unwrap_err();
        assert!(matches!(err, StoreError::Format { found: 2, .. }), "{err}");
    }

    /// Metadata that serving could not use is refused at load, naming
    /// what is wrong, and quarantine moves every file of the family aside
    /// (the weights a broken file names may not be where it says).
    #[test]
    fn inconsistent_metadata_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        saved_net(dir.path(), 4, &device);
        let path = meta_path(dir.path(), "cpu");
        let good: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let cases: [(&str, serde_json::Value, &str); 6] = [
            ("/step_ms", 0.into(), "step_ms 0 is not positive"),
            ("/shape/segment", 0.into(), "segment 0"),
            (
                "/spec/outputs",
                9.into(),
                "network of 4 steps and 9 outputs",
            ),
            (
                "/report/residual_hi",
                serde_json::json!([1.0]),
                "1 interval quantiles",
            ),
            ("/weights", "../cpu.v1.bpk".into(), "weights file"),
            ("/family", "mem".into(), "family \"mem\""),
        ];
        for (field, value, reason) in cases {
            let mut bad = good.clone();
            *bad.pointer_mut(field).unwrap() = value;
            fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
            let err = load(dir.path(), "cpu", &device).err().unwrap();
            assert!(
                matches!(err, StoreError::Inconsistent { .. }) && err.to_string().contains(reason),
                "{field}: {err}"
            );
        }
        quarantine(dir.path(), "cpu");
        assert!(list(dir.path()).is_empty());
        assert!(dir.path().join("cpu.v1.bpk.corrupt").exists());
    }

    /// The same saved model loaded onto wgpu (a GPU, or Mesa's software
    /// Vulkan driver without one) forecasts what it does on flex: through
    /// burn's stock layer there, the fused one here, for several forecasts
    /// reading one pass and for one forecast per pass.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_forecasts_as_flex_does() {
        let dir = tempfile::tempdir().unwrap();
        let flex = Device::flex();
        let (_, net) = saved_net(dir.path(), 8, &flex);
        let gpu = crate::model::Backend::Wgpu.device().unwrap();
        let loaded = load(dir.path(), "cpu", &gpu).unwrap();
        let values = (0..40).map(|i| f64::from(i % 7) * 1.5 + f64::from(i) * 0.1);
        let grid = Grid::from_values(0, 60_000, values.collect());
        let shape = loaded.meta.shape;
        let windows: Vec<_> = (20..24)
            .map(|end| grid.window(end, &shape).unwrap())
            .collect();
        assert!(windows.iter().all(|w| w.start == windows[0].start));
        let last = windows.last().unwrap();
        let pass = grid.pass(last.start, last.points(), &shape).unwrap();
        let shared: Vec<(usize, &crate::model::Window)> = windows.iter().map(|w| (0, w)).collect();
        let alone = grid
            .pass(windows[0].start, windows[0].points(), &shape)
            .unwrap();
        for (passes, reads) in [
            (vec![&pass], shared),
            (vec![&alone], vec![(0, &windows[0])]),
        ] {
            let want = predict(&net, &passes, &reads, &flex);
            let got = predict(&loaded.net, &passes, &reads, &gpu);
            assert_eq!(want.len(), reads.len());
            for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
                assert!((w - g).abs() < 1e-4, "{want:?} vs {got:?}");
            }
        }
    }
}
