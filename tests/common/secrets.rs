//! TLS and credentials for a secured scenario: a test CA and a server
//! certificate for 127.0.0.1 (used by both Prometheus and promcast), the
//! bearer token Prometheus sends promcast, and the basic-auth user
//! promcast logs in to Prometheus with.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use promcast::calendar::now_ms;

use super::http::HTTP_TIMEOUT;

/// The user Prometheus's web config admits (promcast reads with it too).
pub const BASIC_USER: &str = "prometheus";
/// Its password, which promcast reads from a file.
pub const BASIC_PASSWORD: &str = "promcast-e2e-password";
/// bcrypt of `BASIC_PASSWORD`, as Prometheus's `basic_auth_users` wants it.
pub const BASIC_PASSWORD_BCRYPT: &str =
    "$2b$10$CdZz4dzEO/IuBhOWPcNuyu3W2PkqxlRmKYyV32m6mnIwJpY6pJpyO";

/// `BASIC_USER:BASIC_PASSWORD` in base64, as basic auth sends it.
pub fn basic_credentials() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))
}

/// A fresh CA, a server certificate for 127.0.0.1 signed by it (used by
/// both Prometheus and promcast), and the secret files promcast reads.
pub struct Secrets {
    /// The CA certificate (PEM) every client trusts.
    pub ca: PathBuf,
    /// The server certificate and its key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate signed by the CA, and its key (PEM): what
    /// promcast, and the tests' client, present to Prometheus, which
    /// requires one.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The bearer token Prometheus sends promcast.
    pub token: String,
    /// The token, and `BASIC_PASSWORD`, in files as the configurations
    /// name them.
    pub token_file: PathBuf,
    pub password_file: PathBuf,
}

impl Secrets {
    /// Generates the CA, the server certificate and the secret files under
    /// `dir`.
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "promcast test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");
        let client_key = KeyPair::generate().expect("client key");
        let client_cert = CertificateParams::new(vec!["promcast-client".to_owned()])
            .expect("client params")
            .signed_by(&client_key, &issuer)
            .expect("sign client cert");
        let token = format!("token-{}", now_ms());
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        Self {
            ca: write("ca.pem", &ca_cert.pem()),
            cert: write("server.pem", &cert.pem()),
            key: write("server-key.pem", &key.serialize_pem()),
            client_cert: write("client.pem", &client_cert.pem()),
            client_key: write("client-key.pem", &client_key.serialize_pem()),
            token_file: write("token", &format!("{token}\n")),
            token,
            password_file: write("password", &format!("{BASIC_PASSWORD}\n")),
        }
    }

    /// promcast's `web:` and `upstream:` sections: HTTPS with the bearer
    /// token required, and basic auth over mutual TLS towards Prometheus.
    pub fn promcast_config(&self) -> String {
        format!(
            "web:\n  tls_server_config:\n    cert_file: {cert}\n    key_file: {key}\n\
             \x20 authorization:\n    credentials_file: {token}\n\
             upstream:\n  basic_auth:\n    username: {BASIC_USER}\n    password_file: {password}\n\
             \x20 tls_config:\n    ca_file: {ca}\n    cert_file: {client_cert}\n    key_file: {client_key}\n",
            cert = self.cert.display(),
            key = self.key.display(),
            token = self.token_file.display(),
            password = self.password_file.display(),
            ca = self.ca.display(),
            client_cert = self.client_cert.display(),
            client_key = self.client_key.display()
        )
    }

    /// Prometheus's web configuration: HTTPS that requires a client
    /// certificate from the CA, and basic auth.
    pub fn prometheus_web_config(&self) -> String {
        format!(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n\
             \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n\
             basic_auth_users:\n  {BASIC_USER}: {BASIC_PASSWORD_BCRYPT}\n",
            cert = self.cert.display(),
            key = self.key.display(),
            ca = self.ca.display()
        )
    }

    /// The client certificate and key, as reqwest presents them.
    pub fn client_identity(&self) -> reqwest::Identity {
        let mut pem = fs::read(&self.client_cert).expect("read client cert");
        pem.extend(fs::read(&self.client_key).expect("read client key"));
        reqwest::Identity::from_pem(&pem).expect("client identity")
    }

    /// A client that trusts the test CA, presents the client certificate
    /// and logs in to Prometheus.
    pub fn client(&self) -> reqwest::Client {
        let ca = fs::read(&self.ca).expect("read CA");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {}", basic_credentials())
                .parse()
                .expect("header value"),
        );
        reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
            .identity(self.client_identity())
            .default_headers(headers)
            .build()
            .expect("build HTTPS client")
    }
}
