//! TLS and authentication on both hops between a real Prometheus and
//! promcast: Prometheus serves HTTPS with basic auth (its own web config),
//! promcast serves HTTPS with a bearer token, Prometheus reads from promcast
//! with `tls_config` + `authorization`, and promcast reads its history from
//! Prometheus with `tls_config` + `basic_auth`, the secrets in files.

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

use common::exposition::metric_sum;
use common::family::PREDICTED;
use common::harness::Harness;
use common::secrets::basic_credentials;

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
