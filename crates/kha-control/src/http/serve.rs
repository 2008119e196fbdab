//! The HTTP listener's accept loop: the router on hyper's HTTP/1 server,
//! with a limit on how long a client may take to send a request's headers.
//! `axum::serve` sets none, so a client that sends a header line now and
//! then (or nothing after connecting) held a connection and a task for as
//! long as it liked; enough of them starve the web UI and the webhooks.
//! Responses may stream for as long as they need (log tails, events).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::{debug, warn};

/// How long a client may take from the start of a request to the end of
/// its headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop`; then each connection ends
/// after the request it is answering.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // Dropped when the loop ends: every connection's task sees it.
    let (closing, closed) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some
                    // to be given back rather than spin.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let svc = match make.call(peer).await {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let svc = TowerToHyperService::new(svc);
        let http = http.clone();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = closed.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(closing);
}
