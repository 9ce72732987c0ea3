//! Authentication of promcast's endpoints: the credentials Prometheus sends
//! with `remote_read.authorization` or `remote_read.basic_auth` (secrets in
//! promcast's configuration), and the users of a `--web.config.file` with
//! bcrypt-hashed passwords.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, WebConfig, read_secret};

/// Verified user credentials remembered at most: bcrypt is slow by
/// design (tens of milliseconds), and Prometheus sends the same ones with
/// every read. The cache holds SHA-256 digests, never passwords.
const VERIFIED_CACHE: usize = 1024;

/// The accepted credentials; a request passes with any one of them. Only
/// digests or bcrypt hashes are kept, and digests are compared in
/// constant time, so neither memory dumps nor response timing reveal the
/// secrets.
#[derive(Default)]
pub struct Auth {
    authorization: Option<[u8; 32]>,
    basic: Option<[u8; 32]>,
    /// `basic_auth_users`: user name → bcrypt hash of the password.
    users: BTreeMap<String, String>,
    /// Digests of `user:password` pairs bcrypt has verified.
    verified: Mutex<HashSet<[u8; 32]>>,
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
    /// Reads the secrets named in `web`, and takes `users` (bcrypt
    /// hashes, from a web configuration file); open access when none is
    /// set.
    pub fn new(web: &WebConfig, users: BTreeMap<String, String>) -> Result<Self, ConfigError> {
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
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether any credential is required.
    pub fn enabled(&self) -> bool {
        self.authorization.is_some() || self.basic.is_some() || !self.users.is_empty()
    }

    /// Whether checking a request may run bcrypt: then it belongs on a
    /// blocking thread.
    pub fn is_slow(&self) -> bool {
        !self.users.is_empty()
    }

    /// The `WWW-Authenticate` challenge for a refused request.
    pub fn challenge(&self) -> &'static str {
        if self.basic.is_some() || !self.users.is_empty() {
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
        if self.authorization.is_some_and(|a| same(&a, &digest(value))) {
            return Ok(());
        }
        let Some(pair) = split_scheme(value)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"basic"))
            .and_then(|(_, encoded)| STANDARD.decode(encoded).ok())
        else {
            return Err(AuthError::Invalid);
        };
        let pair_digest = digest(&pair);
        if self.basic.is_some_and(|b| same(&b, &pair_digest))
            || self.user_matches(&pair, pair_digest)
        {
            return Ok(());
        }
        Err(AuthError::Invalid)
    }

    /// Whether `user:password` is one of `basic_auth_users`. An unknown
    /// user costs a bcrypt run too, so that timing does not tell which
    /// users exist.
    fn user_matches(&self, pair: &[u8], pair_digest: [u8; 32]) -> bool {
        if self.users.is_empty() {
            return false;
        }
        if crate::lock::lock(&self.verified).contains(&pair_digest) {
            return true;
        }
        let Some((user, password)) = std::str::from_utf8(pair)
            .ok()
            .and_then(|pair| pair.split_once(':'))
        else {
            return false;
        };
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.users.values().next().map_or("", String::as_str), false),
        };
        let verified = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if verified {
            let mut cache = crate::lock::lock(&self.verified);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(pair_digest);
        }
        verified
    }
}

/// Compares two digests in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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
        let auth = Auth::new(&WebConfig::default(), BTreeMap::new()).unwrap();
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
        let auth = Auth::new(&web, BTreeMap::new()).unwrap();
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

    /// Users of a web configuration file: bcrypt-verified once, then from
    /// the cache; a wrong password, an unknown user and a bearer token
    /// are refused.
    #[test]
    fn bcrypt_users_are_verified_and_remembered() {
        let hash = bcrypt::hash("hunter2", 4).unwrap();
        let users = BTreeMap::from([("alice".to_owned(), hash)]);
        let auth = Auth::new(&WebConfig::default(), users).unwrap();
        assert!(auth.enabled() && auth.is_slow());
        assert_eq!(auth.challenge(), "Basic realm=\"promcast\"");
        let basic = |pair: &str| format!("Basic {}", STANDARD.encode(pair));
        assert_eq!(auth.check(&headers(None)), Err(AuthError::Missing));
        for refused in ["alice:hunter3", "bob:hunter2", "alice", ":"] {
            assert_eq!(
                auth.check(&headers(Some(&basic(refused)))),
                Err(AuthError::Invalid),
                "{refused}"
            );
        }
        assert_eq!(
            auth.check(&headers(Some("Bearer hunter2"))),
            Err(AuthError::Invalid)
        );
        assert!(crate::lock::lock(&auth.verified).is_empty());
        assert_eq!(auth.check(&headers(Some(&basic("alice:hunter2")))), Ok(()));
        assert_eq!(crate::lock::lock(&auth.verified).len(), 1);
        assert_eq!(auth.check(&headers(Some(&basic("alice:hunter2")))), Ok(()));
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
        let err = Auth::new(&web, BTreeMap::new()).err().unwrap().to_string();
        assert!(err.contains("web.authorization.credentials_file"), "{err}");
        assert!(err.contains("empty"), "{err}");
        web.authorization = None;
        web.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password_file: "/nonexistent/promcast-password".into(),
        });
        let err = Auth::new(&web, BTreeMap::new()).err().unwrap().to_string();
        assert!(err.contains("web.basic_auth.password_file"), "{err}");
    }
}
