//! Models in a directory: `<family>.json` (the metadata) renamed into
//! place after the weights it names (`<family>.v<version>.bpk`), so a crash
//! mid-save leaves the previous model intact. A per-family lock file lets
//! a server and `promcast train` (or replicas on a shared volume) take
//! turns.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{FORMAT, Head, ModelMeta, Saved, StoreError, parse_meta, sha256_hex, weights_name};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        location: path.display().to_string(),
        error,
    }
}

/// Path of a family's metadata file.
fn meta_path(dir: &Path, family: &str) -> PathBuf {
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
        return Err(io(path)(error));
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

/// Saves the weights `bytes` with `meta` (whose `weights` and `sha256` are
/// filled in here), replacing the family's previous model only once both files are
/// complete. The version saved is above every version saved before, even
/// when another process saved one since `meta` was made.
pub(super) fn save(dir: &Path, bytes: &[u8], mut meta: ModelMeta) -> Result<ModelMeta, StoreError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let _lock = FamilyLock::take(dir, &meta.family, true)?;
    let previous = load_meta(dir, &meta.family).ok();
    if let Some(previous) = &previous {
        meta.version = meta.version.max(previous.version + 1);
    }
    let weights_file = weights_name(&meta.family, meta.version, None);
    write_atomic(&dir.join(&weights_file), bytes)?;
    meta.format = FORMAT;
    meta.weights = weights_file;
    meta.sha256 = sha256_hex(bytes);
    let meta_file = meta_path(dir, &meta.family);
    let json = serde_json::to_vec_pretty(&meta).map_err(|error| StoreError::Meta {
        location: meta_file.display().to_string(),
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
pub(super) fn load_meta(dir: &Path, family: &str) -> Result<ModelMeta, StoreError> {
    let path = meta_path(dir, family);
    let text = fs::read(&path).map_err(io(&path))?;
    parse_meta(&text, family, &path.display().to_string())
}

/// Reads a family's metadata and weights, and where the weights are (for
/// errors), under the family's shared lock.
pub(super) fn read(dir: &Path, family: &str) -> Result<(ModelMeta, Vec<u8>, String), StoreError> {
    let _lock = FamilyLock::take(dir, family, false)?;
    let meta = load_meta(dir, family)?;
    let path = dir.join(&meta.weights);
    let bytes = fs::read(&path).map_err(io(&path))?;
    Ok((meta, bytes, path.display().to_string()))
}

/// The head of every family with a metadata file in `dir`.
pub(super) fn heads(dir: &Path) -> Vec<Head> {
    list(dir)
        .into_iter()
        .map(|family| Head {
            saved: load_meta(dir, &family).map(|m| Saved {
                version: m.version,
                trained_at_ms: m.trained_at_ms,
            }),
            family,
        })
        .collect()
}

/// The version of a family's saved model (0: none). Files moved aside
/// do not count: versions start again after a quarantine, as nothing in
/// the directory can confuse the two.
pub(super) fn generation(dir: &Path, family: &str) -> Result<u64, StoreError> {
    match load_meta(dir, family) {
        Ok(meta) => Ok(meta.version),
        Err(StoreError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Families with a metadata file in `dir`.
fn list(dir: &Path) -> Vec<String> {
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

/// Deletes a family's metadata and weights, and those moved aside as
/// corrupt. The metadata goes first: a removal cut short leaves no model
/// that would load.
pub(super) fn remove(dir: &Path, family: &str) -> Result<Vec<String>, StoreError> {
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
pub(super) fn quarantine(dir: &Path, family: &str) {
    let _lock = FamilyLock::take(dir, family, true);
    for name in files_of(dir, family).unwrap_or_default() {
        if !name.ends_with(".corrupt") {
            let path = dir.join(&name);
            let _ = fs::rename(&path, dir.join(format!("{name}.corrupt")));
        }
    }
}
