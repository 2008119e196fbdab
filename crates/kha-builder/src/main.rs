//! `kha-builder`: the builder daemon.

use anyhow::Context;
use clap::{Parser, Subcommand};
use kha_builder::config::{Config, ExecutorKind};
use kha_builder::executor::{host::HostExecutor, lxc, Executor};
use kha_core::Secret;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "kha-builder",
    version,
    about = "kha's builder: runs jobs for a control node in lxc containers"
)]
struct Args {
    /// TOML config file (every key optional; see deploy/builder.toml).
    #[arg(long, short, env = "KHA_BUILDER_CONFIG")]
    config: Option<PathBuf>,
    /// Control node address.
    #[arg(long, env = "KHA_CONTROL")]
    control: Option<String>,
    /// Extra CA certificate (PEM) to trust for an https:// control node.
    #[arg(long, env = "KHA_CA")]
    ca: Option<PathBuf>,
    /// Enrolment token (needed only the first time).
    #[arg(long, env = "KHA_ENROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, env = "KHA_BUILDER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "KHA_BUILDER_NAME")]
    name: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "KHA_SLOTS")]
    slots: Option<u32>,
    /// Extra label (key=value); repeat for more.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Executor: lxc, or host (trusted local use only).
    #[arg(long, value_enum, env = "KHA_EXECUTOR")]
    executor: Option<ExecutorKind>,
    /// Confirms that the host executor may run jobs as plain processes.
    #[arg(long)]
    i_trust_every_job: bool,
    /// Protocol major version to announce (for testing refusals).
    #[arg(long, hide = true, default_value_t = kha_core::PROTOCOL_MAJOR)]
    protocol_major: u32,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Container images jobs run in.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Remove containers and workspaces left by an earlier run, then exit.
    Cleanup,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Create (or refresh) an image: a rootfs that binds the host's
    /// toolchains read-only. Quick, and downloads nothing.
    Create {
        #[arg(default_value = "default")]
        name: String,
    },
    List,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KHA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,h2=warn,hyper=warn,tonic=warn,tower=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    if let Some(c) = args.control {
        cfg.control = c;
    }
    if let Some(ca) = args.ca {
        cfg.ca = Some(ca);
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(n) = args.name {
        cfg.name = n;
    }
    if let Some(s) = args.slots {
        cfg.slots = s.max(1);
    }
    if let Some(e) = args.executor {
        cfg.executor = e;
    }
    cfg.labels.extend(args.labels);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let images = cfg.data_dir.join("images");
    match &args.cmd {
        Some(Cmd::Image(ImageCmd::Create { name })) => {
            let t = std::time::Instant::now();
            let dir = lxc::create_image(&images, name)?;
            println!(
                "image {name} ready at {} ({} ms)",
                dir.display(),
                t.elapsed().as_millis()
            );
            return Ok(());
        }
        Some(Cmd::Image(ImageCmd::List)) => {
            for l in lxc::LxcExecutor::new(images, cfg.data_dir.join("lxc")).labels() {
                if let Some(i) = l.strip_prefix("image=") {
                    println!("{i}");
                }
            }
            return Ok(());
        }
        Some(Cmd::Cleanup) | None => {}
    }
    let executor: Arc<dyn Executor> = match cfg.executor {
        ExecutorKind::Lxc => Arc::new(lxc::LxcExecutor::new(images, cfg.data_dir.join("lxc"))),
        ExecutorKind::Host => {
            if !args.i_trust_every_job {
                anyhow::bail!("the host executor runs every job as a plain process with this builder's privileges; pass --i-trust-every-job if that is what you want");
            }
            tracing::warn!("HOST EXECUTOR: jobs run unsandboxed with this builder's privileges; use only for trusted code");
            Arc::new(HostExecutor::new())
        }
    };
    if matches!(args.cmd, Some(Cmd::Cleanup)) {
        let n = executor.cleanup_leftovers()?;
        for d in ["work", "scratch", "spool"] {
            let p = cfg.data_dir.join(d);
            kha_builder::remove_dir(&p).with_context(|| format!("removing {}", p.display()))?;
        }
        println!("removed {n} leftover container(s)");
        return Ok(());
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let signals = kha_builder::task::spawn("signals", async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; stopping the builder");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    let result = kha_builder::run(
        cfg,
        args.token.map(Secret::from),
        executor,
        args.protocol_major,
        rx,
    )
    .await;
    signals.abort();
    if let Err(e) = signals.await {
        if e.is_panic() {
            tracing::warn!(error = %e, "the signal task panicked");
        }
    }
    result
}
