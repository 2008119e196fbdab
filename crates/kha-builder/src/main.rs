//! `kha-builder`: the builder daemon.

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use kha_builder::config::{Config, ExecutorKind};
use kha_builder::executor::{host::HostExecutor, lxc, Executor};
use kha_builder::workspace::tmpfs::JobDirs;
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
    /// Enrolment token (needed only the first time). On the command line
    /// it is visible to every local user in `ps`: prefer KHA_ENROL_TOKEN
    /// or --token-file.
    #[arg(long, env = "KHA_ENROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file whose first line is the enrolment token.
    #[arg(long, env = "KHA_ENROL_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    #[arg(long, env = "KHA_BUILDER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Append the daemon's log lines to this file (reopened on SIGHUP, for
    /// logrotate) instead of standard error (where journald keeps them).
    /// KHA_LOG_FORMAT=json writes them as JSON lines.
    #[arg(long, env = "KHA_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Serve Prometheus metrics at /metrics on this address (e.g.
    /// 127.0.0.1:9101; port 0 picks one and writes it to
    /// DATA_DIR/metrics.addr).
    #[arg(long, env = "KHA_BUILDER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Where images are (default: DATA_DIR/images).
    #[arg(long, env = "KHA_BUILDER_IMAGES_DIR")]
    images_dir: Option<PathBuf>,
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
    /// Size cap (MiB) of the tmpfs holding the jobs' workspaces; 0: on disk.
    #[arg(long, env = "KHA_WORKSPACE_TMPFS_MIB")]
    workspace_tmpfs_mib: Option<u64>,
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
    /// The toolchains jobs can ask for.
    #[command(subcommand)]
    Toolchain(ToolchainCmd),
    /// Remove containers and workspaces left by an earlier run, then exit.
    Cleanup,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Create an image. Without --suite: (re)create a quick image that
    /// shares the host's /usr read-only (milliseconds, downloads nothing).
    /// With --suite: build a full Debian rootfs with mmdebstrap from
    /// Debian's mirror, for any architecture Debian and qemu-user-static
    /// support (--arch).
    Create {
        #[arg(default_value = "default")]
        name: String,
        /// Debian suite of a full image: bookworm, trixie, …
        #[arg(long)]
        suite: Option<String>,
        /// Packages to install besides the variant's ("erlang-nox rebar3").
        #[arg(long, default_value = "", requires = "suite")]
        packages: String,
        /// Debian architecture (amd64, arm64, armhf, ppc64el, s390x, …);
        /// default: the host's.
        #[arg(long, requires = "suite")]
        arch: Option<String>,
        /// Debian mirror.
        #[arg(long, requires = "suite")]
        mirror: Option<String>,
        /// mmdebstrap variant (default: apt, the Essential packages and apt).
        #[arg(long, requires = "suite")]
        variant: Option<String>,
    },
    /// Name, kind, suite, architecture, size and state of each image.
    List,
    /// Remove an image (only the link, if it is a link to one elsewhere).
    Remove { name: String },
}

#[derive(Subcommand)]
enum ToolchainCmd {
    /// Every toolchain found: kind, name, version, path, labels.
    List,
}

fn main() -> anyhow::Result<()> {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A token on the command line is there for every local user to read.
    let token_in_argv = matches.value_source("token") == Some(ValueSource::CommandLine);
    let log_file = kha_core::logging::init(
        "info,h2=warn,hyper=warn,tonic=warn,tower=warn",
        args.log_file.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
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
    if let Some(d) = args.images_dir {
        cfg.images_dir = Some(d);
    }
    if let Some(m) = args.metrics_listen {
        cfg.metrics_listen = m;
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
    if let Some(m) = args.workspace_tmpfs_mib {
        cfg.workspace_tmpfs_mib = m;
    }
    cfg.labels.extend(args.labels);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let images = cfg.images();
    match &args.cmd {
        Some(Cmd::Image(ImageCmd::Create {
            name,
            suite,
            packages,
            arch,
            mirror,
            variant,
        })) => {
            let t = std::time::Instant::now();
            let dir = match suite {
                None => lxc::create_image(&images, name)?,
                Some(suite) => {
                    let spec = lxc::DebianSpec::new(
                        suite,
                        arch.as_deref(),
                        packages,
                        mirror.as_deref(),
                        variant.as_deref(),
                    )
                    .map_err(|e| anyhow::anyhow!(e))?;
                    lxc::create_debian(&images, name, &spec)?
                }
            };
            println!(
                "image {name} ready at {} ({:.1} s)",
                dir.display(),
                t.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Some(Cmd::Image(ImageCmd::List)) => {
            print_images(&images);
            return Ok(());
        }
        Some(Cmd::Image(ImageCmd::Remove { name })) => {
            lxc::remove_image(&images, name)?;
            println!("image {name} removed");
            return Ok(());
        }
        Some(Cmd::Toolchain(ToolchainCmd::List)) => {
            let ex = lxc::LxcExecutor::new(images, cfg.data_dir.join("lxc"));
            print_toolchains(&cfg, &ex);
            return Ok(());
        }
        Some(Cmd::Cleanup) | None => {}
    }
    if cfg.executor == ExecutorKind::Lxc {
        // Foreign images run under qemu: its handlers must be registered
        // before the labels say arch=….
        for e in lxc::entries(&images) {
            let Some(arch) = e.meta.ok().and_then(|m| m.arch()) else {
                continue;
            };
            if !arch.is_native() {
                if let Err(why) = lxc::binfmt::ensure(arch.qemu) {
                    tracing::warn!(image = %e.name, reason = %why, "emulation not available");
                }
            }
        }
    }
    let executor: Arc<dyn Executor> = match cfg.executor {
        ExecutorKind::Lxc => {
            let mut ex = lxc::LxcExecutor::new(images, cfg.data_dir.join("lxc"));
            ex.memory_bytes = (cfg.memory_mib > 0).then_some(cfg.memory_mib << 20);
            ex.pids = (cfg.pids > 0).then_some(cfg.pids);
            ex.cpu_millis = cfg.cpu_millis();
            if cfg.job_network {
                let blocked = control_addresses(&cfg.control);
                if blocked.is_empty() {
                    tracing::warn!(control = %cfg.control, "cannot resolve the control node's address: jobs with network are not kept from it");
                }
                let net = lxc::net::JobNet::new(&cfg.job_bridge, &cfg.job_subnet, blocked)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                ex.job_net = Some(Arc::new(net));
            }
            tracing::info!(
                memory_mib = cfg.memory_mib,
                pids = cfg.pids,
                cpu_millis = ex.cpu_millis.unwrap_or(0),
                "limits of each job (0: none)"
            );
            Arc::new(ex)
        }
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
    let token = match &args.token_file {
        Some(p) => Some(kha_builder::identity::read_token_file(p).map_err(anyhow::Error::msg)?),
        None => args.token.map(Secret::from),
    };
    if token_in_argv {
        tracing::warn!("the enrolment token is on the command line, where every local user can read it (ps); give it in KHA_ENROL_TOKEN or --token-file instead");
    }
    // Before the runtime starts its threads: the mount namespace is the
    // calling thread's (see `JobDirs::setup`).
    let dirs = JobDirs::setup(&cfg.data_dir, cfg.workspace_tmpfs_mib);
    // A builder's async work is its session and, per job, a log pump and
    // a shipper: a few workers do, whatever the host's core count (tokio
    // starts one per core: each costs ~60 KiB resident when idle, a stack
    // and a malloc arena). Its blocking work (checkouts, container setup,
    // cleanup) comes in bursts per job; an idle builder needs no
    // blocking threads kept for long.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(
            cfg,
            dirs.clone(),
            token,
            executor,
            args.protocol_major,
            log_file,
        ));
    dirs.unmount();
    result
}

/// Runs the builder until it stops, with the signals that stop it.
async fn serve(
    cfg: Config,
    dirs: JobDirs,
    token: Option<Secret>,
    executor: Arc<dyn Executor>,
    protocol_major: u32,
    log_file: Option<Arc<kha_core::logging::LogFile>>,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let signals = kha_builder::task::spawn("signals", async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int, mut hup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => (t, i, h),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT/SIGHUP; stopping the builder");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    kha_core::logging::hangup(log_file.as_deref());
                    continue;
                }
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    let result = kha_builder::run(cfg, dirs, token, executor, protocol_major, rx).await;
    signals.abort();
    if let Err(e) = signals.await {
        if e.is_panic() {
            tracing::warn!(error = %e, "the signal task panicked");
        }
    }
    result
}

fn print_images(images: &std::path::Path) {
    println!(
        "{:<20} {:<6} {:<10} {:<8} {:>9}  STATE",
        "NAME", "KIND", "SUITE", "ARCH", "SIZE"
    );
    let ex = lxc::LxcExecutor::new(images.to_path_buf(), std::path::PathBuf::new());
    let inventory = ex.images();
    for e in lxc::entries(images) {
        let (kind, suite, arch) = match &e.meta {
            Ok(m) => (
                format!("{:?}", m.kind).to_lowercase(),
                if m.suite.is_empty() {
                    "-".to_string()
                } else {
                    m.suite.clone()
                },
                m.arch.clone(),
            ),
            Err(_) => ("?".into(), "?".into(), "?".into()),
        };
        let state = inventory
            .iter()
            .find(|i| i.name == e.name)
            .and_then(|i| i.unusable.clone())
            .unwrap_or_else(|| "usable".into());
        let mib = lxc::disk_usage(&e.dir.join("rootfs")) as f64 / (1024.0 * 1024.0);
        println!(
            "{:<20} {:<6} {:<10} {:<8} {:>7.1}Mi  {state}",
            e.name, kind, suite, arch, mib
        );
    }
}

fn print_toolchains(cfg: &Config, ex: &dyn Executor) {
    use kha_builder::toolchain::discover;
    println!(
        "{:<12} {:<36} {:<16} {:<40} LABELS",
        "KIND", "NAME", "VERSION", "PATH"
    );
    let host = discover::host(&cfg.toolchains);
    let row = |kind: &str, t: &kha_builder::toolchain::Toolchain| {
        println!(
            "{kind:<12} {:<36} {:<16} {:<40} {}",
            t.name,
            t.version,
            t.path.display(),
            t.label()
        );
    };
    for t in &host {
        row(t.kind.word(), t);
        if let Some(why) = ex.mount_problem(&t.path) {
            println!("{:<12} not usable in jobs: {why}", "");
        }
    }
    for image in ex.images() {
        for t in &image.toolchains {
            row(&format!("image:{}", image.name), t);
        }
    }
    if host.is_empty() {
        println!("(no host toolchains: see [toolchains] in builder.toml)");
    }
}

/// The addresses of the control node (`--control`), which jobs with
/// network must not reach.
fn control_addresses(control: &str) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let rest = control.split_once("://").map_or(control, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.starts_with('[') || authority.matches(':').count() == 1 {
        authority.to_string()
    } else {
        format!("{authority}:7700")
    };
    let mut addrs: Vec<std::net::IpAddr> = with_port
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    addrs.sort();
    addrs.dedup();
    addrs
}
