//! kha-control: the control node. It owns projects, builds, jobs, the queue
//! and builders in sled (`store`), hands jobs to builders (`scheduler`),
//! serves builders and admins over gRPC (`grpc`), and reads `.travis.yml`
//! from per-project git mirrors (`vcs`, `trigger`).

pub mod auth;
pub mod config;
pub mod grpc;
pub mod http;
pub mod scheduler;
pub mod store;
pub mod task;
pub mod trigger;
pub mod vcs;

use anyhow::Context;
use config::Config;
use kha_core::{limits, SystemClock};
use kha_proto::admin::admin_service_server::AdminServiceServer;
use kha_proto::agent::agent_service_server::AgentServiceServer;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
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
    writeln!(f, "{}", token.0)?;
    f.sync_all()?;
    info!(path = %path.display(), "created the admin token");
    Ok(token.0)
}

/// Runs the control node on already-bound listeners (gRPC, and HTTP for
/// webhooks) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    cfg: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let data = cfg.data_dir.clone();
    std::fs::create_dir_all(&data)
        .with_context(|| format!("creating data dir {}", data.display()))?;
    info!(data_dir = %data.display(), "opening the store");
    let store = store::Store::open(&data.join("db")).context("opening the database")?;
    let logs = Arc::new(
        store::logs::LogStore::open(data.join("logs"), cfg.log_cap_bytes)
            .context("opening the log directory")?,
    );
    let admin_hash = auth::hash(&admin_token(&data)?);
    let mirrors = Arc::new(vcs::Mirrors::new(data.join("mirrors")));
    let sched = scheduler::Scheduler::new(store, logs, Arc::new(SystemClock), cfg.clone())?;

    let sweeper = {
        let (sched, shutdown) = (sched.clone(), shutdown.clone());
        task::spawn("sweeper", async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => sched.sweep().await,
                }
            }
        })
    };

    let agent = AgentServiceServer::new(grpc::agent::AgentSvc {
        sched: sched.clone(),
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);
    let triggers = Arc::new(trigger::Triggerer::new(sched.clone(), mirrors.clone()));
    let poller = task::spawn("poller", vcs::poll::run(triggers.clone(), shutdown.clone()));
    let http_server = http_listener.map(|l| {
        let (app, stop) = (http::router(triggers.clone()), shutdown.clone());
        if let Ok(a) = l.local_addr() {
            info!(addr = %a, "serving HTTP (webhooks)");
        }
        task::spawn("http", async move {
            let r = axum::serve(l, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "HTTP server failed");
            }
        })
    });
    let admin = AdminServiceServer::new(grpc::admin::AdminSvc {
        sched: sched.clone(),
        mirrors,
        triggers: triggers.clone(),
        admin_hash,
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(limits::MAX_MESSAGE_BYTES);

    let addr = listener.local_addr()?;
    info!(%addr, "serving gRPC");
    // tonic applies tcp_nodelay only to listeners it binds itself: set it here,
    // or small answers wait for the client's delayed ACK (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop = shutdown.clone();
    let sched2 = sched.clone();
    let mut builder = tonic::transport::Server::builder();
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key));
            builder = builder.tls_config(tls).context("TLS certificate or key")?;
            info!("gRPC over TLS");
        }
        (None, None) => {}
        _ => anyhow::bail!("tls_cert and tls_key go together: set both or neither"),
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
            sched2.disconnect_all("the control node is shutting down");
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
    let _ = sweeper.await;
    let _ = poller.await;
    if let Some(h) = http_server {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
    sched.store.durable().await.ok();
    info!("control node stopped");
    Ok(())
}
