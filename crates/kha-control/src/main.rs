//! `kha-control`: the control node daemon.

use anyhow::Context;
use clap::Parser;
use kha_control::config::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "kha-control",
    version,
    about = "kha's control node: projects, builds, the job queue and builders"
)]
struct Args {
    /// TOML config file (every key optional; see deploy/control.toml).
    #[arg(long, short, env = "KHA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, logs, mirrors, admin.token).
    #[arg(long, env = "KHA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address for builders and the CLI.
    #[arg(long, env = "KHA_LISTEN")]
    listen: Option<String>,
    /// HTTP listen address for webhooks ("off" to disable).
    #[arg(long, env = "KHA_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Builder heartbeat interval in milliseconds (leases last three).
    #[arg(long, env = "KHA_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Times a lost job is run again before it is given up.
    #[arg(long, env = "KHA_MAX_ATTEMPTS")]
    max_attempts: Option<u32>,
    /// TLS certificate chain (PEM) for the gRPC listener.
    #[arg(long, env = "KHA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "KHA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KHA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,h2=warn,hyper=warn,tonic=warn,tower=warn,sled=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Writes the bound addresses to `<data_dir>/grpc.addr` and `http.addr`
/// (through a temp name, so a reader never sees half a file): with port 0
/// in `--listen`, this is how a supervisor or a test learns the port.
fn publish_addrs(dir: &Path, grpc: SocketAddr, http: Option<SocketAddr>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, addr) in [("grpc.addr", Some(grpc)), ("http.addr", http)] {
        let path = dir.join(name);
        match addr {
            Some(addr) => {
                let tmp = dir.join(format!("{name}.tmp"));
                std::fs::write(&tmp, format!("{addr}\n"))
                    .with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming to {}", path.display()))?;
                tracing::info!(%addr, file = %path.display(), "listening");
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, file = %path.display(), "cannot remove a stale address file");
                }
                _ => {}
            },
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing();
    let mut cfg = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.grpc_listen = l;
    }
    if let Some(h) = args.http_listen {
        cfg.http_listen = h;
    }
    if let Some(h) = args.heartbeat_ms {
        cfg.heartbeat_ms = h.max(50);
    }
    if let Some(m) = args.max_attempts {
        cfg.max_attempts = m.max(1);
    }
    if args.tls_cert.is_some() {
        cfg.tls_cert = args.tls_cert;
        cfg.tls_key = args.tls_key;
    }
    let listener = tokio::net::TcpListener::bind(&cfg.grpc_listen)
        .await
        .with_context(|| format!("binding {}", cfg.grpc_listen))?;
    let http = match cfg.http_listen.as_str() {
        "" | "off" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
    };
    publish_addrs(
        &cfg.data_dir,
        listener
            .local_addr()
            .context("the gRPC listener's address")?,
        http.as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .context("the HTTP listener's address")?,
    )?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        stop.cancel();
    });
    kha_control::run(listener, http, cfg, shutdown).await
}
