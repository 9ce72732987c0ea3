//! `--web.config.file`: Prometheus's web configuration file, as every
//! Prometheus exporter takes it (exporter-toolkit's format): HTTPS
//! (`tls_server_config`), users with bcrypt-hashed passwords
//! (`basic_auth_users`) and response headers
//! (`http_server_config.headers`). Relative paths are read from the file's
//! directory. Fields rustls cannot honour (cipher suites, curves, allowed
//! SANs) are refused by name rather than ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, TlsServerConfig, check_tls, parse_yaml, read_text};

/// The response headers the file may set, as in exporter-toolkit.
pub const HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
];

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfigFile {
    /// Serve HTTPS.
    pub tls_server_config: Option<TlsServerConfig>,
    /// Response headers.
    pub http_server_config: HttpServerConfig,
    /// User names and the bcrypt hashes of their passwords.
    pub basic_auth_users: BTreeMap<String, String>,
}

/// `http_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// Accepted for compatibility: promcast serves HTTP/1.1, which
    /// Prometheus's remote-read client speaks.
    pub http2: Option<bool>,
    /// Headers added to every response (see [`HEADERS`]).
    pub headers: BTreeMap<String, String>,
}

impl WebConfigFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, shown) = read_text(path)?;
        let mut file: Self = parse_yaml(&text, &shown)?;
        file.check()
            .map_err(|(field, reason)| ConfigError::Invalid {
                path: shown,
                field,
                reason,
            })?;
        if let (Some(tls), Some(dir)) = (&mut file.tls_server_config, path.parent()) {
            for file in [
                Some(&mut tls.cert_file),
                Some(&mut tls.key_file),
                tls.client_ca_file.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                *file = dir.join(&*file);
            }
        }
        Ok(file)
    }

    fn check(&self) -> Result<(), (String, String)> {
        if let Some(tls) = &self.tls_server_config {
            check_tls("tls_server_config", tls)?;
        }
        for (name, value) in &self.http_server_config.headers {
            let field = format!("http_server_config.headers.{name}");
            let Some(known) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) else {
                return Err((
                    field,
                    format!("not one of the headers it may set: {}", HEADERS.join(", ")),
                ));
            };
            let allowed: &[&str] = match *known {
                "X-Content-Type-Options" => &["nosniff"],
                "X-Frame-Options" => &["deny", "sameorigin"],
                _ => &[],
            };
            if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
                return Err((field, format!("must be one of: {}", allowed.join(", "))));
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err((field, "is not a valid header value".into()));
            }
        }
        for (user, hash) in &self.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err((
                    format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':'`)"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfigFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        WebConfigFile::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_exporter_toolkits_format_and_resolves_paths() {
        let file = load(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: /abs/key.pem\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  min_version: TLS13\nhttp_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: $2b$10$CdZz4dzEO/IuBhOWPcNuyu3W2PkqxlRmKYyV32m6mnIwJpY6pJpyO\n",
        )
        .unwrap();
        let tls = file.tls_server_config.unwrap();
        assert!(tls.cert_file.is_absolute() && tls.cert_file.ends_with("server.pem"));
        assert_eq!(tls.key_file, Path::new("/abs/key.pem"));
        assert_eq!(
            tls.client_auth().unwrap(),
            super::super::ClientAuthType::VerifyClientCertIfGiven
        );
        assert_eq!(file.basic_auth_users.len(), 1);
        assert!(load("").unwrap().basic_auth_users.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            (
                "basic_auth_users:\n  bob: plaintext\n",
                "basic_auth_users.bob",
            ),
            (
                "http_server_config:\n  headers:\n    Server: promcast\n",
                "http_server_config.headers.Server",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "X-Frame-Options",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
                "min_version",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "cipher_suites",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
                "RequestClientCert",
            ),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
