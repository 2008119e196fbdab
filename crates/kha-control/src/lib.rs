//! kha-control: the control node. It owns projects, builds, jobs, the queue,
//! builders and the event stream in sled (`store`), hands jobs to builders
//! (`scheduler`), reads `.travis.yml` from per-project mirrors (`vcs`,
//! `trigger`), and holds it all in one [`App`]. Every operation people ask
//! for is one function of the service layer (`api`), which the gRPC admin
//! service (`grpc`) and HTTP (`http`) adapt to their transports.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod config;
pub mod github_login;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod retention;
pub mod scheduler;
pub mod secrets;
pub mod store;
pub mod task;
#[cfg(test)]
mod test_git;
pub mod trigger;
pub mod vcs;

use anyhow::Context;
use app::App;
use config::Config;
use kha_core::limits;
use kha_proto::admin::admin_service_server::AdminServiceServer;
use kha_proto::agent::agent_service_server::AgentServiceServer;
use std::io::IsTerminal;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Reads the admin token from `<data>/admin.token`, creating it (0600) on
/// first start.
pub fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()))
        }
        _ => {}
    }
    let token = auth::new_token("khaa_");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{}", token.expose())?;
    f.sync_all()?;
    info!(path = %path.display(), "created the admin token");
    Ok(token.into_inner())
}

/// While nobody has an account, prints the one-time link that creates the
/// first admin to `<data>/setup.url` (0600) and, when standard output is a
/// terminal, there too — never to the log, which others may read (a daemon's
/// standard output usually is a log).
fn announce_setup(app: &App, web: &str) -> anyhow::Result<()> {
    let path = app.cfg.data_dir.join("setup.url");
    let token = match api::auth::setup_token(app) {
        Ok(Some(t)) => t,
        Ok(None) => {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        Err(e) => anyhow::bail!("cannot make the setup link: {e}"),
    };
    let link = format!("{web}/setup/{}", token.expose());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{link}")?;
    if std::io::stdout().is_terminal() {
        println!("kha-control: no users yet. Create the first admin at {link}\n(one-time link, also in {}; or run `kha-control user add --admin NAME` with the control node stopped)", path.display());
    }
    info!(file = %path.display(), "no users yet: the one-time setup link is in this file");
    Ok(())
}

/// Runs the control node on already-bound listeners (gRPC, and HTTP for
/// webhooks) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    cfg: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            Some(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
        }
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key go together: set both or neither"),
    };
    let app = App::open(cfg, shutdown.clone())?;
    app.start();
    if let Some(a) = http_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        let _ = app.http_addr.set(a);
        announce_setup(&app, &app.web_url())?;
    }

    if let Some(l) = http_listener {
        let (router, stop) = (http::router(app.clone()), shutdown.clone());
        if let Ok(a) = l.local_addr() {
            info!(addr = %a, "serving HTTP (web UI, API, webhooks)");
        }
        // Sign-in limits count failures per client address: handlers see
        // the TCP peer.
        app.spawn("http", http::serve::serve(l, router, stop));
    }
    let agent = AgentServiceServer::new(grpc::agent::AgentSvc { app: app.clone() })
        .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);
    let admin = AdminServiceServer::new(grpc::admin::AdminSvc { app: app.clone() })
        .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);

    let addr = listener.local_addr()?;
    info!(%addr, "serving gRPC");
    // tonic applies tcp_nodelay only to listeners it binds itself: set it here,
    // or small answers wait for the client's delayed ACK (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming = grpc::incoming::guarded(incoming, shutdown.clone());
    let stop = shutdown.clone();
    let sched = app.sched.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("TLS certificate or key")?;
        info!("gRPC over TLS");
    }
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true)
        .add_service(agent)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            stop.cancelled().await;
            // Long-lived sessions would hold the server open: tell every
            // builder to go first.
            sched.disconnect_all("the control node is shutting down");
        });
    let mut server = std::pin::pin!(server);
    tokio::select! {
        r = &mut server => r.context("gRPC server")?,
        _ = shutdown.cancelled() => {
            if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
                tracing::warn!("some streams did not close in 5 s; stopping anyway");
            }
        }
    }
    app.stop(Duration::from_secs(5)).await;
    info!("control node stopped");
    Ok(())
}
