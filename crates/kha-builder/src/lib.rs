//! kha-builder: the builder daemon. It enrols with a control node, keeps a
//! session open (`session`), takes jobs it has slots for, checks their
//! commit out (`workspace`), runs them through an executor (`executor`: lxc
//! by default) with a generated driver script (`driver`), and ships their
//! logs back from an on-disk spool (`logs`).

pub mod config;
pub mod driver;
pub mod executor;
pub mod identity;
pub mod job;
pub mod logs;
pub mod session;
pub mod task;
pub mod workspace;

use anyhow::Context;
use config::Config;
use executor::Executor;
use identity::Identity;
use job::{JobHandle, StopReason};
use kha_proto::agent::agent_service_client::AgentServiceClient;
use kha_proto::agent::RegisterRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tonic::transport::Channel;
use tracing::info;

/// What the session and the job tasks share.
pub struct Shared {
    pub cfg: Config,
    pub identity: Identity,
    pub client: AgentServiceClient<Channel>,
    pub executor: Arc<dyn Executor>,
    pub workspaces: Arc<workspace::Workspaces>,
    pub labels: Vec<String>,
    jobs: Mutex<HashMap<u64, JobHandle>>,
    limits: Mutex<(usize, u64)>,
    /// Woken when a job ends (a slot is free again).
    pub wake: Notify,
}

impl Shared {
    pub fn jobs(&self) -> MutexGuard<'_, HashMap<u64, JobHandle>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn running(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<_> = self.jobs().iter().map(|(j, h)| (*j, h.epoch)).collect();
        v.sort_unstable();
        v
    }

    pub fn limits(&self) -> (usize, u64) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_limits(&self, max_chunk: usize, cap: u64) {
        let max_chunk = max_chunk.clamp(4096, kha_core::limits::MAX_CHUNK_BYTES);
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = (max_chunk, cap);
    }

    pub fn job_done(&self, job: u64) {
        self.jobs().remove(&job);
        self.wake.notify_one();
    }

    /// The grace a stopping run gets (from the control node's Cancel).
    pub fn stop_grace(&self, run: &executor::JobRun) -> Duration {
        let job: Option<u64> = run.name.split('-').nth(1).and_then(|s| s.parse().ok());
        let reason = job.and_then(|j| {
            self.jobs()
                .get(&j)
                .and_then(|h| h.reason.lock().ok().and_then(|r| *r))
        });
        match reason {
            Some(StopReason::Canceled { grace_ms }) => Duration::from_millis(grace_ms),
            Some(StopReason::Shutdown) => Duration::from_secs(5),
            _ => Duration::ZERO,
        }
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

pub fn client(ch: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(ch)
        .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
}

/// Loads the builder's identity, enrolling with `token` the first time.
pub async fn identity(cfg: &Config, token: Option<&str>) -> anyhow::Result<Identity> {
    if let Some(id) = Identity::load(&cfg.data_dir).context("reading the builder identity")? {
        return Ok(id);
    }
    let token = token.ok_or_else(|| {
        anyhow::anyhow!("this builder is not enrolled yet: pass --token with an enrolment token (`kha builder token create` on the control node)")
    })?;
    let mut c = client(channel(cfg)?);
    let r = c
        .register(RegisterRequest {
            enrolment_token: token.to_string(),
            name: cfg.name.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("enrolment refused: {}", s.message()))?
        .into_inner();
    let id = Identity {
        builder_id: r.builder_id,
        secret: r.secret,
    };
    id.save(&cfg.data_dir)
        .context("saving the builder identity")?;
    info!(builder_id = %id.builder_id, "enrolled");
    Ok(id)
}

/// Runs the builder until it is drained (or refused).
pub async fn run(
    cfg: Config,
    token: Option<String>,
    executor: Arc<dyn Executor>,
    protocol_major: u32,
    signals: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    for d in ["work", "scratch", "spool", "mirrors"] {
        let p = cfg.data_dir.join(d);
        if d != "mirrors" {
            // Whatever is there belongs to jobs of an earlier life: gone.
            let _ = std::fs::remove_dir_all(&p);
        }
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    let ex = executor.clone();
    let n = tokio::task::spawn_blocking(move || ex.cleanup_leftovers()).await??;
    if n > 0 {
        info!(count = n, "removed leftover containers");
    }
    let identity = identity(&cfg, token.as_deref()).await?;
    let mut labels = vec![
        format!("os={}", std::env::consts::OS),
        format!("arch={}", std::env::consts::ARCH),
    ];
    labels.extend(executor.labels());
    labels.extend(cfg.labels.iter().cloned());
    let shared = Arc::new(Shared {
        client: client(channel(&cfg)?),
        workspaces: Arc::new(workspace::Workspaces::new(cfg.data_dir.join("mirrors"))),
        identity,
        executor,
        labels,
        jobs: Mutex::new(HashMap::new()),
        limits: Mutex::new((
            kha_core::limits::MAX_CHUNK_BYTES,
            kha_core::limits::DEFAULT_LOG_CAP_BYTES,
        )),
        wake: Notify::new(),
        cfg,
    });
    info!(builder_id = %shared.identity.builder_id, executor = shared.executor.kind(), slots = shared.cfg.slots, labels = ?shared.labels, "builder starting");
    session::run(shared, protocol_major, signals).await?;
    info!("builder stopped");
    Ok(())
}
