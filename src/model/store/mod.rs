//! Model persistence: a family's model is its metadata (JSON) and its
//! weights (burnpack), in a local directory or an S3 bucket. The metadata
//! names the weights and their SHA-256, so that a corrupt or truncated
//! file is detected at load instead of served, and is moved aside (the
//! family then retrains).
//!
//! [`directory`] keeps one metadata file per family, renamed into place
//! after its weights, under a per-family lock, so that a server and
//! `promcast train` can share it. [`object`] writes every model as
//! immutable objects and moves a per-family pointer with a conditional
//! write, so that replicas on one bucket never interleave two trainers'
//! results (see its documentation).

mod directory;
mod object;

#[cfg(test)]
pub(crate) use object::tests::moto;

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::network::{LstmNet, NetSpec};
use super::train::Report;
use super::window::{FEATURES, MAX_HORIZON_STEPS, Shape};
use crate::config::ModelStoreConfig;

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
    /// Increases with every training of the family; in an object store,
    /// the generation its pointer names.
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
    /// Weights file name, beside the metadata (see [`weights_name`]).
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
    #[error("{location}: {error}")]
    Io {
        location: String,
        error: std::io::Error,
    },
    #[error("{location}: {error}")]
    Object {
        location: String,
        error: object_store::Error,
    },
    #[error("{location}: invalid metadata: {error}")]
    Meta {
        location: String,
        error: serde_json::Error,
    },
    #[error("{location}: unsupported model format {found} (this promcast reads {FORMAT})")]
    Format { location: String, found: u32 },
    #[error("{location}: checksum mismatch (file is corrupt or truncated)")]
    Checksum { location: String },
    #[error("{location}: weights do not fit the recorded network: {reason}")]
    Weights { location: String, reason: String },
    #[error("{location}: inconsistent metadata: {reason}")]
    Inconsistent { location: String, reason: String },
    /// Another trainer saved this generation or a later one first: this
    /// result is discarded (the fencing of [`object`]).
    #[error(
        "{family}: generation {generation} lost to generation {current}, saved first by another trainer"
    )]
    Superseded {
        family: String,
        generation: u64,
        current: u64,
    },
    #[error("model store {url:?}: {reason}")]
    Url { url: String, reason: String },
}

impl StoreError {
    /// Whether the stored model itself is unusable (and should be moved
    /// aside so that the family retrains), rather than out of reach for
    /// now (a network error, a full disk): those are retried as they are.
    pub fn is_corrupt(&self) -> bool {
        match self {
            StoreError::Io { error, .. } => error.kind() == std::io::ErrorKind::NotFound,
            StoreError::Object { error, .. } => {
                matches!(error, object_store::Error::NotFound { .. })
            }
            StoreError::Meta { .. }
            | StoreError::Format { .. }
            | StoreError::Checksum { .. }
            | StoreError::Weights { .. }
            | StoreError::Inconsistent { .. } => true,
            StoreError::Superseded { .. } | StoreError::Url { .. } => false,
        }
    }
}

/// Where models are kept: `--model.store` (or `model_store.url`).
#[derive(Debug, Clone)]
pub enum ModelStore {
    /// A local (or shared) directory.
    Directory(PathBuf),
    /// A prefix of an S3 bucket.
    Object(object::Bucket),
}

/// The newest usable model of a family in the store, as far as its
/// metadata (or pointer) says without loading it.
#[derive(Debug)]
pub struct Head {
    /// The family.
    pub family: String,
    /// Its version and training time, or why they could not be read.
    pub saved: Result<Saved, StoreError>,
}

/// A saved model's version and training time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// The model's version (generation).
    pub version: u64,
    /// When its training finished (Unix ms).
    pub trained_at_ms: i64,
}

impl ModelStore {
    /// The store `config.url` names: `s3://bucket/prefix` (or `s3a://`),
    /// or else a directory.
    pub fn open(config: &ModelStoreConfig) -> Result<Self, StoreError> {
        let url = config.url.as_str();
        match url.split_once("://") {
            Some(("s3" | "s3a", _)) => Ok(Self::Object(object::Bucket::open(config)?)),
            Some((scheme, _)) if !scheme.contains(['/', '\\']) => Err(StoreError::Url {
                url: url.to_owned(),
                reason: format!(
                    "unsupported scheme {scheme:?}: use a directory or s3://bucket/prefix"
                ),
            }),
            _ => Ok(Self::Directory(PathBuf::from(url))),
        }
    }

    /// The store's `name` folder (prefix), for models kept apart.
    pub fn sub(&self, name: &str) -> Self {
        match self {
            Self::Directory(dir) => Self::Directory(dir.join(name)),
            Self::Object(bucket) => Self::Object(bucket.sub(name)),
        }
    }

    /// Saves `net` with `meta`, whose `weights` and `sha256` are filled in
    /// here. A directory saves it above every version saved before; an
    /// object store saves it as generation `meta.version` or not at all
    /// ([`StoreError::Superseded`]).
    pub async fn save(&self, net: &LstmNet, meta: ModelMeta) -> Result<ModelMeta, StoreError> {
        let bytes = net.to_bytes().map_err(|reason| StoreError::Weights {
            location: format!("{self}/{}", meta.family),
            reason,
        })?;
        match self {
            Self::Directory(dir) => {
                let dir = dir.clone();
                blocking(move || directory::save(&dir, &bytes, meta)).await
            }
            Self::Object(bucket) => bucket.save(bytes.to_vec(), meta).await,
        }
    }

    /// Loads a family's model onto `device`, verifying the weights'
    /// checksum.
    pub async fn load(&self, family: &str, device: &Device) -> Result<StoredModel, StoreError> {
        let (meta, bytes, location) = match self {
            Self::Directory(dir) => in_directory(dir, family, directory::read).await?,
            Self::Object(bucket) => bucket.read(family).await?,
        };
        if sha256_hex(&bytes) != meta.sha256 {
            return Err(StoreError::Checksum { location });
        }
        let net = LstmNet::from_bytes(meta.spec, device, Bytes::from_bytes_vec(bytes))
            .map_err(|reason| StoreError::Weights { location, reason })?;
        Ok(StoredModel { meta, net })
    }

    /// Every family with a usable model saved (its head unreadable where
    /// its metadata is broken), by name.
    pub async fn heads(&self) -> Result<Vec<Head>, StoreError> {
        match self {
            Self::Directory(dir) => {
                let dir = dir.clone();
                Ok(blocking(move || directory::heads(&dir)).await)
            }
            Self::Object(bucket) => bucket.heads().await,
        }
    }

    /// The highest version a family has had in the store, moved aside or
    /// not (0: none), for the next training to count from.
    pub async fn generation(&self, family: &str) -> Result<u64, StoreError> {
        match self {
            Self::Directory(dir) => in_directory(dir, family, directory::generation).await,
            Self::Object(bucket) => bucket.generation(family).await,
        }
    }

    /// Deletes a family's saved model, and those moved aside as corrupt.
    /// Returns the names of the files (objects) removed, none when nothing
    /// was saved.
    pub async fn remove(&self, family: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Directory(dir) => in_directory(dir, family, directory::remove).await,
            Self::Object(bucket) => bucket.remove(family).await,
        }
    }

    /// Moves a family's unusable model aside, kept for inspection, so that
    /// the family retrains.
    pub async fn quarantine(&self, family: &str) {
        match self {
            Self::Directory(dir) => in_directory(dir, family, directory::quarantine).await,
            Self::Object(bucket) => bucket.quarantine(family).await,
        }
    }
}

impl fmt::Display for ModelStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory(dir) => write!(f, "{}", dir.display()),
            Self::Object(bucket) => write!(f, "{bucket}"),
        }
    }
}

/// Runs a file-system operation on `family` in `dir` on a blocking thread.
async fn in_directory<T: Send + 'static>(
    dir: &Path,
    family: &str,
    operation: fn(&Path, &str) -> T,
) -> T {
    let (dir, family) = (dir.to_owned(), family.to_owned());
    blocking(move || operation(&dir, &family)).await
}

/// Runs a file-system operation on a blocking thread, passing its panic on.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses and checks the metadata of `family`'s model, read from `location`
/// (named in errors).
pub fn parse_meta(text: &[u8], family: &str, location: &str) -> Result<ModelMeta, StoreError> {
    let meta_error = |error| StoreError::Meta {
        location: location.to_owned(),
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
            location: location.to_owned(),
            found: format,
        });
    }
    let meta: ModelMeta = serde_json::from_slice(text).map_err(meta_error)?;
    meta.check(family)
        .map_err(|reason| StoreError::Inconsistent {
            location: location.to_owned(),
            reason,
        })?;
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
                is_weights_name(&self.weights, family, self.version),
                format!(
                    "weights file {:?}, not {:?} or {:?}",
                    self.weights,
                    weights_name(family, self.version, None),
                    weights_name(family, self.version, Some("<16 hex digits>"))
                ),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, reason)) => Err(reason),
            None => Ok(()),
        }
    }
}

/// The weights file of a family's model version: `<family>.v<version>.bpk`
/// in a directory, with the writer's `tag` before `.bpk` in an object
/// store, where two trainers of one generation must not write one object.
fn weights_name(family: &str, version: u64, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{family}.v{version}.{tag}.bpk"),
        None => format!("{family}.v{version}.bpk"),
    }
}

/// Whether `name` is a [`weights_name`] of `family`'s `version`: nothing
/// that a hostile metadata file could point elsewhere with.
fn is_weights_name(name: &str, family: &str, version: u64) -> bool {
    let Some(rest) = name
        .strip_prefix(&format!("{family}.v{version}."))
        .and_then(|rest| rest.strip_suffix("bpk"))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_suffix('.')
            .is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;

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

    /// An untrained net of `window` steps, saved in `store` as version 1
    /// of family "cpu".
    async fn saved_net(store: &ModelStore, window: usize, device: &Device) -> (NetSpec, LstmNet) {
        let spec = NetSpec {
            inputs: FEATURES,
            window,
            hidden: 6,
            layers: 2,
            outputs: 3,
        };
        let net = LstmNet::new(spec, device);
        store.save(&net, meta(spec, 1)).await.unwrap();
        (spec, net)
    }

    fn families(store: &ModelStore) -> Vec<String> {
        let ModelStore::Directory(dir) = store else {
            unreachable!()
        };
        directory::heads(dir)
            .into_iter()
            .map(|h| h.family)
            .collect()
    }

    fn directory(dir: &Path) -> ModelStore {
        ModelStore::Directory(dir.to_owned())
    }

    #[tokio::test]
    async fn round_trip_is_bit_identical_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = directory(dir.path());
        let device = Device::flex();
        let (spec, net) = saved_net(&store, 4, &device).await;
        let loaded = store.load("cpu", &device).await.unwrap();
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
        store.save(&net, meta(spec, 2)).await.unwrap();
        assert!(!dir.path().join("cpu.v1.bpk").exists());
        assert_eq!(families(&store), ["cpu"]);

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
            store.load("cpu", &device).await,
            Err(StoreError::Checksum { .. })
        ));
        store.quarantine("cpu").await;
        assert!(families(&store).is_empty());
        assert!(dir.path().join("cpu.v2.bpk.corrupt").exists());
    }

    /// Removing a family deletes its files, those moved aside included,
    /// and no other family's.
    #[tokio::test]
    async fn remove_deletes_one_familys_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = directory(dir.path());
        let device = Device::flex();
        let (spec, net) = saved_net(&store, 4, &device).await;
        store.save(&net, meta(spec, 2)).await.unwrap();
        store.quarantine("cpu").await;
        store.save(&net, meta(spec, 3)).await.unwrap();
        let mut other = meta(spec, 1);
        other.family = "cpu_busy".into();
        store.save(&net, other).await.unwrap();

        let removed = store.remove("cpu").await.unwrap();
        assert_eq!(
            removed,
            [
                "cpu.json",
                "cpu.json.corrupt",
                "cpu.v2.bpk.corrupt",
                "cpu.v3.bpk"
            ]
        );
        assert_eq!(families(&store), ["cpu_busy"]);
        assert!(store.load("cpu_busy", &device).await.is_ok());
        assert!(store.remove("cpu").await.unwrap().is_empty());
        assert!(
            directory(&dir.path().join("absent"))
                .remove("cpu")
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Two writers of one family (a server and `promcast train`) and a
    /// reader on one directory: every save gets a version of its own above
    /// the ones before, no temporary file is left, and every load finds
    /// whole, matching files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn concurrent_savers_and_a_reader_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = directory(dir.path());
        let device = Device::flex();
        let (spec, net) = saved_net(&store, 4, &device).await;
        let savers = (0..2).map(|_| {
            let (store, net) = (store.clone(), net.clone());
            tokio::spawn(async move {
                let mut versions = Vec::new();
                for _ in 0..10 {
                    // Both start from version 2, as two trainers that
                    // read version 1 would.
                    versions.push(store.save(&net, meta(spec, 2)).await.unwrap().version);
                }
                versions
            })
        });
        let savers: Vec<_> = savers.collect();
        let reader = {
            let (store, device) = (store.clone(), device.clone());
            tokio::spawn(async move {
                for _ in 0..40 {
                    store.load("cpu", &device).await.unwrap();
                }
            })
        };
        let mut versions = Vec::new();
        for saver in savers {
            versions.extend(saver.await.unwrap());
        }
        reader.await.unwrap();
        versions.sort_unstable();
        assert_eq!(versions, (2..22).collect::<Vec<u64>>());
        assert_eq!(store.load("cpu", &device).await.unwrap().meta.version, 21);
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
        let err = directory::load_meta(dir.path(), "cpu").unwrap_err();
        assert!(matches!(err, StoreError::Format { found: 2, .. }), "{err}");
    }

    /// Metadata that serving could not use is refused at load, naming
    /// what is wrong, and quarantine moves every file of the family aside
    /// (the weights a broken file names may not be where it says).
    #[tokio::test]
    async fn inconsistent_metadata_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = directory(dir.path());
        let device = Device::flex();
        saved_net(&store, 4, &device).await;
        let path = dir.path().join("cpu.json");
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
            let err = store.load("cpu", &device).await.err().unwrap();
            assert!(
                matches!(err, StoreError::Inconsistent { .. }) && err.to_string().contains(reason),
                "{field}: {err}"
            );
        }
        store.quarantine("cpu").await;
        assert!(families(&store).is_empty());
        assert!(dir.path().join("cpu.v1.bpk.corrupt").exists());
    }

    /// The same saved model loaded onto wgpu (a GPU, or Mesa's software
    /// Vulkan driver without one) forecasts what it does on flex: through
    /// burn's stock layer there, the fused one here, for several forecasts
    /// reading one pass and for one forecast per pass.
    #[cfg(feature = "wgpu")]
    #[tokio::test]
    async fn wgpu_forecasts_as_flex_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = directory(dir.path());
        let flex = Device::flex();
        let (_, net) = saved_net(&store, 8, &flex).await;
        let gpu = crate::model::Backend::Wgpu.device().unwrap();
        let loaded = store.load("cpu", &gpu).await.unwrap();
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
