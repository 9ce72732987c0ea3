//! promcast's YAML configuration: every field optional, Prometheus-style
//! durations, unknown fields rejected, errors that name the field and line.

pub mod expr;
pub mod families;
pub mod web_file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;
use crate::model::train::TrainConfig;
use crate::series::{is_metric_name, is_synthetic};
use expr::Expr;
use families::FamilyPolicy;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where source history comes from; absent means the embedded demo.
    pub upstream: UpstreamConfig,
    /// Defaults for every family.
    pub defaults: Defaults,
    /// The LSTM and its training.
    pub model: TrainConfig,
    /// Families configured by name (and optionally a PromQL expression).
    pub series: Vec<SeriesConfig>,
    /// Which other metrics queries may make promcast read.
    pub families: FamilyPolicy,
    /// Bounds on serving.
    pub limits: Limits,
    /// TLS and authentication of promcast's own endpoints.
    pub web: WebConfig,
    /// Replicas sharing the model store, and which one this is.
    pub cluster: crate::cluster::ClusterConfig,
    /// Where trained models are kept.
    pub model_store: ModelStoreConfig,
}

/// Where trained models are kept: a directory (the default) or an S3
/// bucket that replicas share. Every S3 setting defaults to the standard
/// AWS environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and
/// the web-identity and container credentials of EKS and ECS).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelStoreConfig {
    /// A directory, or `s3://bucket/prefix`; `--model.store` overrides it.
    pub url: String,
    /// An S3-compatible server's URL, instead of AWS's.
    pub endpoint: Option<String>,
    /// The bucket's region (default: `AWS_REGION`, else us-east-1).
    pub region: Option<String>,
    /// Allows an `http://` endpoint.
    pub allow_http: Option<bool>,
    /// Addresses the bucket as `bucket.endpoint` rather than
    /// `endpoint/bucket` (path style, which S3-compatible servers need).
    pub virtual_hosted_style: bool,
    /// Access key, where the environment has none.
    pub access_key_id: Option<String>,
    /// Secret key, where the environment has none; better kept there (a
    /// Kubernetes Secret) than in this file.
    pub secret_access_key: Option<String>,
}

impl Default for ModelStoreConfig {
    fn default() -> Self {
        Self {
            url: "data/models".to_owned(),
            endpoint: None,
            region: None,
            allow_http: None,
            virtual_hosted_style: false,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// Bounds that keep a slow upstream or a huge query from hurting Prometheus
/// or promcast. A request over a limit gets a 4xx naming the limit and is
/// counted in `promcast_limit_rejections_total`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Time after which a request is answered with the families computed
    /// so far. Keep it below Prometheus's `remote_timeout` (default 1m).
    pub request_timeout: PromDuration,
    /// Largest request body, compressed (Prometheus's own limit: 32 MiB).
    pub max_request_bytes: usize,
    /// Largest request after snappy decompression.
    pub max_decoded_bytes: usize,
    /// Most queries in one remote-read request.
    pub max_queries_per_request: usize,
    /// Longest time range of one query.
    pub max_query_range: PromDuration,
    /// Most synthetic series in one answer.
    pub max_series_per_answer: usize,
    /// Most samples in one answer. A `SAMPLES` answer is one message,
    /// built whole: about 40 bytes a sample at its peak, so the default
    /// keeps one answer near 400 MB.
    pub max_samples_per_answer: usize,
    /// Remote reads and federations answered at once (Prometheus's own
    /// default for remote reads: 10); more wait for a turn.
    pub max_concurrent_reads: usize,
    /// How long a read waits for its turn before a 503.
    pub max_read_wait: PromDuration,
    /// Time a client gets to send a request's headers (counted from the
    /// connection, or from the previous answer: it also closes idle
    /// connections), and then again its body; as Prometheus's
    /// `--web.read-timeout`.
    pub read_timeout: PromDuration,
    /// Open connections at most (Prometheus's `--web.max-connections`);
    /// more wait in the kernel's queue until one closes.
    pub max_connections: usize,
    /// Most series one training reads; a family with more trains on a
    /// fixed sample of them.
    pub max_training_series: usize,
    /// Samples one training reads, about: whole series are read until
    /// this many are reached.
    pub max_training_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: PromDuration::from_secs(50),
            max_request_bytes: crate::remote::codec::MAX_DECODED_BYTES,
            max_decoded_bytes: crate::remote::codec::MAX_DECODED_BYTES,
            max_queries_per_request: 64,
            max_query_range: PromDuration::days(31),
            max_series_per_answer: 100_000,
            max_samples_per_answer: 10_000_000,
            max_concurrent_reads: 10,
            max_read_wait: PromDuration::from_secs(10),
            read_timeout: PromDuration::from_secs(60),
            max_connections: 512,
            max_training_series: 500,
            max_training_samples: 10_000_000,
        }
    }
}

/// One of the [`Limits`], as named in errors and in
/// `promcast_limit_rejections_total{limit=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_request_bytes`.
    RequestBytes,
    /// `limits.max_decoded_bytes`.
    DecodedBytes,
    /// `limits.max_queries_per_request`.
    Queries,
    /// `limits.max_query_range`.
    QueryRange,
    /// `limits.max_series_per_answer`.
    Series,
    /// `limits.max_samples_per_answer`.
    Samples,
    /// `limits.max_concurrent_reads`.
    ConcurrentReads,
}

impl Limit {
    /// Every limit, so that each counter exists at 0 from the start.
    pub const ALL: [Limit; 7] = [
        Limit::RequestBytes,
        Limit::DecodedBytes,
        Limit::Queries,
        Limit::QueryRange,
        Limit::Series,
        Limit::Samples,
        Limit::ConcurrentReads,
    ];

    /// The short label used in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Limit::RequestBytes => "request_bytes",
            Limit::DecodedBytes => "decoded_bytes",
            Limit::Queries => "queries",
            Limit::QueryRange => "query_range",
            Limit::Series => "series",
            Limit::Samples => "samples",
            Limit::ConcurrentReads => "concurrent_reads",
        }
    }

    /// The configuration field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            Limit::RequestBytes => "limits.max_request_bytes",
            Limit::DecodedBytes => "limits.max_decoded_bytes",
            Limit::Queries => "limits.max_queries_per_request",
            Limit::QueryRange => "limits.max_query_range",
            Limit::Series => "limits.max_series_per_answer",
            Limit::Samples => "limits.max_samples_per_answer",
            Limit::ConcurrentReads => "limits.max_concurrent_reads",
        }
    }
}

/// promcast's own HTTP endpoints: TLS and who may call them. Mirrors
/// Prometheus's web configuration and `remote_read` client settings, so the
/// same certificates and secrets serve both ends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve HTTPS instead of HTTP.
    pub tls_server_config: Option<TlsServerConfig>,
    /// Accept `Authorization: <type> <credentials>` (Prometheus's
    /// `remote_read.authorization`).
    pub authorization: Option<Authorization>,
    /// Accept HTTP basic auth (Prometheus's `remote_read.basic_auth`).
    pub basic_auth: Option<BasicAuth>,
}

/// Certificate and key for HTTPS, with the fields of Prometheus's web
/// configuration that rustls can honour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA that client certificates must be signed by.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Whether clients must present a certificate; with a `client_ca_file`
    /// and no type, `RequireAndVerifyClientCert`.
    #[serde(default)]
    pub client_auth_type: Option<ClientAuthType>,
    /// Oldest TLS version accepted (default `TLS12`).
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    /// Newest TLS version accepted (default `TLS13`).
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
}

/// Go's `tls.ClientAuthType` names, as Prometheus's web configuration
/// takes them: those that verify what is presented. (`RequestClientCert`
/// and `RequireAnyClientCert` accept certificates nobody checked, which
/// rustls does not offer.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ClientAuthType {
    /// No client certificate is asked for.
    NoClientCert,
    /// A client certificate, if sent, must verify against the client CA.
    VerifyClientCertIfGiven,
    /// A client certificate that verifies against the client CA is required.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version, as Prometheus's web configuration names it
/// (rustls implements 1.2 and 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    TLS12,
    /// TLS 1.3.
    TLS13,
}

impl TlsServerConfig {
    /// The client authentication in force, or why the combination cannot
    /// be served (the field to change comes first).
    pub fn client_auth(&self) -> Result<ClientAuthType, (&'static str, &'static str)> {
        match (self.client_auth_type, self.client_ca_file.is_some()) {
            (None, true) => Ok(ClientAuthType::RequireAndVerifyClientCert),
            (None, false) => Ok(ClientAuthType::NoClientCert),
            (Some(ClientAuthType::NoClientCert), true) => Err((
                "client_auth_type",
                "is NoClientCert, but a client_ca_file is set: choose VerifyClientCertIfGiven or RequireAndVerifyClientCert, or drop the CA",
            )),
            (Some(ClientAuthType::NoClientCert), false) => Ok(ClientAuthType::NoClientCert),
            (Some(_), false) => Err((
                "client_ca_file",
                "is required to verify client certificates",
            )),
            (Some(t), true) => Ok(t),
        }
    }
}

/// A credential sent as `Authorization: <type> <credentials>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme, `Bearer` by default.
    #[serde(rename = "type", default = "bearer")]
    pub kind: String,
    /// File holding the credentials (surrounding whitespace ignored).
    pub credentials_file: PathBuf,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

/// HTTP basic auth with the password read from a file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// File holding the password (surrounding whitespace ignored).
    pub password_file: PathBuf,
}

/// How promcast connects to an HTTPS upstream.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM CA certificates trusted in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for upstreams that require one.
    pub cert_file: Option<PathBuf>,
    /// PEM key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
}

/// Reads a secret from a file, without surrounding whitespace (editors add
/// a final newline); `field` names the setting in the error.
pub fn read_secret(path: &Path, field: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: format!("{field} ({})", path.display()),
        error,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.display().to_string(),
            field: field.to_owned(),
            reason: "the file is empty".to_owned(),
        });
    }
    Ok(secret.to_owned())
}

/// The Prometheus-compatible server promcast reads history from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://prometheus:9090`.
    pub url: Option<url::Url>,
    /// Timeout of one upstream request.
    pub timeout: PromDuration,
    /// Extra HTTP headers sent with every upstream request.
    pub headers: BTreeMap<String, String>,
    /// Send `Authorization: <type> <credentials>`.
    pub authorization: Option<Authorization>,
    /// Send HTTP basic auth.
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for an `https` URL.
    pub tls_config: TlsClientConfig,
    /// Largest upstream answer, in bytes as sent; over it the read fails.
    pub max_answer_bytes: usize,
    /// Most samples in one upstream answer; over it the read fails.
    pub max_answer_samples: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout: PromDuration::from_secs(30),
            headers: BTreeMap::new(),
            authorization: None,
            basic_auth: None,
            tls_config: TlsClientConfig::default(),
            max_answer_bytes: 256 << 20,
            max_answer_samples: 20_000_000,
        }
    }
}

/// Settings every family inherits unless its `series:` entry overrides them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// The model's time step; absent means the source's own sample spacing.
    pub step: Option<PromDuration>,
    /// Horizons served when a selector names none.
    pub horizons: Vec<PromDuration>,
    /// The model's input window: each forecast reads between half of it
    /// and all of it (windows start on a fixed grid, see `model::window`).
    pub lookback: PromDuration,
    /// How much history a model trains on.
    pub train_window: PromDuration,
    /// How often a trained model is retrained in the background.
    pub retrain_interval: PromDuration,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            step: None,
            horizons: vec![
                PromDuration::from_secs(15 * 60),
                PromDuration::from_secs(3600),
                PromDuration::from_secs(6 * 3600),
            ],
            lookback: PromDuration::from_secs(3600),
            train_window: PromDuration::days(7),
            retrain_interval: PromDuration::hours(24),
        }
    }
}

/// One configured family.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesConfig {
    /// Family name: the metric name, or the name the synthetic series use
    /// for `expr` (`predicted_<name>`).
    pub name: String,
    /// PromQL expression evaluated with `/api/v1/query_range` instead of
    /// reading the metric `name`, checked as it loads (see [`expr`]).
    #[serde(default)]
    pub expr: Option<Expr>,
    /// Overrides `defaults.step`.
    #[serde(default)]
    pub step: Option<PromDuration>,
    /// Overrides `defaults.horizons`.
    #[serde(default)]
    pub horizons: Option<Vec<PromDuration>>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Parse {
        path: String,
        error: serde_yaml::Error,
    },
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        path: String,
        field: String,
        reason: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, shown) = read_text(path)?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = parse_yaml(text, origin)?;
        config
            .validate()
            .map_err(|(field, reason)| ConfigError::Invalid {
                path: origin.to_owned(),
                field,
                reason,
            })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let positive = |field: &str, d: PromDuration| {
            if d.as_millis() == 0 {
                Err((field.to_owned(), "must be greater than 0".to_owned()))
            } else {
                Ok(())
            }
        };
        if let Some(url) = &self.upstream.url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(("upstream.url".into(), "scheme must be http or https".into()));
        }
        positive("upstream.timeout", self.upstream.timeout)?;
        for (field, value) in [
            ("upstream.max_answer_bytes", self.upstream.max_answer_bytes),
            (
                "upstream.max_answer_samples",
                self.upstream.max_answer_samples,
            ),
        ] {
            if value == 0 {
                return Err((field.into(), "must be greater than 0".into()));
            }
        }
        let l = &self.limits;
        positive("limits.request_timeout", l.request_timeout)?;
        positive("limits.max_query_range", l.max_query_range)?;
        positive("limits.max_read_wait", l.max_read_wait)?;
        positive("limits.read_timeout", l.read_timeout)?;
        for (field, value) in [
            ("limits.max_connections", l.max_connections),
            ("limits.max_training_series", l.max_training_series),
            ("limits.max_training_samples", l.max_training_samples),
        ] {
            if value == 0 {
                return Err((field.into(), "must be greater than 0".into()));
            }
        }
        for (limit, value) in [
            (Limit::RequestBytes, l.max_request_bytes),
            (Limit::DecodedBytes, l.max_decoded_bytes),
            (Limit::Queries, l.max_queries_per_request),
            (Limit::Series, l.max_series_per_answer),
            (Limit::Samples, l.max_samples_per_answer),
            (Limit::ConcurrentReads, l.max_concurrent_reads),
        ] {
            if value == 0 {
                return Err((limit.field().into(), "must be greater than 0".into()));
            }
        }
        if self.upstream.authorization.is_some() && self.upstream.basic_auth.is_some() {
            return Err((
                "upstream.basic_auth".into(),
                "set either authorization or basic_auth, not both".into(),
            ));
        }
        for (field, auth) in [
            ("web.authorization.type", &self.web.authorization),
            ("upstream.authorization.type", &self.upstream.authorization),
        ] {
            if let Some(a) = auth
                && (a.kind.is_empty() || a.kind.contains(char::is_whitespace))
            {
                return Err((field.into(), "must be one word, e.g. Bearer".into()));
            }
        }
        if let Some(tls) = &self.web.tls_server_config {
            check_tls("web.tls_server_config", tls)?;
        }
        if let Err(e) = crate::model::store::ModelStore::open(&self.model_store) {
            return Err(("model_store.url".into(), e.to_string()));
        }
        let cluster = &self.cluster;
        if cluster.replicas == 0 {
            return Err(("cluster.replicas".into(), "must be at least 1".into()));
        }
        if let Some(ordinal) = cluster.ordinal
            && ordinal >= cluster.replicas
        {
            return Err((
                "cluster.ordinal".into(),
                format!(
                    "{ordinal} is not below cluster.replicas ({})",
                    cluster.replicas
                ),
            ));
        }
        let tls = &self.upstream.tls_config;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err((
                "upstream.tls_config.key_file".into(),
                "cert_file and key_file go together".into(),
            ));
        }
        if let Some(step) = self.defaults.step {
            positive("defaults.step", step)?;
        }
        check_horizons("defaults.horizons", &self.defaults.horizons)?;
        positive("defaults.lookback", self.defaults.lookback)?;
        positive("defaults.train_window", self.defaults.train_window)?;
        positive("defaults.retrain_interval", self.defaults.retrain_interval)?;
        let m = &self.model;
        for (field, value, min) in [
            ("model.hidden", m.hidden, 1),
            ("model.layers", m.layers, 1),
            ("model.max_epochs", m.max_epochs, 1),
            ("model.warm_epochs", m.warm_epochs, 1),
            ("model.patience", m.patience, 1),
            ("model.batch_size", m.batch_size, 1),
            ("model.windows_per_epoch", m.windows_per_epoch, 1),
        ] {
            if value < min {
                return Err((field.into(), format!("must be at least {min}")));
            }
        }
        if !(m.learning_rate > 0.0 && m.learning_rate < 1.0) {
            return Err(("model.learning_rate".into(), "must be in (0, 1)".into()));
        }
        positive("model.max_training_time", m.max_training_time)?;
        if !(m.interval_coverage > 0.0 && m.interval_coverage < 1.0) {
            return Err((
                "model.interval_coverage".into(),
                "must be in (0, 1), e.g. 0.9".into(),
            ));
        }
        for (i, s) in self.series.iter().enumerate() {
            let field = |f: &str| format!("series[{i}].{f}");
            if !is_metric_name(&s.name) {
                return Err((
                    field("name"),
                    format!("{:?} is not a valid metric name", s.name),
                ));
            }
            if is_synthetic(&s.name) {
                return Err((
                    field("name"),
                    format!("{:?} starts with a synthetic prefix", s.name),
                ));
            }
            if self.series[..i].iter().any(|o| o.name == s.name) {
                return Err((field("name"), format!("{:?} is configured twice", s.name)));
            }
            if let Some(step) = s.step {
                positive(&field("step"), step)?;
            }
            if let Some(h) = &s.horizons {
                check_horizons(&field("horizons"), h)?;
            }
        }
        Ok(())
    }

    /// Whether queries may make promcast read, train on and answer for
    /// `family`: configured families always, others as `families:` says.
    pub fn allows(&self, family: &str) -> Result<(), String> {
        match self.series(family) {
            Some(_) => Ok(()),
            None => self.families.check(family),
        }
    }

    /// The configured entry of a family, if any.
    pub fn series(&self, family: &str) -> Option<&SeriesConfig> {
        self.series.iter().find(|s| s.name == family)
    }

    /// The horizons of a family, sorted, longest last.
    pub fn horizons(&self, family: &str) -> Vec<PromDuration> {
        let mut h = self
            .series(family)
            .and_then(|s| s.horizons.clone())
            .unwrap_or_else(|| self.defaults.horizons.clone());
        h.sort();
        h.dedup();
        h
    }

    /// The longest horizon of a family: how far its model forecasts.
    pub fn max_horizon(&self, family: &str) -> PromDuration {
        self.horizons(family)
            .last()
            .copied()
            .unwrap_or(PromDuration::from_millis(0))
    }

    /// The configured model step of a family, if not left to the source.
    pub fn step(&self, family: &str) -> Option<PromDuration> {
        self.series(family)
            .and_then(|s| s.step)
            .or(self.defaults.step)
    }
}

/// A file's text, and its path as errors show it.
fn read_text(path: &Path) -> Result<(String, String), ConfigError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, shown)),
        Err(error) => Err(ConfigError::Read { path: shown, error }),
    }
}

/// YAML text as `T`; an empty file is all defaults.
fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(text).map_err(|error| ConfigError::Parse {
        path: origin.to_owned(),
        error,
    })
}

/// Checks what rustls needs of a TLS server configuration under `field`.
fn check_tls(field: &str, tls: &TlsServerConfig) -> Result<(), (String, String)> {
    tls.client_auth()
        .map_err(|(name, reason)| (format!("{field}.{name}"), reason.to_owned()))?;
    if let (Some(min), Some(max)) = (tls.min_version, tls.max_version)
        && min > max
    {
        return Err((
            format!("{field}.min_version"),
            format!("{min:?} is newer than max_version {max:?}"),
        ));
    }
    Ok(())
}

fn check_horizons(field: &str, horizons: &[PromDuration]) -> Result<(), (String, String)> {
    if horizons.is_empty() {
        return Err((field.to_owned(), "must list at least one horizon".into()));
    }
    if horizons.iter().any(|h| h.as_millis() == 0) {
        return Err((field.to_owned(), "horizons must be greater than 0".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
