//! `kha-control`: the control node daemon, and `kha-control user add`,
//! which works on the data directory's database while the daemon is
//! stopped (how the first admin of a server gets in without a browser).

use anyhow::Context;
use clap::Parser;
use kha_control::api::{self, Principal};
use kha_control::config::Config;
use kha_core::view::Role;
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
    /// Append the daemon's log lines to this file (reopened on SIGHUP, for
    /// logrotate) instead of standard error (where journald keeps them).
    /// KHA_LOG_FORMAT=json writes them as JSON lines.
    #[arg(long, env = "KHA_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Without a command: run the control node.
    #[command(subcommand)]
    cmd: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Users, on the database itself: only while the control node is
    /// stopped (a running one has `kha user`).
    #[command(subcommand)]
    User(UserCommand),
    /// Takes a consistent backup of the data directory into DIR (which
    /// must not exist or be empty): the database, the job logs, the
    /// projects' secret keys and the admin token. A running control node
    /// takes it itself, holding writes back for the moment the database is
    /// copied; a stopped one's is read directly.
    Backup {
        /// Where the backup goes, on this machine.
        dir: PathBuf,
    },
    /// Applies the log retention policy now (`[logs]` in control.toml and
    /// the projects' own settings) and says what went.
    Gc {
        /// Only say what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// Makes the data directory from a backup taken with `backup`, after
    /// checking every file of it. The control node must be stopped.
    Restore {
        /// The backup's directory.
        dir: PathBuf,
        /// Move a data directory's existing contents aside (into
        /// `before-restore-<time>` inside it) instead of refusing.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Add a user; without --password-stdin a password is generated and
    /// printed once.
    Add {
        name: String,
        /// Make them an admin (the same as --role admin).
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// Global role: none, viewer, maintainer or admin.
        #[arg(long, default_value = "none")]
        role: Role,
        #[arg(long, default_value = "")]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
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
    let log_file = kha_core::logging::init(
        "info,h2=warn,hyper=warn,tonic=warn,tower=warn,sled=warn",
        args.log_file.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            kha_core::logging::hangup(log_file.as_deref());
        }
    });
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
    if let Some(Command::User(UserCommand::Add {
        name,
        admin,
        role,
        email,
        password_stdin,
    })) = &args.cmd
    {
        let (name, role, email, password_stdin) =
            (name.clone(), *role, email.clone(), *password_stdin);
        let role = if *admin { Role::Admin } else { role };
        return user_add(cfg, name, role, email, password_stdin).await;
    }
    match args.cmd {
        Some(Command::Backup { dir }) => return backup(cfg, dir).await,
        Some(Command::Gc { dry_run }) => return gc(cfg, dry_run).await,
        Some(Command::Restore { dir, replace }) => return restore(cfg, dir, replace),
        _ => {}
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

/// `kha-control user add`: opens the database (refused while a control
/// node has it), adds the user through the service layer as the admin
/// token would, and prints a generated password once.
async fn user_add(
    cfg: Config,
    name: String,
    role: Role,
    email: String,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        String::new()
    };
    if password_stdin && password.is_empty() {
        anyhow::bail!(
            "no password on standard input (or leave out --password-stdin to have one generated)"
        );
    }
    let data = cfg.data_dir.clone();
    if database_in_use(&data.join("db"))? {
        anyhow::bail!(
            "the database in {} is in use: is kha-control running? Stop it and try again, or add the user through it: \
             `kha user add {name} --role {role}` with the admin token (KHA_TOKEN=$(cat {}))",
            data.display(),
            data.join("admin.token").display()
        );
    }
    let app = kha_control::app::App::open(cfg, CancellationToken::new())?;
    let new = api::users::NewUser {
        name,
        password,
        role,
        email,
    };
    let (user, generated) = api::users::add(&app, &Principal::Admin, new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "added user {} (global role {}) to {}",
        user.name,
        user.role,
        data.display()
    );
    if let Some(p) = generated {
        println!("password (shown once): {}", p.expose());
    }
    println!(
        "start kha-control, then sign in on the web UI or with `kha login --user {}`",
        user.name
    );
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn absolute(dir: PathBuf) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir);
    }
    Ok(std::env::current_dir()
        .context("the current directory")?
        .join(dir))
}

/// The running control node's admin service: its gRPC address and admin
/// token are in the data directory.
async fn running_node(
    cfg: &Config,
) -> anyhow::Result<
    kha_proto::admin::admin_service_client::AdminServiceClient<kha_proto::client::AuthChannel>,
> {
    let data = &cfg.data_dir;
    let addr = std::fs::read_to_string(data.join("grpc.addr")).with_context(|| {
        format!(
            "the running control node's address, {}",
            data.join("grpc.addr").display()
        )
    })?;
    let token = std::fs::read_to_string(data.join("admin.token"))
        .with_context(|| format!("reading {}", data.join("admin.token").display()))?;
    let server = match &cfg.tls_cert {
        Some(_) => format!("https://{}", addr.trim()),
        None => format!("http://{}", addr.trim()),
    };
    let channel = kha_proto::endpoint(&server, cfg.tls_cert.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?
        .connect()
        .await
        .with_context(|| format!("reaching the control node at {server}"))?;
    let auth = kha_proto::client::BearerAuth::new(token.trim())
        .map_err(|e| anyhow::anyhow!("the admin token cannot be sent: {e}"))?;
    Ok(kha_proto::admin::admin_service_client::AdminServiceClient::new(auth.channel(channel)))
}

/// `kha-control gc [--dry-run]`: the log retention pass, through the
/// running control node or on the stopped one's data directory; says
/// what goes (or would).
async fn gc(cfg: Config, dry_run: bool) -> anyhow::Result<()> {
    let data = cfg.data_dir.clone();
    if !data.join("db").exists() {
        anyhow::bail!("{} holds no control node's database", data.display());
    }
    let (lines, logs, bytes) = if database_in_use(&data.join("db"))? {
        let r = running_node(&cfg)
            .await?
            .collect_logs(kha_proto::admin::CollectLogsRequest { dry_run })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        (r.lines, r.logs, r.bytes)
    } else {
        let store = kha_control::store::Store::open(&data.join("db"))
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", data.join("db").display()))?;
        let logs = kha_control::store::logs::LogStore::open(data.join("logs"), cfg.log_cap_bytes)?;
        let server = cfg.logs;
        tokio::task::spawn_blocking(move || {
            kha_control::retention::collect(&store, &logs, &server, now_ms(), dry_run)
        })
        .await??
    };
    for l in &lines {
        println!("{l}");
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!("{verb} {logs} logs, {bytes} bytes");
    Ok(())
}

/// `kha-control backup DIR`: through the running control node (its gRPC
/// address and admin token are in the data directory), or from the
/// database itself when none runs.
async fn backup(cfg: Config, dir: PathBuf) -> anyhow::Result<()> {
    let dir = absolute(dir)?;
    let data = cfg.data_dir.clone();
    if !data.join("db").exists() {
        anyhow::bail!("{} holds no control node's database", data.display());
    }
    let t = if database_in_use(&data.join("db"))? {
        let r = running_node(&cfg)
            .await?
            .backup(kha_proto::admin::BackupRequest {
                dir: dir.display().to_string(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        kha_control::backup::Taken {
            records: r.records,
            logs: r.logs,
            log_bytes: r.log_bytes,
            bytes: r.bytes,
            paused_ms: r.paused_ms,
        }
    } else {
        let store = kha_control::store::Store::open(&data.join("db"))
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", data.join("db").display()))?;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || kha_control::backup::take(&store, &data, &d, now_ms()))
            .await??
    };
    println!(
        "backup in {}: {} records, {} logs ({} bytes), {} bytes in all; writes held back {} ms",
        dir.display(),
        t.records,
        t.logs,
        t.log_bytes,
        t.bytes,
        t.paused_ms
    );
    Ok(())
}

/// `kha-control restore DIR`.
fn restore(cfg: Config, dir: PathBuf, replace: bool) -> anyhow::Result<()> {
    let data = absolute(cfg.data_dir.clone())?;
    if database_in_use(&data.join("db"))? {
        anyhow::bail!(
            "the database in {} is in use: stop kha-control before restoring into it",
            data.display()
        );
    }
    let r = kha_control::backup::restore(&dir, &data, replace, now_ms())?;
    if let Some(aside) = &r.moved_aside {
        println!(
            "moved the data directory's earlier contents to {}",
            aside.display()
        );
    }
    println!(
        "restored {} into {}: {} records, {} files ({} bytes); start kha-control to run it",
        dir.display(),
        data.display(),
        r.records,
        r.files,
        r.bytes
    );
    Ok(())
}

/// Whether a running control node holds the database: sled keeps an
/// exclusive flock on `db/db` while open, so a probe for the same lock
/// answers without touching anything (and without reading sled's error
/// text).
fn database_in_use(db: &Path) -> anyhow::Result<bool> {
    use nix::fcntl::{Flock, FlockArg};
    let file = match std::fs::File::open(db.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", db.display())),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // Dropping the lock releases it before sled takes it.
        Ok(_lock) => Ok(false),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", db.display())),
    }
}
