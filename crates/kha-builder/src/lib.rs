//! kha-builder: the builder daemon. It enrols with a control node, keeps a
//! session open (`session`), takes jobs it has slots for, checks their
//! commit out (`workspace`), runs them through an executor (`executor`: lxc
//! by default) with a generated driver script (`driver`), and ships their
//! logs back from an on-disk spool (`logs`). The builder owner's hooks
//! (`hooks`) run around each job on this host.

pub mod backoff;
pub mod cache;
pub mod config;
pub mod driver;
pub mod executor;
pub mod hooks;
pub mod identity;
pub mod job;
pub mod logs;
pub mod metrics;
pub mod session;
pub mod task;
pub mod toolchain;
pub mod travis_sh;
pub mod workspace;

use anyhow::Context;
use config::Config;
use executor::Executor;
use identity::Identity;
use job::{JobHandle, StopReason};
use kha_core::{JobId, Secret};
use kha_proto::agent::agent_service_client::AgentServiceClient;
use kha_proto::agent::RegisterRequest;
use kha_proto::client::{AuthChannel, BearerAuth};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use task::Tasks;
use tokio::sync::{mpsc, Notify};
use tonic::transport::Channel;
use tracing::{info, warn};

/// The agent service client every call after enrolment goes through: each
/// call carries this builder's bearer token.
pub type AgentClient = AgentServiceClient<AuthChannel>;

/// How long a builder that exits with jobs still on it (a third signal, a
/// refusal) lets them stop, remove their containers and report, before it
/// aborts them; an aborted job's container is removed at the next start.
pub const EXIT_GRACE: Duration = Duration::from_secs(3);

/// The log limits the control node sets in its Welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Largest chunk of a `StreamLogs` message.
    pub max_chunk: usize,
    /// A job's log is cut here.
    pub cap: u64,
}

/// What the session and the job tasks share.
pub struct Shared {
    pub cfg: Config,
    pub identity: Identity,
    pub client: AgentClient,
    pub executor: Arc<dyn Executor>,
    pub vcs: workspace::Systems,
    /// Where jobs' workspaces and scratch directories go.
    pub dirs: workspace::tmpfs::JobDirs,
    pub labels: Vec<String>,
    /// The host's toolchains, found at start.
    pub host_toolchains: Vec<toolchain::Toolchain>,
    jobs: Mutex<HashMap<JobId, JobHandle>>,
    /// The locale of jobs in each image, found once (`travis_sh::lang`).
    langs: Mutex<HashMap<String, &'static str>>,
    limits: Mutex<LogLimits>,
    /// The job tasks: awaited when the builder exits.
    pub tasks: Tasks,
    /// Woken when a job ends (a slot is free again).
    pub wake: Notify,
    /// The data dir had less than `min_free_mib` free when last looked at.
    disk_low: std::sync::atomic::AtomicBool,
    /// What `/metrics` serves (`metrics_listen`).
    pub metrics: Arc<metrics::Metrics>,
}

impl Shared {
    /// Whether the data dir has less than `min_free_mib` free, noting in
    /// the log when that changes. Cheap (one `statvfs`): asked before
    /// every count of free slots.
    pub fn disk_low(&self) -> bool {
        use std::sync::atomic::Ordering;
        let min = self.cfg.min_free_mib << 20;
        if min == 0 {
            return false;
        }
        let free = match nix::sys::statvfs::statvfs(&self.cfg.data_dir) {
            Ok(s) => s.blocks_available() * s.fragment_size(),
            // Unknown: take jobs, as without the check.
            Err(_) => return false,
        };
        let low = free < min;
        if self.disk_low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(
                    data_dir = %self.cfg.data_dir.display(),
                    free_mib = free >> 20,
                    min_free_mib = self.cfg.min_free_mib,
                    "the disk is nearly full: taking no new job until there is space again"
                );
            } else {
                tracing::info!(
                    free_mib = free >> 20,
                    "there is space on the disk again: taking jobs"
                );
            }
        }
        low
    }

    pub fn jobs(&self) -> MutexGuard<'_, HashMap<JobId, JobHandle>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn running(&self) -> Vec<(JobId, u64)> {
        let mut v: Vec<_> = self.jobs().iter().map(|(j, h)| (*j, h.epoch)).collect();
        v.sort_unstable();
        v
    }

    /// The locale of jobs in `image`, found the first time it is asked
    /// for (an image is not expected to gain or lose locales while the
    /// builder runs).
    pub fn lang(&self, image: &str) -> &'static str {
        let mut langs = self.langs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = langs.get(image) {
            return l;
        }
        let l = match self.executor.image_root(image) {
            Some(root) => travis_sh::lang(&root),
            None => return "C.UTF-8",
        };
        langs.insert(image.to_string(), l);
        l
    }

    pub fn limits(&self) -> LogLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_limits(&self, max_chunk: usize, cap: u64) {
        let max_chunk = max_chunk.clamp(4096, kha_core::limits::MAX_CHUNK_BYTES);
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = LogLimits { max_chunk, cap };
    }

    /// What jobs can be given now: the executor's images as they are on
    /// disk (an image made since the start counts at once), and the host's
    /// toolchains found at start.
    pub fn inventory(&self) -> toolchain::Inventory {
        toolchain::Inventory {
            images: self.executor.images(),
            host: self.host_toolchains.clone(),
            given: self.cfg.labels.clone(),
        }
    }

    pub fn job_done(&self, job: JobId) {
        let mut jobs = self.jobs();
        jobs.remove(&job);
        self.metrics.set_busy(jobs.len());
        drop(jobs);
        self.wake.notify_one();
    }
}

/// Connects (lazily: the channel reconnects for new calls) to the control
/// node with keepalives on; `https://` addresses use TLS.
pub fn channel(cfg: &Config) -> anyhow::Result<Channel> {
    Ok(kha_proto::endpoint(&cfg.control, cfg.ca.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A client for enrolment, the one call made without a token.
pub fn anonymous_client(ch: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(ch)
        .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
}

/// A client whose every call carries `identity`'s token.
pub fn client(ch: Channel, identity: &Identity) -> anyhow::Result<AgentClient> {
    let auth = BearerAuth::new(identity.token().expose())
        .map_err(|e| anyhow::anyhow!("the builder identity cannot be used: {e}"))?;
    Ok(AgentServiceClient::with_interceptor(ch, auth)
        .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kha_proto::MAX_MESSAGE_BYTES))
}

/// Loads the builder's identity, enrolling with `token` the first time.
pub async fn identity(cfg: &Config, token: Option<&Secret>) -> anyhow::Result<Identity> {
    if let Some(id) = Identity::load(&cfg.data_dir).context("reading the builder identity")? {
        return Ok(id);
    }
    let token = token.ok_or_else(|| {
        anyhow::anyhow!("this builder is not enrolled yet: give it an enrolment token in KHA_ENROL_TOKEN or --token-file (`kha builder token create` on the control node)")
    })?;
    let mut c = anonymous_client(channel(cfg)?);
    let r = c
        .register(RegisterRequest {
            enrolment_token: token.expose().to_owned(),
            name: cfg.name.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("enrolment refused: {}", s.message()))?
        .into_inner();
    let id = Identity {
        builder_id: r.builder_id,
        secret: Secret::from(r.secret),
    };
    id.save(&cfg.data_dir)
        .context("saving the builder identity")?;
    info!(builder_id = %id.builder_id, "enrolled");
    Ok(id)
}

/// Runs the builder until it is drained (or refused).
pub async fn run(
    cfg: Config,
    dirs: workspace::tmpfs::JobDirs,
    token: Option<Secret>,
    executor: Arc<dyn Executor>,
    protocol_major: u32,
    signals: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let on_disk = workspace::tmpfs::JobDirs::on_disk(&cfg.data_dir);
    let spool = cfg.data_dir.join("spool");
    for p in [
        &dirs.work,
        &dirs.scratch,
        &on_disk.work,
        &on_disk.scratch,
        &spool,
    ] {
        // Whatever is there belongs to jobs of an earlier life: gone.
        remove_dir(p).with_context(|| format!("removing {}", p.display()))?;
    }
    for p in [&dirs.work, &dirs.scratch, &dirs.disk_work, &spool] {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    let mirrors = cfg.data_dir.join("mirrors");
    std::fs::create_dir_all(&mirrors).with_context(|| format!("creating {}", mirrors.display()))?;
    let ex = executor.clone();
    let n = tokio::task::spawn_blocking(move || ex.cleanup_leftovers()).await??;
    if n > 0 {
        info!(count = n, "removed leftover containers");
    }
    let metrics = Arc::new(metrics::Metrics::new(cfg.slots, spool.clone()));
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    if !cfg.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&cfg.metrics_listen)
            .await
            .with_context(|| format!("listening for /metrics on {}", cfg.metrics_listen))?;
        let addr = listener.local_addr()?;
        // With port 0, how a supervisor or a test learns the port.
        write_fresh(&cfg.data_dir.join("metrics.addr"), &format!("{addr}\n"))
            .with_context(|| "writing metrics.addr")?;
        info!(%addr, "serving /metrics");
        task::spawn(
            "metrics",
            metrics::serve(
                listener,
                metrics.clone(),
                cfg.metrics_token.clone(),
                stop_metrics.clone(),
            ),
        );
    }
    let _stop_metrics = stop_metrics.drop_guard();
    let identity = identity(&cfg, token.as_ref()).await?;
    let tc = cfg.toolchains.clone();
    let mut host_toolchains =
        tokio::task::spawn_blocking(move || toolchain::discover::host(&tc)).await?;
    host_toolchains.retain(|t| match executor.mount_problem(&t.path) {
        None => {
            info!(kind = t.kind.word(), name = %t.name, version = %t.version, path = %t.path.display(), "toolchain");
            true
        }
        Some(why) => {
            warn!(kind = t.kind.word(), name = %t.name, reason = %why, "toolchain not usable here");
            false
        }
    });
    let inventory = toolchain::Inventory {
        images: executor.images(),
        host: host_toolchains.clone(),
        given: cfg.labels.clone(),
    };
    for i in &inventory.images {
        if let Some(why) = &i.unusable {
            warn!(image = %i.name, reason = %why, "image not usable");
        }
    }
    let mut labels = vec![format!("os={}", std::env::consts::OS)];
    labels.extend(inventory.labels());
    if !labels.iter().any(|l| l.starts_with("arch=")) {
        labels.push(format!("arch={}", std::env::consts::ARCH));
    }
    labels.extend(executor.labels());
    labels.extend(cfg.labels.iter().cloned());
    let shared = Arc::new(Shared {
        client: client(channel(&cfg)?, &identity)?,
        vcs: workspace::Systems::new(&cfg.data_dir),
        dirs,
        identity,
        executor,
        labels,
        host_toolchains,
        jobs: Mutex::new(HashMap::new()),
        langs: Mutex::new(HashMap::new()),
        limits: Mutex::new(LogLimits {
            max_chunk: kha_core::limits::MAX_CHUNK_BYTES,
            cap: kha_core::limits::DEFAULT_LOG_CAP_BYTES,
        }),
        tasks: Tasks::new(),
        wake: Notify::new(),
        disk_low: Default::default(),
        metrics,
        cfg,
    });
    info!(builder_id = %shared.identity.builder_id, executor = shared.executor.kind(), slots = shared.cfg.slots, labels = ?shared.labels, "builder starting");
    let ended = session::run(shared.clone(), protocol_major, signals).await;
    // Jobs still here (an exit at once, a refusal) stop as at shutdown:
    // they report infrastructure trouble so they run again elsewhere.
    for h in shared.jobs().values() {
        h.stop(StopReason::Shutdown);
    }
    let aborted = shared.tasks.shutdown(EXIT_GRACE).await;
    if aborted > 0 {
        warn!(
            jobs = aborted,
            "jobs did not stop in time; their containers are removed at the next start"
        );
    }
    ended?;
    info!("builder stopped");
    Ok(())
}

/// The workspace's `.kha` directory, made a real directory: the checkout
/// decides what is in the workspace, and a `.kha` of its own that is a
/// symbolic link (or a file) would send the builder's writes, done as root
/// on the host, anywhere it points. A real `.kha` directory is kept (it
/// holds the repository's hooks).
pub fn kha_dir(workspace: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let dir = workspace.join(".kha");
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => return Ok(dir),
        Ok(_) => std::fs::remove_file(&dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// Writes a new file at `path`, replacing whatever entry is there without
/// following it: a symbolic link planted there is removed, not written
/// through.
pub fn write_fresh(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_dir(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Opens a file the job could have replaced, for reading, only if it is a
/// regular file: not through a symbolic link (the job must not make the
/// builder read a file of the host's) and not a FIFO or device (an open or
/// a read that never returns would hold a slot forever).
pub fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(f)
}

/// Reads at most `limit` bytes of a small file the job could have replaced
/// (see [`open_regular`]).
pub fn read_regular(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    open_regular(path)?.take(limit).read_to_string(&mut s)?;
    Ok(s)
}

/// Removes a directory tree; fine if it is not there.
pub fn remove_dir(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod workspace_file_tests {
    use super::*;

    #[test]
    fn planted_links_are_replaced_not_followed() {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "host file").unwrap();
        // `.kha` a link to a host directory: replaced by a real directory.
        std::os::unix::fs::symlink(outside.path(), ws.path().join(".kha")).unwrap();
        let dir = kha_dir(ws.path()).unwrap();
        assert!(std::fs::symlink_metadata(&dir).unwrap().is_dir());
        // `.kha/run.sh` a link to a host file: the link goes, the file stays.
        std::os::unix::fs::symlink(&victim, dir.join("run.sh")).unwrap();
        write_fresh(&dir.join("run.sh"), "#!/bin/sh\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file");
        assert_eq!(
            std::fs::read_to_string(dir.join("run.sh")).unwrap(),
            "#!/bin/sh\n"
        );
        // A state file that is a link is not read through, a FIFO not
        // waited on.
        std::os::unix::fs::symlink(&victim, dir.join("state")).unwrap();
        assert!(read_regular(&dir.join("state"), 100).is_err());
        std::fs::remove_file(dir.join("state")).unwrap();
        nix::unistd::mkfifo(&dir.join("state"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_regular(&dir.join("state"), 100).is_err());
        // A real `.kha` (the repository's hooks) is kept.
        std::fs::create_dir(dir.join("hooks")).unwrap();
        kha_dir(ws.path()).unwrap();
        assert!(dir.join("hooks").is_dir());
    }
}
