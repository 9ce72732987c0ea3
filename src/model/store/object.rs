//! Models in S3 (or an S3-compatible store), shared by replicas.
//!
//! Under the store's prefix, each family has a folder:
//!
//! - `<family>.v<N>.<tag>.json` and `.bpk`: a model's metadata and weights,
//!   written once (`If-None-Match: *`) and never changed. The tag is the
//!   writer's own random number, so two trainers of one generation never
//!   write one object.
//! - `current`: a small pointer naming the current generation N and its
//!   objects. It moves only by a conditional write (`If-Match` on the ETag
//!   it had when the writer read it), and only forward: the generation is
//!   the fencing token. A trainer that planned generation N saves it only
//!   if the pointer is still below N when it writes, and still unchanged
//!   when it moves it; otherwise its result is discarded
//!   ([`StoreError::Superseded`]) and it loads the winner's.
//!
//! Readers poll the folder listing, which carries every pointer's ETag, and
//! read only the pointers that changed. A corrupt model is moved aside by
//! marking its pointer `quarantined` (conditionally too), which keeps its
//! generation, so that the next model's generation is still higher than
//! any a replica may be serving.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    GetResult, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use super::{FORMAT, Head, ModelMeta, Saved, StoreError, parse_meta, sha256_hex, weights_name};
use crate::config::ModelStoreConfig;

/// The pointer object's name in a family's folder.
const POINTER: &str = "current";

/// A prefix of a bucket, and what this process last read of its pointers.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket`, for messages.
    bucket_url: String,
    prefix: Path,
    /// Each family's pointer as last read, by the ETag it had.
    pointers: Arc<Mutex<HashMap<String, (String, Pointer)>>>,
}

/// A family's `current` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pointer {
    /// The generation (model version) it names.
    generation: u64,
    /// Its objects' name, without `.json` or `.bpk`.
    model: String,
    /// When that model's training finished (Unix ms).
    trained_at_ms: i64,
    /// The model was found corrupt: the family has none until it
    /// retrains, and its next generation counts from this one.
    #[serde(default)]
    quarantined: bool,
}

impl Bucket {
    /// The bucket and prefix of `config.url` (`s3://bucket/prefix`), with
    /// credentials and the endpoint from the standard AWS environment,
    /// overridden by the configuration. Nothing is read yet.
    pub(super) fn open(config: &ModelStoreConfig) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::Url {
            url: config.url.clone(),
            reason,
        };
        let url = url::Url::parse(&config.url).map_err(|e| invalid(e.to_string()))?;
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("no bucket: use s3://bucket/prefix".to_owned()))?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            // A store out of reach is retried by the next use (a scheduler
            // tick, a training), not for minutes inside this one.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.as_str());
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(allow) = config.allow_http {
            builder = builder.with_allow_http(allow);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            bucket_url: format!("s3://{bucket}"),
            prefix: Path::from(url.path()),
            pointers: Arc::default(),
        })
    }

    /// The `name` prefix under this one (nothing cached is shared).
    pub(super) fn sub(&self, name: &str) -> Self {
        Self {
            store: Arc::clone(&self.store),
            bucket_url: self.bucket_url.clone(),
            prefix: self.prefix.child(name),
            pointers: Arc::default(),
        }
    }

    fn object(&self, family: &str, name: &str) -> Path {
        self.prefix.child(family).child(name)
    }

    fn location(&self, path: &Path) -> String {
        format!("{}/{path}", self.bucket_url)
    }

    fn error(&self, path: &Path) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
        let location = self.location(path);
        move |error| StoreError::Object { location, error }
    }

    async fn get_bytes(&self, path: &Path) -> Result<(Vec<u8>, UpdateVersion), StoreError> {
        let result: GetResult = self.store.get(path).await.map_err(self.error(path))?;
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = result.bytes().await.map_err(self.error(path))?;
        Ok((bytes.to_vec(), version))
    }

    /// A family's pointer and the version to update it from (none: no
    /// model was ever saved).
    async fn pointer(&self, family: &str) -> Result<Option<(Pointer, UpdateVersion)>, StoreError> {
        let path = self.object(family, POINTER);
        let (bytes, version) = match self.get_bytes(&path).await {
            Ok(read) => read,
            Err(StoreError::Object {
                error: object_store::Error::NotFound { .. },
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let pointer =
            serde_json::from_slice::<Pointer>(&bytes).map_err(|error| StoreError::Meta {
                location: self.location(&path),
                error,
            })?;
        Ok(Some((pointer, version)))
    }

    /// Writes a family's pointer: created, or moved from the version read.
    async fn put_pointer(
        &self,
        family: &str,
        pointer: &Pointer,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(pointer).expect("a pointer serialises");
        self.put(&self.object(family, POINTER), json, mode).await
    }

    async fn put(&self, path: &Path, bytes: Vec<u8>, mode: PutMode) -> Result<(), StoreError> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(path, PutPayload::from(bytes), options)
            .await
            .map(drop)
            .map_err(self.error(path))
    }

    /// Saves generation `meta.version` of its family, or nothing when the
    /// pointer is already there or beyond, or moves on while this writes.
    pub(super) async fn save(
        &self,
        bytes: Vec<u8>,
        mut meta: ModelMeta,
    ) -> Result<ModelMeta, StoreError> {
        let (family, generation) = (meta.family.clone(), meta.version);
        let current = self.pointer(&family).await?;
        let superseded = |current: u64| StoreError::Superseded {
            family: family.clone(),
            generation,
            current,
        };
        if let Some((pointer, _)) = current.as_ref().filter(|(p, _)| p.generation >= generation) {
            return Err(superseded(pointer.generation));
        }
        let tag = format!("{:016x}", rand::random::<u64>());
        let weights = weights_name(&family, meta.version, Some(&tag));
        let model = weights.trim_end_matches(".bpk").to_owned();
        meta.format = FORMAT;
        meta.sha256 = sha256_hex(&bytes);
        meta.weights = weights;
        let meta_path = self.object(&family, &format!("{model}.json"));
        let json = serde_json::to_vec_pretty(&meta).map_err(|error| StoreError::Meta {
            location: self.location(&meta_path),
            error,
        })?;
        let weights_path = self.object(&family, &meta.weights);
        self.put(&weights_path, bytes, PutMode::Create).await?;
        self.put(&meta_path, json, PutMode::Create).await?;
        let pointer = Pointer {
            generation: meta.version,
            model,
            trained_at_ms: meta.trained_at_ms,
            quarantined: false,
        };
        let (previous, mode) = match current {
            Some((previous, version)) => (Some(previous.generation), PutMode::Update(version)),
            None => (None, PutMode::Create),
        };
        let moved = self.put_pointer(&family, &pointer, mode).await;
        match moved {
            Ok(()) => {
                if let Some(previous) = previous {
                    self.prune(&family, previous).await;
                }
                Ok(meta)
            }
            Err(e) => {
                // Best effort: what is left is never named by a pointer,
                // and the next save of the family prunes it.
                let _ = self.store.delete(&weights_path).await;
                let _ = self.store.delete(&meta_path).await;
                match e {
                    StoreError::Object {
                        error:
                            object_store::Error::Precondition { .. }
                            | object_store::Error::AlreadyExists { .. },
                        ..
                    } => {
                        let now = self.pointer(&family).await.ok().flatten();
                        Err(superseded(now.map_or(generation, |(p, _)| p.generation)))
                    }
                    e => Err(e),
                }
            }
        }
    }

    /// Deletes a family's objects of generations below `keep` (the one
    /// the pointer named before this save): a replica may still be
    /// loading that one.
    async fn prune(&self, family: &str, keep: u64) {
        let Ok(objects) = self.family_objects(family).await else {
            return;
        };
        for path in objects {
            let older = path
                .filename()
                .and_then(|name| generation_of(name, family))
                .is_some_and(|generation| generation < keep);
            if older {
                let _ = self.store.delete(&path).await;
            }
        }
    }

    async fn family_objects(&self, family: &str) -> Result<Vec<Path>, StoreError> {
        let folder = self.prefix.child(family);
        self.store
            .list(Some(&folder))
            .map_ok(|object| object.location)
            .try_collect()
            .await
            .map_err(self.error(&folder))
    }

    /// Reads the metadata and weights the family's pointer names, and
    /// where the weights are (for errors).
    pub(super) async fn read(
        &self,
        family: &str,
    ) -> Result<(ModelMeta, Vec<u8>, String), StoreError> {
        let pointer_path = self.object(family, POINTER);
        let pointer = match self.pointer(family).await? {
            Some((pointer, _)) if !pointer.quarantined => pointer,
            _ => {
                return Err(StoreError::Object {
                    location: self.location(&pointer_path),
                    error: object_store::Error::NotFound {
                        path: pointer_path.to_string(),
                        source: "no model saved, or it was moved aside".into(),
                    },
                });
            }
        };
        let meta_path = self.object(family, &format!("{}.json", pointer.model));
        let (text, _) = self.get_bytes(&meta_path).await?;
        let location = self.location(&meta_path);
        let meta = parse_meta(&text, family, &location)?;
        if meta.version != pointer.generation {
            return Err(StoreError::Inconsistent {
                location,
                reason: format!(
                    "version {}, but the pointer names generation {}",
                    meta.version, pointer.generation
                ),
            });
        }
        let weights_path = self.object(family, &meta.weights);
        let (bytes, _) = self.get_bytes(&weights_path).await?;
        Ok((meta, bytes, self.location(&weights_path)))
    }

    /// Every family with a usable model: one listing of the prefix, and a
    /// read of each pointer whose ETag changed since it was last read.
    pub(super) async fn heads(&self) -> Result<Vec<Head>, StoreError> {
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(self.error(&self.prefix))?;
        let mut heads = Vec::new();
        for object in listed {
            let Some(family) = self.family_of_pointer(&object.location) else {
                continue;
            };
            let etag = object.e_tag.unwrap_or_default();
            let cached = crate::lock::lock(&self.pointers)
                .get(&family)
                .filter(|(seen, _)| !etag.is_empty() && *seen == etag)
                .map(|(_, pointer)| pointer.clone());
            let pointer = match cached {
                Some(pointer) => Ok(pointer),
                None => match self.pointer(&family).await {
                    Ok(Some((pointer, version))) => {
                        crate::lock::lock(&self.pointers).insert(
                            family.clone(),
                            (version.e_tag.unwrap_or_default(), pointer.clone()),
                        );
                        Ok(pointer)
                    }
                    // Deleted since the listing.
                    Ok(None) => continue,
                    Err(e) => Err(e),
                },
            };
            match pointer {
                Ok(pointer) if pointer.quarantined => {}
                saved => heads.push(Head {
                    saved: saved.map(|p| Saved {
                        version: p.generation,
                        trained_at_ms: p.trained_at_ms,
                    }),
                    family,
                }),
            }
        }
        Ok(heads)
    }

    /// The family whose pointer `path` is, if it is one directly under
    /// this prefix (not one of a sub-prefix's families).
    fn family_of_pointer(&self, path: &Path) -> Option<String> {
        let mut parts = path.prefix_match(&self.prefix)?;
        let family = parts.next()?;
        let name = parts.next()?;
        (name.as_ref() == POINTER && parts.next().is_none()).then(|| family.as_ref().to_owned())
    }

    /// The generation of the family's pointer, quarantined or not.
    pub(super) async fn generation(&self, family: &str) -> Result<u64, StoreError> {
        Ok(self
            .pointer(family)
            .await?
            .map_or(0, |(pointer, _)| pointer.generation))
    }

    /// Deletes every object of the family, the pointer first: a removal cut
    /// short leaves no model that would load.
    pub(super) async fn remove(&self, family: &str) -> Result<Vec<String>, StoreError> {
        let mut objects = self.family_objects(family).await?;
        objects.sort_by_key(|path| path.filename() != Some(POINTER));
        let mut names = Vec::new();
        for path in objects {
            self.store.delete(&path).await.map_err(self.error(&path))?;
            names.extend(path.filename().map(str::to_owned));
        }
        crate::lock::lock(&self.pointers).remove(family);
        Ok(names)
    }

    /// Marks the family's pointer quarantined, unless it moved on since
    /// (then a newer model is there, and nothing is wrong with it yet).
    /// The objects stay, for inspection, until the family's second save
    /// from now prunes them.
    pub(super) async fn quarantine(&self, family: &str) {
        let Ok(Some((mut pointer, version))) = self.pointer(family).await else {
            return;
        };
        pointer.quarantined = true;
        let moved = self
            .put_pointer(family, &pointer, PutMode::Update(version))
            .await;
        if let Err(e) = moved {
            tracing::warn!(family, error = %e, "could not move the model aside");
        }
    }
}

/// The generation in an object name of `family` (`<family>.v<N>.…`).
fn generation_of(name: &str, family: &str) -> Option<u64> {
    let rest = name.strip_prefix(family)?.strip_prefix(".v")?;
    rest.split('.').next()?.parse().ok()
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket_url, self.prefix)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::{Child, Command, Stdio};

    use burn::tensor::Device;

    use super::*;
    use crate::model::store::ModelStore;
    use crate::model::store::tests::meta;
    use crate::model::{FEATURES, LstmNet, NetSpec};

    /// moto's S3 server on a loopback port, with a bucket `models`; killed
    /// when dropped.
    pub(crate) struct Moto {
        child: Child,
        endpoint: String,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub(crate) async fn moto() -> Moto {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-tools/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run tests/tools/setup",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            // Creating the bucket is also the readiness probe.
            let created = http.put(format!("{}/models", moto.endpoint)).send().await;
            if created.is_ok_and(|r| r.status().is_success()) {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not answer within 20 s");
    }

    impl Moto {
        /// The configuration of a store under `prefix` in the bucket.
        pub(crate) fn config(&self, prefix: &str) -> ModelStoreConfig {
            ModelStoreConfig {
                url: format!("s3://models/{prefix}"),
                endpoint: Some(self.endpoint.clone()),
                region: Some("us-east-1".to_owned()),
                allow_http: Some(true),
                access_key_id: Some("test".to_owned()),
                secret_access_key: Some("test".to_owned()),
                ..ModelStoreConfig::default()
            }
        }
    }

    fn bucket(moto: &Moto) -> Bucket {
        Bucket::open(&moto.config("promcast")).expect("the bucket opens")
    }

    fn net() -> (NetSpec, LstmNet) {
        let spec = NetSpec {
            inputs: FEATURES,
            window: 4,
            hidden: 3,
            layers: 1,
            outputs: 2,
        };
        (spec, LstmNet::new(spec, &Device::flex()))
    }

    async fn names(bucket: &Bucket) -> Vec<String> {
        let mut names: Vec<String> = bucket
            .family_objects("cpu")
            .await
            .unwrap()
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// Four trainers save generation 2 at once: one wins, the others are
    /// superseded and leave no object behind; one pointer names the
    /// winner's model; a stale trainer writes nothing; the save after
    /// prunes what no replica can still be loading.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_trainer_wins_a_generation() {
        let moto = moto().await;
        let store = ModelStore::Object(bucket(&moto));
        let (spec, net) = net();
        store.save(&net, meta(spec, 1)).await.unwrap();
        let racers = (0..4).map(|_| {
            let (store, net) = (store.clone(), net.clone());
            tokio::spawn(async move { store.save(&net, meta(spec, 2)).await })
        });
        let mut won = Vec::new();
        for racer in racers {
            match racer.await.unwrap() {
                Ok(meta) => won.push(meta),
                Err(StoreError::Superseded {
                    generation: 2,
                    current: 2,
                    ..
                }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won.len(), 1, "one winner");
        let loaded = store.load("cpu", &Device::flex()).await.unwrap();
        assert_eq!(
            (loaded.meta.version, &loaded.meta.weights),
            (2, &won[0].weights)
        );
        let ModelStore::Object(bucket) = &store else {
            unreachable!()
        };
        let before = names(bucket).await;
        assert_eq!(before.len(), 5, "two models and the pointer: {before:?}");

        let stale = store.save(&net, meta(spec, 2)).await.unwrap_err();
        assert!(
            matches!(stale, StoreError::Superseded { current: 2, .. }),
            "{stale}"
        );
        assert_eq!(
            names(bucket).await,
            before,
            "a stale trainer writes nothing"
        );

        store.save(&net, meta(spec, 3)).await.unwrap();
        let after = names(bucket).await;
        assert!(after.iter().all(|n| !n.starts_with("cpu.v1.")), "{after:?}");
        assert_eq!(after.len(), 5, "{after:?}");
    }

    /// Another replica's bucket sees each new generation; corrupt weights
    /// are refused at load and moved aside, keeping the generation, so
    /// that the next one is higher than any a replica may serve; removing
    /// the family deletes every object.
    #[tokio::test]
    async fn corrupt_models_are_moved_aside_and_generations_go_on() {
        let moto = moto().await;
        let writer = ModelStore::Object(bucket(&moto));
        let reader = ModelStore::Object(bucket(&moto));
        let (spec, net) = net();
        let head = async |store: &ModelStore| {
            let heads = store.heads().await.unwrap();
            heads.first().map(|h| h.saved.as_ref().unwrap().version)
        };
        assert_eq!(head(&reader).await, None);
        writer.save(&net, meta(spec, 1)).await.unwrap();
        assert_eq!(head(&reader).await, Some(1));
        let saved = writer.save(&net, meta(spec, 2)).await.unwrap();
        assert_eq!(head(&reader).await, Some(2));

        let ModelStore::Object(bucket) = &writer else {
            unreachable!()
        };
        let weights = bucket.object("cpu", &saved.weights);
        bucket
            .store
            .put(&weights, PutPayload::from_static(b"truncated"))
            .await
            .unwrap();
        let err = reader.load("cpu", &Device::flex()).await.err().unwrap();
        assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
        assert!(err.is_corrupt());
        reader.quarantine("cpu").await;
        assert_eq!(head(&reader).await, None, "moved aside");
        assert_eq!(reader.generation("cpu").await.unwrap(), 2);
        assert!(
            names(bucket).await.contains(&saved.weights),
            "kept for inspection"
        );

        writer.save(&net, meta(spec, 3)).await.unwrap();
        assert_eq!(head(&reader).await, Some(3));
        assert_eq!(
            reader
                .load("cpu", &Device::flex())
                .await
                .unwrap()
                .meta
                .version,
            3
        );

        let removed = writer.remove("cpu").await.unwrap();
        assert_eq!(removed[0], "current", "the pointer goes first");
        assert!(names(bucket).await.is_empty());
        assert_eq!(head(&reader).await, None);
    }
}
