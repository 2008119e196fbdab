//! One job run: check the commit out, write the driver, run it through the
//! executor with its output spooled, enforce the timeout and cancels, ship
//! the log, and report the result.

use crate::driver::{self, DriverInput};
use crate::executor::JobRun;
use crate::logs::{self, Spool};
use crate::Shared;
use kha_core::JobOutcome;
use kha_proto::agent::{FinishJobRequest, GitCredentials, JobSpec, Outcome};
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why a job is being stopped before it ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The control node canceled it (report `Canceled`).
    Canceled { grace_ms: u64 },
    /// Its lease is gone: it runs elsewhere now. Report nothing.
    Revoked,
    /// This builder is shutting down: report infrastructure trouble so the
    /// job runs again elsewhere.
    Shutdown,
}

/// The handle the session keeps for a running job.
pub struct JobHandle {
    pub epoch: u64,
    pub acked: Arc<AtomicU64>,
    pub stop: CancellationToken,
    pub reason: Arc<Mutex<Option<StopReason>>>,
}

impl JobHandle {
    pub fn stop(&self, why: StopReason) {
        if let Ok(mut r) = self.reason.lock() {
            if r.is_none() {
                *r = Some(why);
            }
        }
        self.stop.cancel();
    }
}

pub async fn run(
    shared: Arc<Shared>,
    job_id: u64,
    epoch: u64,
    spec: JobSpec,
    creds: Option<GitCredentials>,
    h: (
        Arc<AtomicU64>,
        CancellationToken,
        Arc<Mutex<Option<StopReason>>>,
    ),
) {
    let (acked, stop, reason) = h;
    let name = format!("kha-{job_id}-{epoch}");
    let data = &shared.cfg.data_dir;
    let workspace = data.join("work").join(&name);
    let scratch = data.join("scratch").join(&name);
    let spool_path = data.join("spool").join(format!("{name}.log"));
    let (max_chunk, cap) = shared.limits();
    let spool = match Spool::create(&spool_path, cap) {
        Ok(s) => s,
        Err(e) => {
            warn!(job_id, error = %e, "cannot create the spool");
            shared.job_done(job_id);
            return;
        }
    };
    let (spool, written) = spool;
    let spool = Arc::new(Mutex::new(Some(spool)));
    let ship_stop = CancellationToken::new();
    let shipper = crate::task::spawn(
        "log-shipper",
        logs::ship(
            shared.client.clone(),
            shared.identity.bearer(),
            job_id,
            epoch,
            spool_path.clone(),
            written,
            acked,
            max_chunk,
            ship_stop.clone(),
        ),
    );
    let note = |line: &str| {
        if let Ok(mut g) = spool.lock() {
            if let Some(s) = g.as_mut() {
                s.note(line);
            }
        }
    };

    let (outcome, detail) = execute(
        &shared, job_id, &name, &spec, creds, &workspace, &scratch, &spool, &stop, &note,
    )
    .await;
    let stopped = reason.lock().ok().and_then(|r| *r);
    let (outcome, detail) = match stopped {
        Some(StopReason::Canceled { .. }) => {
            note("the job was canceled");
            (JobOutcome::Canceled, "canceled".to_string())
        }
        Some(StopReason::Shutdown) => {
            note("the builder shut down; the job will run again elsewhere");
            (JobOutcome::Infrastructure, "builder shut down".to_string())
        }
        _ => (outcome, detail),
    };
    let (total_len, sha256) = match spool.lock().ok().and_then(|mut g| g.take()) {
        Some(s) => s.finish(),
        None => (0, String::new()),
    };
    if stopped == Some(StopReason::Revoked) {
        ship_stop.cancel();
        let _ = shipper.await;
        info!(job_id, epoch, "job stopped: its lease is gone");
    } else {
        match shipper.await {
            Ok(Ok(())) => finish(&shared, job_id, epoch, outcome, total_len, sha256, detail).await,
            Ok(Err(e)) => warn!(job_id, error = %e, "log not shipped; not reporting a result"),
            Err(e) => warn!(job_id, error = %e, "log shipper failed"),
        }
    }
    // The slot is free once the result is in: the next job need not wait
    // for this one's files to go (another directory; a restarted builder
    // removes whatever is left).
    shared.job_done(job_id);
    let ws = workspace.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(&spool_path);
        std::fs::remove_dir_all(ws)
    })
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    shared: &Arc<Shared>,
    job_id: u64,
    name: &str,
    spec: &JobSpec,
    creds: Option<GitCredentials>,
    workspace: &std::path::Path,
    scratch: &std::path::Path,
    spool: &Arc<Mutex<Option<Spool>>>,
    stop: &CancellationToken,
    note: &(dyn Fn(&str) + Sync),
) -> (JobOutcome, String) {
    // Checkout.
    let (ws, url, commit, dest) = (
        shared.workspaces.clone(),
        spec.repo_url.clone(),
        spec.commit.clone(),
        workspace.to_path_buf(),
    );
    let _ = std::fs::remove_dir_all(&dest);
    let creds = creds.map(|c| (c.username, c.password));
    let checkout =
        tokio::task::spawn_blocking(move || ws.checkout(&url, &commit, &dest, creds.as_ref()))
            .await;
    match checkout {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            note(&format!("checkout failed: {e}"));
            return (JobOutcome::Infrastructure, format!("checkout failed: {e}"));
        }
        Err(e) => return (JobOutcome::Infrastructure, format!("checkout failed: {e}")),
    }
    // Driver.
    let phases = spec.phases();
    let vars = [
        ("CI", "true".to_string()),
        ("TRAVIS", "true".to_string()),
        ("KHA", "true".to_string()),
        ("HOME", "/root".to_string()),
        ("TRAVIS_BRANCH", spec.branch.clone()),
        ("TRAVIS_COMMIT", spec.commit.clone()),
        ("TRAVIS_BUILD_ID", spec.build_id.to_string()),
        ("TRAVIS_BUILD_NUMBER", spec.build_id.to_string()),
        ("TRAVIS_JOB_ID", job_id.to_string()),
        (
            "TRAVIS_JOB_NUMBER",
            format!("{}.{}", spec.build_id, spec.number),
        ),
        ("TRAVIS_REPO_SLUG", spec.project.clone()),
    ];
    let text = driver::script(&DriverInput {
        phases: &phases,
        env: &spec.env,
        vars: &vars,
    });
    let kha_dir = workspace.join(".kha");
    if let Err(e) =
        std::fs::create_dir_all(&kha_dir).and_then(|_| std::fs::write(kha_dir.join("run.sh"), text))
    {
        return (
            JobOutcome::Infrastructure,
            format!("cannot write the driver: {e}"),
        );
    }
    let _ = std::fs::create_dir_all(scratch);
    let run = JobRun {
        name: name.to_string(),
        workspace: workspace.to_path_buf(),
        image: if spec.image.is_empty() {
            "default".into()
        } else {
            spec.image.clone()
        },
        scratch: scratch.to_path_buf(),
    };
    let exec = shared.executor.clone();
    let r2 = run.clone();
    let cmd = match tokio::task::spawn_blocking(move || exec.command(&r2)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            note(&format!("cannot start the job: {e}"));
            cleanup(shared, &run).await;
            return (JobOutcome::Infrastructure, e.to_string());
        }
        Err(e) => return (JobOutcome::Infrastructure, e.to_string()),
    };
    let r = spawn_and_wait(shared, &run, cmd, spec.timeout_secs, spool, stop, note).await;
    let progress = driver::read_progress(
        &std::fs::read_to_string(workspace.join(".kha/state")).unwrap_or_default(),
    );
    if !progress.started {
        // The container never ran the driver: say why, from lxc's own log.
        for line in crate::executor::lxc::lxc_errors(&run) {
            note(&line);
        }
    }
    cleanup(shared, &run).await;
    match r {
        Err(e) => (JobOutcome::Infrastructure, e),
        Ok(Waited::TimedOut) => (
            JobOutcome::TimedOut,
            format!("timed out after {} s", spec.timeout_secs),
        ),
        Ok(Waited::Stopped) => (JobOutcome::Canceled, "stopped".into()),
        Ok(Waited::Exited(code)) => driver::outcome(code, &progress),
    }
}

enum Waited {
    Exited(Option<i32>),
    TimedOut,
    Stopped,
}

async fn spawn_and_wait(
    shared: &Arc<Shared>,
    run: &JobRun,
    mut cmd: std::process::Command,
    timeout_secs: u64,
    spool: &Arc<Mutex<Option<Spool>>>,
    stop: &CancellationToken,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Waited, String> {
    // stdout and stderr share one pipe, so their interleaving is kept.
    let (mut reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
    let w2 = writer.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(w2);
    let mut cmd = tokio::process::Command::from(cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the job: {e}"))?;
    drop(cmd); // our copies of the pipe's write end
    if let Some(pid) = child.id() {
        shared.executor.spawned(run, pid);
    }
    let sp = spool.clone();
    let pump = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut g) = sp.lock() {
                        if let Some(s) = g.as_mut() {
                            if s.write(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    });
    let timeout = Duration::from_secs(if timeout_secs == 0 {
        kha_core::limits::DEFAULT_JOB_TIMEOUT_SECS
    } else {
        timeout_secs
    });
    let waited = tokio::select! {
        st = child.wait() => Waited::Exited(st.ok().and_then(|s| s.code())),
        _ = tokio::time::sleep(timeout) => Waited::TimedOut,
        _ = stop.cancelled() => Waited::Stopped,
    };
    if !matches!(waited, Waited::Exited(_)) {
        let grace = match (&waited, shared.stop_grace(run)) {
            (Waited::TimedOut, _) => Duration::ZERO,
            (_, g) => g,
        };
        let (exec, r) = (shared.executor.clone(), run.clone());
        let _ = tokio::task::spawn_blocking(move || exec.stop(&r, grace)).await;
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        if matches!(waited, Waited::TimedOut) {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while !pump.is_finished() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            note(&format!("the job timed out after {} s", timeout.as_secs()));
        }
    }
    // Output still buffered in the pipe arrives before EOF; a process that
    // escaped and holds the pipe open is killed by cleanup.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !pump.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    Ok(waited)
}

async fn cleanup(shared: &Arc<Shared>, run: &JobRun) {
    let (exec, r) = (shared.executor.clone(), run.clone());
    match tokio::task::spawn_blocking(move || exec.cleanup(&r)).await {
        Ok(Err(e)) => warn!(run = %run.name, error = %e, "cleanup failed"),
        Err(e) => warn!(run = %run.name, error = %e, "cleanup panicked"),
        _ => {}
    }
}

async fn finish(
    shared: &Arc<Shared>,
    job_id: u64,
    epoch: u64,
    outcome: JobOutcome,
    total_len: u64,
    sha256: String,
    detail: String,
) {
    let mut backoff = Duration::from_millis(100);
    for _ in 0..50 {
        let mut req = tonic::Request::new(FinishJobRequest {
            job_id,
            epoch,
            outcome: Outcome::from(outcome) as i32,
            total_len,
            sha256: sha256.clone(),
            detail: detail.clone(),
        });
        if let Ok(v) = shared.identity.bearer().parse() {
            req.metadata_mut().insert("authorization", v);
        }
        match shared.client.clone().finish_job(req).await {
            Ok(_) => {
                info!(job_id, epoch, ?outcome, total_len, "job finished");
                return;
            }
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition && !s.message().contains("log") =>
            {
                warn!(job_id, epoch, error = %s.message(), "result refused");
                return;
            }
            Err(s) => {
                warn!(job_id, epoch, error = %s.message(), "cannot report the result yet; retrying");
            }
        }
        tokio::time::sleep(logs::jitter(backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    warn!(
        job_id,
        epoch, "gave up reporting the result; the control node will time the lease out"
    );
}
