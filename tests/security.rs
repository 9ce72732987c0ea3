//! TLS and authentication on both hops between a real Prometheus and
//! promcast: Prometheus serves HTTPS that requires a client certificate,
//! with basic auth (its own web config), promcast serves HTTPS with a bearer
//! token, Prometheus reads from promcast with `tls_config` +
//! `authorization`, and promcast reads its history from Prometheus with
//! `tls_config` (its client certificate) + `basic_auth`, the secrets in
//! files. Then promcast alone behind a Prometheus web configuration file:
//! bcrypt users on every protected path, response headers, reloads, and
//! client certificates.

mod common {
    pub mod exposition;
    pub mod family;
    pub mod harness;
    pub mod http;
    pub mod process;
    pub mod prometheus;
    pub mod running;
    pub mod scenario;
    pub mod secrets;
}

use std::fs;
use std::path::Path;
use std::time::Duration;

use prost::Message as _;

use common::exposition::metric_sum;
use common::family::PREDICTED;
use common::harness::Harness;
use common::process::{ChildGuard, free_port, log_section, spawn_promcast_with, wait_healthy};
use common::secrets::{BASIC_PASSWORD, BASIC_USER, Secrets, basic_credentials};

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_auth_between_prometheus_and_promcast() {
    let tmp = tempfile::tempdir().expect("create temporary directory");
    // Ready means promcast's probe read reached Prometheus through TLS and
    // basic auth.
    let (mut h, history) = Harness::running(tmp.path(), true).await;
    let promcast_port = h.promcast_port;

    // Prometheus → promcast: remote read over TLS with the bearer token,
    // promcast → Prometheus: the history behind the forecast.
    let query = format!("{PREDICTED}{{horizon=\"1h\"}}");
    let answer = h.instant_series(&query, history.end, 3).await;
    for series in &answer.series {
        let value = series.single_value();
        assert!(
            value.is_finite() && (0.0..=150.0).contains(&value),
            "{query}: implausible forecast {value} for {:?}{}",
            series.labels,
            h.diag()
        );
    }
    h.wait_promcast_scraped().await;

    let secrets = h.secrets.as_ref().expect("secured harness");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&secrets.ca).expect("read CA"))
        .expect("CA PEM");
    let bare = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .add_root_certificate(ca)
        .build()
        .expect("client");
    let metrics_url = format!("{}/metrics", h.promcast_url());
    let status_with = |authorization: Option<String>| {
        let mut request = bare.get(&metrics_url);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        async move {
            let response = request.send().await.expect("GET /metrics over TLS");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (
                response.status().as_u16(),
                challenge,
                response.text().await.unwrap_or_default(),
            )
        }
    };

    // Prometheus requires a client certificate: a client without one
    // does not get through, so promcast's reads above presented its own.
    let no_certificate = bare
        .get(format!("{}/api/v1/status/buildinfo", h.prom_url()))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .send()
        .await;
    assert!(
        no_certificate.is_err(),
        "Prometheus must refuse a client without a certificate: {no_certificate:?}"
    );

    let (status, challenge, _) = status_with(None).await;
    assert_eq!(status, 401, "no credentials must be refused{}", h.diag());
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"promcast\""));
    let (status, _, _) = status_with(Some("Bearer wrong-token".into())).await;
    assert_eq!(status, 401, "a wrong token must be refused{}", h.diag());
    let (status, _, _) = status_with(Some(format!("Basic {}", basic_credentials()))).await;
    assert_eq!(
        status,
        401,
        "basic auth is not configured on promcast{}",
        h.diag()
    );

    let (status, _, metrics) = status_with(Some(format!("Bearer {}", secrets.token))).await;
    assert_eq!(
        status,
        200,
        "the configured token must be accepted{}",
        h.diag()
    );
    let reads = metric_sum(
        &metrics,
        "promcast_http_requests_total",
        &["path=\"/api/v1/read\"", "code=\"200\""],
    );
    assert!(
        reads >= 1.0,
        "Prometheus's reads reached promcast: {reads}{}",
        h.diag()
    );
    let upstream_errors = metric_sum(&metrics, "promcast_upstream_errors_total", &[]);
    assert_eq!(
        upstream_errors,
        0.0,
        "promcast read Prometheus without errors{}",
        h.diag()
    );
    let refused = metric_sum(
        &metrics,
        "promcast_http_requests_total",
        &["path=\"unauthorized\"", "code=\"401\""],
    );
    assert!(
        refused >= 3.0,
        "refused requests are counted: {refused}{}",
        h.diag()
    );

    // Health probes stay open for orchestrators; plain HTTP gets nothing.
    let healthy = bare
        .get(format!("{}/-/healthy", h.promcast_url()))
        .send()
        .await
        .expect("GET /-/healthy");
    assert_eq!(healthy.status().as_u16(), 200);
    let plain = bare
        .get(format!("http://127.0.0.1:{promcast_port}/metrics"))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status().as_u16() != 200),
        "plain HTTP must not be served on the TLS port: {plain:?}"
    );
}

/// promcast alone, on the embedded demo, behind the web configuration
/// file at `web`: its HTTPS base URL, and the process.
async fn behind_web_config(
    dir: &Path,
    web: &Path,
    client: &reqwest::Client,
) -> (String, ChildGuard) {
    let port = free_port();
    let mut promcast = spawn_promcast_with(
        dir,
        port,
        None,
        "",
        &dir.join("promcast.log"),
        &[format!("--web.config.file={}", web.display())],
    );
    let base = format!("https://127.0.0.1:{port}");
    wait_healthy(client, &base, &mut promcast).await;
    (base, promcast)
}

/// A client that trusts the test CA, presenting `identity` if given.
fn tls_client(secrets: &Secrets, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&fs::read(&secrets.ca).expect("read CA")).expect("CA");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .add_root_certificate(ca);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().expect("client")
}

/// A Prometheus web configuration file: promcast's certificate, `extra`
/// TLS lines, response headers and one user, alice, with `password`.
fn write_web_config(path: &Path, secrets: &Secrets, extra_tls: &str, password: &str) {
    let hash = bcrypt::hash(password, 4).expect("bcrypt");
    let text = format!(
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n{extra_tls}\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n\
         basic_auth_users:\n  alice: {hash}\n",
        cert = secrets.cert.display(),
        key = secrets.key.display(),
    );
    fs::write(path, text).expect("write the web config");
}

/// A `--web.config.file` in Prometheus's format guards every protected
/// path (remote read, federation, the models API, the status page,
/// metrics) against no credentials, a wrong password, an unknown user and
/// a token; adds its headers to every answer; leaves the probes open; and
/// is reloaded on SIGHUP, a broken one keeping the previous in force.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_config_file_guards_every_path_and_reloads() {
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let secrets = Secrets::generate(tmp.path());
    let web = tmp.path().join("web.yml");
    write_web_config(&web, &secrets, "", "first-password");
    let client = tls_client(&secrets, None);
    let (base, promcast) = behind_web_config(tmp.path(), &web, &client).await;

    let read = prompb_read("predicted_demo_cpu_usage_percent");
    let send = |path: &str, user: Option<(&str, &str)>| {
        let mut request = if path == "/api/v1/read" {
            client
                .post(format!("{base}{path}"))
                .header("content-encoding", "snappy")
                .body(read.clone())
        } else {
            client.get(format!("{base}{path}"))
        };
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        async move {
            let response = request.send().await.expect("a request over TLS");
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
            };

            (
                response.status().as_u16(),
                header("www-authenticate"),
                header("x-frame-options"),
            )
        }
    };
    let paths = [
        "/api/v1/read",
        "/federate?match[]=predicted_demo_cpu_usage_percent",
        "/api/v1/models",
        "/",
        "/metrics",
    ];
    for path in paths {
        for (who, user) in [
            ("no credentials", None),
            ("a wrong password", Some(("alice", "second-password"))),
            ("an unknown user", Some(("mallory", "first-password"))),
        ] {
            let (status, challenge, frame) = send(path, user).await;
            assert_eq!(status, 401, "{path} with {who}{}", log_section(&promcast));
            assert_eq!(challenge.as_deref(), Some("Basic realm=\"promcast\""));
            assert_eq!(frame.as_deref(), Some("deny"), "headers on refusals too");
        }
        let (status, _, frame) = send(path, Some(("alice", "first-password"))).await;
        assert_eq!(status, 200, "{path} as alice{}", log_section(&promcast));
        assert_eq!(frame.as_deref(), Some("deny"));
    }
    let token = client
        .get(format!("{base}/metrics"))
        .bearer_auth("first-password")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(token.status().as_u16(), 401, "a token is no password");
    for probe in ["/-/healthy", "/-/ready"] {
        let (status, ..) = send(probe, None).await;
        assert_ne!(status, 401, "{probe} stays open");
    }

    // A new password, then SIGHUP: the new one works, the old one not.
    write_web_config(&web, &secrets, "", "second-password");
    hang_up(&promcast);
    let mut reloaded = false;
    for _ in 0..100 {
        if send("/metrics", Some(("alice", "second-password"))).await.0 == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reloaded,
        "the new password after SIGHUP{}",
        log_section(&promcast)
    );
    assert_eq!(
        send("/metrics", Some(("alice", "first-password"))).await.0,
        401
    );

    // A broken file is refused and counted; what was in force stays.
    fs::write(&web, "basic_auth_users:\n  alice: not-a-bcrypt-hash\n").expect("write");
    hang_up(&promcast);
    let mut failures = 0.0;
    for _ in 0..100 {
        let response = client
            .get(format!("{base}/metrics"))
            .basic_auth("alice", Some("second-password"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200, "the previous config stays");
        let text = response.text().await.unwrap_or_default();
        failures = metric_sum(
            &text,
            "promcast_web_config_reloads_total",
            &["result=\"failure\""],
        );
        if failures >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failures >= 1.0,
        "the failed reload is counted{}",
        log_section(&promcast)
    );
}

/// With `client_auth_type: RequireAndVerifyClientCert`, promcast answers
/// only clients with a certificate from its client CA.
#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_when_configured() {
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let secrets = Secrets::generate(tmp.path());
    let web = tmp.path().join("web.yml");
    let require = format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        secrets.ca.display()
    );
    write_web_config(&web, &secrets, &require, "pw");
    let with_certificate = tls_client(&secrets, Some(secrets.client_identity()));
    let (base, promcast) = behind_web_config(tmp.path(), &web, &with_certificate).await;

    let other_ca = tempfile::tempdir().expect("create temporary directory");
    let stranger = Secrets::generate(other_ca.path());
    for (who, client) in [
        ("no certificate", tls_client(&secrets, None)),
        (
            "a certificate from another CA",
            tls_client(&secrets, Some(stranger.client_identity())),
        ),
    ] {
        let refused = client.get(format!("{base}/-/healthy")).send().await;
        assert!(
            refused.is_err(),
            "a client with {who} must not get through: {refused:?}{}",
            log_section(&promcast)
        );
    }
    let healthy = with_certificate
        .get(format!("{base}/-/healthy"))
        .send()
        .await
        .expect("a client with the CA's certificate");
    assert_eq!(healthy.status().as_u16(), 200);
}

/// A remote-read body asking for one synthetic series.
fn prompb_read(name: &str) -> Vec<u8> {
    let now = promcast::calendar::now_ms();
    let request = promcast::prompb::ReadRequest {
        queries: vec![promcast::prompb::Query {
            start_timestamp_ms: now - 300_000,
            end_timestamp_ms: now,
            matchers: vec![promcast::prompb::LabelMatcher {
                name: "__name__".into(),
                value: name.into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy")
}

/// Sends promcast SIGHUP.
fn hang_up(promcast: &ChildGuard) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &promcast.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}
