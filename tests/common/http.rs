//! The tests' HTTP client: no proxy (the environment may set one; all
//! traffic stays on 127.0.0.1), a deadline on every request, and the GETs
//! that probe and read pages.

use std::time::Duration;

/// Per-request limit: above Prometheus's `remote_timeout` (1m) so that a slow
/// promcast shows up as a Prometheus warning rather than a client timeout.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(150);

/// No proxy (the environment may set one; everything here is loopback) and a
/// bounded time per request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("build HTTP client")
}

/// The status of a GET, or None if the server cannot be reached.
pub async fn get_status(client: &reqwest::Client, url: &str) -> Option<u16> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Status and body text of a GET.
#[allow(dead_code)] // the deploy and security suites read no page as text
pub async fn get_text(
    client: &reqwest::Client,
    url: &str,
) -> Result<(u16, String), reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
