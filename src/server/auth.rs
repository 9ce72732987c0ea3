//! Authentication of promcast's endpoints: the credentials Prometheus sends
//! with `remote_read.authorization` or `remote_read.basic_auth`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, WebConfig, read_secret};

/// The accepted credentials; a request passes with any one of them. Only
/// digests are kept, and compared whole, so neither memory dumps nor
/// response timing reveal the secrets.
#[derive(Default)]
pub struct Auth {
    authorization: Option<[u8; 32]>,
    basic: Option<[u8; 32]>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("authentication required")]
    Missing,
    /// Credentials that match nothing configured.
    #[error("invalid credentials")]
    Invalid,
}

impl Auth {
    /// Reads the secrets named in `web`; open access when none is set.
    pub fn from_config(web: &WebConfig) -> Result<Self, ConfigError> {
        let authorization = match &web.authorization {
            Some(a) => {
                let credentials =
                    read_secret(&a.credentials_file, "web.authorization.credentials_file")?;
                Some(digest(format!("{} {credentials}", a.kind).as_bytes()))
            }
            None => None,
        };
        let basic = match &web.basic_auth {
            Some(b) => {
                let password = read_secret(&b.password_file, "web.basic_auth.password_file")?;
                Some(digest(format!("{}:{password}", b.username).as_bytes()))
            }
            None => None,
        };
        Ok(Self {
            authorization,
            basic,
        })
    }

    /// Whether any credential is required.
    pub fn enabled(&self) -> bool {
        self.authorization.is_some() || self.basic.is_some()
    }

    /// The `WWW-Authenticate` challenge for a refused request.
    pub fn challenge(&self) -> &'static str {
        if self.basic.is_some() {
            "Basic realm=\"promcast\""
        } else {
            "Bearer realm=\"promcast\""
        }
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        let value = headers
            .get(AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .as_bytes();
        if self.authorization == Some(digest(value)) {
            return Ok(());
        }
        if let Some(basic) = self.basic
            && let Some((scheme, encoded)) = split_scheme(value)
            && scheme.eq_ignore_ascii_case(b"basic")
            && STANDARD
                .decode(encoded)
                .is_ok_and(|pair| digest(&pair) == basic)
        {
            return Ok(());
        }
        Err(AuthError::Invalid)
    }
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    Some((&value[..space], value[space + 1..].trim_ascii()))
}

fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use hyper::header::HeaderValue;

    use super::*;
    use crate::config::{Authorization, BasicAuth};

    fn secret_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn open_without_configuration() {
        let auth = Auth::from_config(&WebConfig::default()).unwrap();
        assert!(!auth.enabled());
        assert_eq!(auth.check(&headers(None)), Ok(()));
    }

    #[test]
    fn bearer_and_basic_are_both_accepted() {
        let token = secret_file("s3cret-token\n");
        let password = secret_file("hunter2\n");
        let web = WebConfig {
            tls_server_config: None,
            authorization: Some(Authorization {
                kind: "Bearer".into(),
                credentials_file: token.path().into(),
            }),
            basic_auth: Some(BasicAuth {
                username: "prometheus".into(),
                password_file: password.path().into(),
            }),
        };
        let auth = Auth::from_config(&web).unwrap();
        assert_eq!(auth.check(&headers(None)), Err(AuthError::Missing));
        assert_eq!(auth.check(&headers(Some("Bearer s3cret-token"))), Ok(()));
        assert_eq!(
            auth.check(&headers(Some("Bearer s3cret-token2"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(&headers(Some("Bearer s3cret-toke"))),
            Err(AuthError::Invalid)
        );
        let basic = |pair: &str| format!("Basic {}", STANDARD.encode(pair));
        assert_eq!(
            auth.check(&headers(Some(&basic("prometheus:hunter2")))),
            Ok(())
        );
        assert_eq!(
            auth.check(&headers(Some(&basic("prometheus:hunter3")))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(&headers(Some(&basic("grafana:hunter2")))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(&headers(Some("Basic !!not-base64"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(auth.challenge(), "Basic realm=\"promcast\"");
    }

    #[test]
    fn a_missing_or_empty_secret_file_names_the_field() {
        let empty = secret_file("\n");
        let mut web = WebConfig {
            authorization: Some(Authorization {
                kind: "Bearer".into(),
                credentials_file: empty.path().into(),
            }),
            ..WebConfig::default()
        };
        let err = Auth::from_config(&web).err().unwrap().to_string();
        assert!(err.contains("web.authorization.credentials_file"), "{err}");
        assert!(err.contains("empty"), "{err}");
        web.authorization = None;
        web.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password_file: "/nonexistent/promcast-password".into(),
        });
        let err = Auth::from_config(&web).err().unwrap().to_string();
        assert!(err.contains("web.basic_auth.password_file"), "{err}");
    }
}
