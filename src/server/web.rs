//! What protects promcast's endpoints, from promcast's `web:` settings and
//! a Prometheus web configuration file (`--web.config.file`): TLS, the
//! credentials accepted, and headers added to every response. Reloaded on
//! SIGHUP and when one of the files it was read from changes (certificates
//! renewed, users added); a reload that fails keeps what was in force,
//! logs why and counts it in `promcast_web_config_reloads_total`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use tokio_rustls::TlsAcceptor;

use super::auth::Auth;
use crate::config::WebConfig;
use crate::config::web_file::WebConfigFile;
use crate::telemetry::Metrics;

/// How often the files are checked for changes.
const POLL: Duration = Duration::from_secs(5);

/// What is in force now.
pub struct Protection {
    /// Who may call the endpoints.
    pub auth: Auth,
    /// HTTPS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Added to every response.
    pub headers: HeaderMap,
}

/// The protection in force, and where it comes from.
pub struct Web {
    settings: WebConfig,
    file: Option<PathBuf>,
    current: RwLock<Arc<Protection>>,
    /// The files the protection was read from, with their modification
    /// times then.
    read: Mutex<Vec<(PathBuf, Option<SystemTime>)>>,
}

impl Web {
    /// Reads `settings` (promcast's `web:`) and the web configuration
    /// `file`, if any.
    pub fn load(settings: WebConfig, file: Option<PathBuf>) -> anyhow::Result<Self> {
        let (protection, read) = build(&settings, file.as_deref())?;
        Ok(Self {
            settings,
            file,
            current: RwLock::new(Arc::new(protection)),
            read: Mutex::new(stamped(read)),
        })
    }

    /// The protection in force.
    pub fn current(&self) -> Arc<Protection> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Reads everything again; on failure what was in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let (protection, read) = build(&self.settings, self.file.as_deref())?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(protection);
        *crate::lock::lock(&self.read) = stamped(read);
        Ok(())
    }

    /// Takes the files' current state as read, so that only a later change
    /// triggers a reload.
    fn mark_read(&self) {
        let mut read = crate::lock::lock(&self.read);
        let paths = read.drain(..).map(|(path, _)| path).collect();
        *read = stamped(paths);
    }

    /// Whether a file read at the last load has changed since.
    fn changed(&self) -> bool {
        crate::lock::lock(&self.read)
            .iter()
            .any(|(path, stamp)| modified(path) != *stamp)
    }

    /// Reloads on SIGHUP and whenever a file read has changed.
    pub fn spawn_reloads(self: &Arc<Self>, metrics: Arc<Metrics>) {
        let web = Arc::clone(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hangups.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                let why = tokio::select! {
                    () = hangup => "SIGHUP",
                    () = tokio::time::sleep(POLL) => {
                        if !web.changed() {
                            continue;
                        }
                        "a file changed"
                    }
                };
                match web.reload() {
                    Ok(()) => {
                        metrics.web_config_reload(true);
                        tracing::info!(reason = why, "web configuration reloaded");
                    }
                    Err(e) => {
                        // Tried again at the next change, not at every poll.
                        web.mark_read();
                        metrics.web_config_reload(false);
                        tracing::error!(reason = why, error = %format!("{e:#}"), "web configuration reload failed: keeping the previous one");
                    }
                }
            }
        });
    }
}

/// The protection `settings` and `file` describe, and the files it was
/// read from.
fn build(
    settings: &WebConfig,
    file: Option<&std::path::Path>,
) -> anyhow::Result<(Protection, Vec<PathBuf>)> {
    let from_file = file
        .map(WebConfigFile::load)
        .transpose()?
        .unwrap_or_default();
    let mut read: Vec<PathBuf> = file.into_iter().map(ToOwned::to_owned).collect();
    read.extend(
        settings
            .authorization
            .iter()
            .map(|a| a.credentials_file.clone()),
    );
    read.extend(settings.basic_auth.iter().map(|b| b.password_file.clone()));
    let tls = match (&settings.tls_server_config, &from_file.tls_server_config) {
        (Some(_), Some(_)) => anyhow::bail!(
            "tls_server_config is set both in promcast's web: settings and in the web configuration file: keep one"
        ),
        (Some(tls), None) => Some((tls, "web.")),
        (None, Some(tls)) => Some((tls, "the web configuration file's ")),
        (None, None) => None,
    };
    let acceptor = match tls {
        Some((tls, source)) => {
            read.extend([tls.cert_file.clone(), tls.key_file.clone()]);
            read.extend(tls.client_ca_file.clone());
            Some(crate::tls::acceptor(tls).with_context(|| format!("{source}tls_server_config"))?)
        }
        None => None,
    };
    let auth = Auth::new(settings, from_file.basic_auth_users)?;
    let mut headers = HeaderMap::new();
    for (name, value) in &from_file.http_server_config.headers {
        // Checked as the file loaded.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    Ok((
        Protection {
            auth,
            tls: acceptor,
            headers,
        },
        read,
    ))
}

fn stamped(paths: Vec<PathBuf>) -> Vec<(PathBuf, Option<SystemTime>)> {
    paths
        .into_iter()
        .map(|path| {
            let stamp = modified(&path);
            (path, stamp)
        })
        .collect()
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
