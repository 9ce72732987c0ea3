//! Connections: accepting them while a slot is free
//! (`limits.max_connections`), TLS per connection as the web configuration
//! stands, hyper's read timeouts, each request's handler in a task of its
//! own, and the drain at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{AppState, HttpResponse, route, text};
use crate::telemetry::Metrics;

/// How long connections get to deliver their last answers once the
/// reads in flight at a shutdown signal have finished.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a request's handler in a task of its own, so that a bug that
/// panics there costs that request a 500 (counted, and logged by the panic
/// hook), not the connection or other requests.
async fn contained(
    metrics: &Metrics,
    handler: impl Future<Output = HttpResponse> + Send + 'static,
) -> HttpResponse {
    match tokio::spawn(handler).await {
        Ok(response) => response,
        Err(e) => {
            metrics.handler_panics.inc();
            tracing::error!(error = %e, "request handler failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the request's handler failed (a bug: promcast's log has the panic)\n",
            )
        }
    }
}

/// Serves HTTP, or HTTPS as the web configuration says, on `listener` until `shutdown`
/// completes; then drains: `/-/ready` turns 503 (so that orchestrators
/// route elsewhere) and new reads are refused while connections are still
/// accepted, until the reads in flight are answered or
/// `limits.request_timeout` has passed, after which connections get
/// [`CLOSE_TIMEOUT`] to deliver their answers.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = &state.ctx.config.limits;
    // Accepting waits for a free slot, as Prometheus's listener does: what
    // is beyond the cap waits in the kernel's queue, costing nothing here.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let accept = || accept_forever(&listener, &state, &graceful, &slots);
    tokio::select! {
        () = accept() => {}
        () = shutdown => {}
    }
    state.draining.store(true, Ordering::Relaxed);
    tracing::info!(
        reads = state.reads_in_flight.load(Ordering::SeqCst),
        "shutting down: not ready, answering the reads in flight"
    );
    let reads_done = async {
        while state.reads_in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = accept() => {}
        done = tokio::time::timeout(limits.request_timeout.to_std(), reads_done) => {
            if done.is_err() {
                tracing::warn!("reads still in flight after limits.request_timeout: closing anyway");
            }
        }
    }
    if tokio::time::timeout(CLOSE_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections did not close within {CLOSE_TIMEOUT:?}");
    }
}

/// Accepts connections and serves each in a task of its own, watched by
/// `graceful`, while a slot is free; never returns.
async fn accept_forever(
    listener: &TcpListener,
    state: &Arc<AppState>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    slots: &Arc<tokio::sync::Semaphore>,
) {
    let read_timeout = state.ctx.config.limits.read_timeout.to_std();
    loop {
        let Ok(slot) = Arc::clone(slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                continue;
            }
        };
        // The TLS in force when the connection came: a reload applies to
        // connections after it.
        let tls = state.web.current().tls.clone();
        let state = Arc::clone(state);
        let service = service_fn(move |req| {
            let state = Arc::clone(&state);
            async move {
                let metrics = Arc::clone(&state);
                Ok::<_, Infallible>(contained(&metrics.ctx.metrics, route(state, req)).await)
            }
        });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            // The header timeout also runs while a connection waits for its
            // next request, so it closes idle connections too.
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(read_timeout);
            let result =
                match tls {
                    None => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => {
                                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::info!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    /// A handler that panics answers 500 with a reason and is counted; the
    /// next request is answered as usual.
    #[tokio::test]
    async fn a_panicking_handler_answers_500() {
        let metrics = Metrics::new();
        let response = contained(&metrics, async { panic!("a bug") }).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("handler failed"));
        assert_eq!(metrics.handler_panics.get(), 1);
        let fine = contained(&metrics, async { text(StatusCode::OK, "ok") }).await;
        assert_eq!(fine.status(), StatusCode::OK);
        assert!(metrics.encode().contains("promcast_handler_panics_total 1"));
    }
}
