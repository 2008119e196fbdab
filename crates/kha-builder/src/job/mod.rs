//! One job run, as a [`Job`] value whose steps run in order: check the
//! revision out, prepare the driver, run it through the executor with its
//! output spooled (enforcing the timeout and cancels), collect the outcome,
//! report it once the log is shipped, and clean up. The builder's hooks
//! (`crate::hooks`) run around the checkout and the run.

mod cache;
mod process;
mod report;

use crate::driver::{self, DriverInput};
use crate::executor::JobRun;
use crate::hooks::{self, BuilderHooks, Hook, JobHooks, Ran};
use crate::logs::{SharedSpool, ShipError, Shipper, Spool};
use crate::toolchain::{activate, Choice};
use crate::workspace::{Credentials, Source};
use crate::Shared;
use kha_core::{Epoch, JobId, JobOutcome, JobSpec};
use process::Waited;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
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

/// What the session and a running job share: the log's acknowledged
/// offset, and the stop signal with its reason.
#[derive(Clone, Default)]
pub struct JobControl {
    /// The control node's committed log offset (reported in Hello).
    pub acked: Arc<AtomicU64>,
    pub stop: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl JobControl {
    pub fn new() -> JobControl {
        JobControl::default()
    }

    /// Stops the job; the first reason given is the one that counts.
    pub fn stop(&self, why: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(why);
        }
        drop(r);
        self.stop.cancel();
    }

    /// Why the job was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a stopping run gets to end politely.
    pub fn grace(&self) -> Duration {
        match self.reason() {
            Some(StopReason::Canceled { grace_ms }) => Duration::from_millis(grace_ms),
            Some(StopReason::Shutdown) => Duration::from_secs(5),
            _ => Duration::ZERO,
        }
    }
}

/// The handle the session keeps for a running job.
pub struct JobHandle {
    pub epoch: Epoch,
    pub control: JobControl,
}

impl JobHandle {
    pub fn stop(&self, why: StopReason) {
        self.control.stop(why);
    }
}

/// The outcome of a job as it is reported, with the detail shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: JobOutcome,
    pub detail: String,
}

impl Verdict {
    fn infrastructure(detail: impl Into<String>) -> Verdict {
        Verdict {
            outcome: JobOutcome::Infrastructure,
            detail: detail.into(),
        }
    }
}

/// The outcome as builder hooks are told it (`KHA_JOB_OUTCOME`).
fn outcome_word(o: JobOutcome) -> &'static str {
    match o {
        JobOutcome::Passed => "passed",
        JobOutcome::Failed => "failed",
        JobOutcome::Errored => "errored",
        JobOutcome::Canceled => "canceled",
        JobOutcome::TimedOut => "timed_out",
        JobOutcome::Infrastructure => "infrastructure",
    }
}

/// One granted job on this builder.
pub struct Job {
    shared: Arc<Shared>,
    id: JobId,
    epoch: Epoch,
    spec: JobSpec,
    creds: Option<Credentials>,
    control: JobControl,
    /// The run as the executor sees it: name, workspace, scratch, image.
    run: JobRun,
    spool_path: PathBuf,
    /// Where builder hooks write the variables they add for the job.
    env_file: PathBuf,
    /// The image and toolchains it was given (`crate::toolchain::pick`).
    choice: Choice,
    /// Its encrypted variables, decrypted, from the grant.
    secure: JobSecrets,
    /// Lines for the log: limits its project asked for that this builder
    /// gives less of.
    limit_notes: Vec<String>,
}

/// What the grant brought of the job's encrypted variables.
#[derive(Debug, Default)]
pub struct JobSecrets {
    pub vars: Vec<driver::SecureVar>,
    /// Lines for the log: variables the control node left out.
    pub notes: Vec<String>,
}

/// What only the grant brings, for the lease holder alone: the
/// repository's credentials and the decrypted variables.
#[derive(Default)]
pub struct Grant {
    pub creds: Option<Credentials>,
    pub secure: JobSecrets,
}

impl Job {
    pub fn new(
        shared: Arc<Shared>,
        (id, epoch): (JobId, Epoch),
        spec: JobSpec,
        grant: Grant,
        control: JobControl,
        choice: Choice,
    ) -> Job {
        let Grant { creds, secure } = grant;
        let name = format!("kha-{id}-{epoch}");
        let data = &shared.cfg.data_dir;
        let (limits, limit_notes) = if spec.limits.is_default() {
            (None, vec![])
        } else {
            let (limits, notes) = shared.cfg.job_limits(spec.limits);
            (Some(limits), notes)
        };
        let run = JobRun {
            workspace: shared.dirs.work.join(&name),
            scratch: shared.dirs.scratch.join(&name),
            image: choice.image.clone(),
            mounts: activate::mounts(&choice),
            name: name.clone(),
            limits,
            network: spec.limits.network,
        };
        let spool_path = data.join("spool").join(format!("{name}.log"));
        let env_file = data.join("spool").join(format!("{name}.env"));
        Job {
            shared,
            id,
            epoch,
            spec,
            creds,
            control,
            run,
            spool_path,
            env_file,
            choice,
            secure,
            limit_notes,
        }
    }

    /// Runs the job to its end: every step, then the report and cleanup.
    /// The slot is given back whatever happens.
    pub async fn run(mut self) {
        let limits = self.shared.limits();
        let (spool, written) = match Spool::create(&self.spool_path, limits.cap) {
            Ok(s) => s,
            Err(e) => {
                warn!(job_id = self.id, error = %e, "cannot create the spool");
                self.shared.job_done(self.id);
                return;
            }
        };
        let spool = SharedSpool::new(spool);
        // Before anything is written: no secret value reaches the log.
        spool.mask(driver::secure_mask_values(&self.secure.vars));
        for n in &self.secure.notes {
            spool.line(n);
        }
        for n in &self.limit_notes {
            spool.note(n);
        }
        let ship_stop = CancellationToken::new();
        let shipper = crate::task::spawn(
            "log-shipper",
            Shipper {
                client: self.shared.client.clone(),
                job_id: self.id,
                epoch: self.epoch,
                spool: self.spool_path.clone(),
                written,
                acked: self.control.acked.clone(),
                max_chunk: limits.max_chunk,
                stop: ship_stop.clone(),
            }
            .run(),
        );

        let mut hooks = JobHooks::new(
            BuilderHooks::new(&self.shared.cfg),
            self.hook_vars(),
            self.env_file.clone(),
            spool.clone(),
            self.control.stop.clone(),
        );
        let verdict = self.execute(&spool, &mut hooks).await.unwrap_or_else(|v| v);
        let verdict = self.overrule(verdict, &spool);
        // pre-exit runs whatever happened; it cannot change the result.
        let outcome = [("KHA_JOB_OUTCOME", outcome_word(verdict.outcome).to_string())];
        hooks.run(Hook::PreExit, &self.hook_dir(), &outcome).await;
        self.shared
            .metrics
            .jobs
            .get_or_create(&vec![(
                "outcome",
                outcome_word(verdict.outcome).to_string(),
            )])
            .inc();
        let (total_len, sha256) = spool.finish().unwrap_or((0, String::new()));
        self.report(verdict, total_len, sha256, shipper, ship_stop)
            .await;
        // The slot is free once the result is in: the next job need not
        // wait for this one's files to go (another directory; a restarted
        // builder removes whatever is left).
        self.shared.job_done(self.id);
        self.remove_files().await;
    }

    /// checkout → prepare → run → collect, with the executor's cleanup
    /// after a run whatever happened, and the builder's hooks around the
    /// checkout and the run. `Err`: a step before the run ended the job.
    async fn execute(
        &mut self,
        spool: &SharedSpool,
        hooks: &mut JobHooks,
    ) -> Result<Verdict, Verdict> {
        self.gate(hooks, Hook::Environment).await?;
        self.gate(hooks, Hook::PreCheckout).await?;
        let workspace = self.checkout(spool).await?;
        if workspace != self.run.workspace {
            hooks.set_var("KHA_WORKSPACE", workspace.display().to_string());
            self.run.workspace = workspace;
        }
        self.gate(hooks, Hook::PostCheckout).await?;
        self.gate(hooks, Hook::PreCommand).await?;
        self.prepare(hooks.added())?;
        let cache = self.restore_cache(spool).await;
        let waited = self.run_driver(spool).await;
        let verdict = match waited {
            Ok(w) => self.collect(w, spool),
            Err(v) => v,
        };
        if verdict.outcome != JobOutcome::Passed {
            if let Some(note) = self.shared.dirs.full_note(&self.run.workspace) {
                spool.note(&note);
            }
        }
        self.save_cache(cache, &verdict, spool).await;
        let outcome = [("KHA_JOB_OUTCOME", outcome_word(verdict.outcome).to_string())];
        hooks
            .run(Hook::PostCommand, &self.hook_dir(), &outcome)
            .await;
        self.cleanup().await;
        Ok(verdict)
    }

    /// A builder hook before the command: its failure errors the job.
    async fn gate(&self, hooks: &mut JobHooks, hook: Hook) -> Result<(), Verdict> {
        match hooks.run(hook, &self.hook_dir(), &[]).await {
            Ran::Absent | Ran::Passed => Ok(()),
            Ran::Failed(why) => Err(Verdict {
                outcome: JobOutcome::Errored,
                detail: why,
            }),
            Ran::Stopped => Err(Verdict {
                outcome: JobOutcome::Canceled,
                detail: "stopped".into(),
            }),
        }
    }

    /// Where a builder hook runs: the workspace once the checkout made it,
    /// before that the hooks directory.
    fn hook_dir(&self) -> PathBuf {
        if self.run.workspace.is_dir() {
            return self.run.workspace.clone();
        }
        let cfg = &self.shared.cfg;
        cfg.hooks_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.clone())
    }

    /// Travis's variables of the job, as the driver exports them (but
    /// `HOME`, which is the container's).
    fn travis_vars(&self) -> Vec<(String, String)> {
        let spec = &self.spec;
        // What a control node that sends no variables still gets; the
        // control node's (`spec.vars`, Travis's full set) follow and win.
        let mut v: Vec<(String, String)> = [
            ("CI", "true".to_string()),
            ("TRAVIS", "true".to_string()),
            ("KHA", "true".to_string()),
            ("TRAVIS_BRANCH", spec.branch.clone()),
            ("TRAVIS_COMMIT", spec.commit.clone()),
            ("TRAVIS_BUILD_ID", spec.build_id.to_string()),
            ("TRAVIS_BUILD_NUMBER", spec.build_id.to_string()),
            ("TRAVIS_JOB_ID", self.id.to_string()),
            (
                "TRAVIS_JOB_NUMBER",
                format!("{}.{}", spec.build_id, spec.number),
            ),
            ("TRAVIS_REPO_SLUG", spec.project.clone()),
            ("TRAVIS_CPU_ARCH", self.choice.arch.debian.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, val) in &spec.vars {
            // A name is spliced into `export NAME=…`: only shell names.
            if !kha_core::travis::vars::is_var_name(k) {
                warn!(job_id = self.id, name = %k, "ignoring a variable with an invalid name");
                continue;
            }
            v.retain(|(old, _)| old != k);
            v.push((k.clone(), val.clone()));
        }
        v
    }

    /// The job's environment as builder hooks see it: Travis's variables
    /// and kha's own. The job's `env:` lines are shell code meant for the
    /// container: never evaluated here, only passed on as text.
    fn hook_vars(&self) -> Vec<(String, String)> {
        let spec = &self.spec;
        let mut v = self.travis_vars();
        for (k, val) in [
            ("KHA_JOB_ID", self.id.to_string()),
            (
                "KHA_JOB_NUMBER",
                format!("{}.{}", spec.build_id, spec.number),
            ),
            ("KHA_JOB_EPOCH", self.epoch.to_string()),
            ("KHA_BUILD_ID", spec.build_id.to_string()),
            ("KHA_PROJECT", spec.project.clone()),
            ("KHA_REPO_URL", hooks::without_userinfo(&spec.repo_url)),
            ("KHA_BRANCH", spec.branch.clone()),
            ("KHA_COMMIT", spec.commit.clone()),
            ("KHA_WORKSPACE", self.run.workspace.display().to_string()),
            ("KHA_IMAGE", self.run.image.clone()),
            ("KHA_EXECUTOR", self.shared.executor.kind().to_string()),
            ("KHA_BUILDER_NAME", self.shared.cfg.name.clone()),
            ("KHA_JOB_ENV", spec.env.join("\n")),
        ] {
            v.push((k.to_string(), val));
        }
        v
    }

    /// Step 1: the revision, into a fresh workspace, through the VCS.
    /// Returns where the workspace is: on disk if it did not fit in the
    /// tmpfs.
    async fn checkout(&self, spool: &SharedSpool) -> Result<PathBuf, Verdict> {
        if let Err(e) = crate::remove_dir(&self.run.workspace) {
            return Err(Verdict::infrastructure(format!(
                "cannot clear the workspace: {e}"
            )));
        }
        let (shared, name) = (self.shared.clone(), self.run.name.clone());
        let vcs = self.shared.vcs.get(self.spec.vcs);
        let (src, creds) = (Source::of(&self.spec), self.creds.clone());
        let described = vcs.describe(&src);
        let started = std::time::Instant::now();
        let checkout = tokio::task::spawn_blocking(move || {
            shared.dirs.checkout(&*vcs, &src, &name, creds.as_ref())
        })
        .await;
        match checkout {
            Ok(Ok((workspace, on_disk))) => {
                self.shared
                    .metrics
                    .checkout
                    .observe(started.elapsed().as_secs_f64());
                if let Some(line) = on_disk {
                    spool.note(&line);
                }
                if let Some(line) = described {
                    spool.note(&line);
                }
                Ok(workspace)
            }
            Ok(Err(e)) => {
                spool.note(&format!("checkout failed: {e}"));
                Err(Verdict::infrastructure(format!("checkout failed: {e}")))
            }
            Err(e) => Err(Verdict::infrastructure(format!("checkout failed: {e}"))),
        }
    }

    /// Step 2: the driver script.
    /// `added`: variables the builder's hooks added, exported after
    /// Travis's and before the job's own `env:`.
    fn prepare(&self, added: &[(String, String)]) -> Result<(), Verdict> {
        let spec = &self.spec;
        let mut owned = self.travis_vars();
        owned.insert(3, ("HOME".to_string(), "/root".to_string()));
        owned.extend(added.iter().cloned());
        let vars: Vec<(&str, String)> =
            owned.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let prelude = activate::prelude(&self.choice, &self.image_about());
        let text = driver::script(&DriverInput {
            prelude: &prelude,
            lang: self.shared.lang(&self.choice.image),
            phases: &spec.phases,
            env: &spec.env,
            vars: &vars,
            cache: spec.cache.as_ref(),
            secure_env: spec.secure_env,
            secure: &self.secure.vars,
        });
        // The scratch directory is the executor's to create (the host
        // executor needs none: a directory less made and removed per job).
        crate::kha_dir(&self.run.workspace)
            .and_then(|dir| crate::write_fresh(&dir.join("run.sh"), &text))
            .map_err(|e| Verdict::infrastructure(format!("cannot write the driver: {e}")))
    }

    /// The chosen image as the log describes it.
    fn image_about(&self) -> String {
        self.shared
            .executor
            .images()
            .into_iter()
            .find(|i| i.name == self.choice.image)
            .map_or_else(|| format!("arch={}", self.choice.arch.label), |i| i.about)
    }

    /// Step 3: the executor's command, spawned and supervised.
    async fn run_driver(&self, spool: &SharedSpool) -> Result<Waited, Verdict> {
        let (exec, run) = (self.shared.executor.clone(), self.run.clone());
        // The container's start, as the driver's first line in the state
        // file shows it: looked for every 20 ms, and once more when the
        // run is over (a job shorter than that).
        let started = std::time::Instant::now();
        let state = self.run.workspace.join(".kha/state");
        let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let observe = {
            let (metrics, seen) = (self.shared.metrics.clone(), seen.clone());
            move || {
                if !seen.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    metrics
                        .container_start
                        .observe(started.elapsed().as_secs_f64());
                }
            }
        };
        let watch = {
            let (state, observe) = (state.clone(), observe.clone());
            crate::task::spawn("container-start", async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
                loop {
                    tick.tick().await;
                    if tokio::fs::metadata(&state).await.is_ok() {
                        observe();
                        return;
                    }
                }
            })
        };
        let _watch = AbortOnDrop(watch);
        let cmd = match tokio::task::spawn_blocking(move || exec.command(&run)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                spool.note(&format!("cannot start the job: {e}"));
                return Err(Verdict::infrastructure(e.to_string()));
            }
            Err(e) => return Err(Verdict::infrastructure(e.to_string())),
        };
        let waited = self.supervise(cmd, spool).await;
        if state.exists() {
            observe();
        }
        waited.map_err(|e| {
            self.explain_no_start(&self.progress(), spool);
            Verdict::infrastructure(e)
        })
    }

    /// The driver's progress, and the limits the executor saw the run
    /// reach when it stopped it.
    fn progress(&self) -> driver::Progress {
        let mut state = crate::read_regular(&self.run.workspace.join(".kha/state"), 1 << 20)
            .unwrap_or_default();
        let limits = self.run.scratch.join(crate::executor::lxc::LIMITS_FILE);
        if let Ok(seen) = crate::read_regular(&limits, 1 << 12) {
            state.push('\n');
            state.push_str(&seen);
        }
        driver::read_progress(&state)
    }

    /// A driver that never ran: say why, from the executor's own log.
    fn explain_no_start(&self, progress: &driver::Progress, spool: &SharedSpool) {
        if !progress.started {
            for line in self.shared.executor.diagnose(&self.run) {
                spool.note(&line);
            }
        }
    }

    /// Step 4: what the run comes to, from how it ended and how far the
    /// driver got.
    fn collect(&self, waited: Waited, spool: &SharedSpool) -> Verdict {
        let progress = self.progress();
        self.explain_no_start(&progress, spool);
        let mut verdict = match waited {
            Waited::TimedOut => Verdict {
                outcome: JobOutcome::TimedOut,
                detail: format!("timed out after {} s", self.spec.timeout_secs),
            },
            Waited::Stopped => Verdict {
                outcome: JobOutcome::Canceled,
                detail: "stopped".into(),
            },
            Waited::Exited(code) => {
                let (outcome, detail) = driver::outcome(code, &progress);
                Verdict { outcome, detail }
            }
        };
        // The limits it ran into come first: they are why it ended so.
        let mut whys: Vec<String> = progress.limits.iter().map(|h| h.describe()).collect();
        for why in &whys {
            spool.note(why);
        }
        if !whys.is_empty() {
            whys.extend((!verdict.detail.is_empty()).then(|| verdict.detail.clone()));
            verdict.detail = whys.join("; ");
        }
        verdict
    }

    /// Step 5: the executor removes what the run left (container, scratch).
    async fn cleanup(&self) {
        let (exec, run) = (self.shared.executor.clone(), self.run.clone());
        match tokio::task::spawn_blocking(move || exec.cleanup(&run)).await {
            Ok(Err(e)) => warn!(run = %self.run.name, error = %e, "cleanup failed"),
            Err(e) => warn!(run = %self.run.name, error = %e, "cleanup panicked"),
            Ok(Ok(())) => {}
        }
    }

    /// A stop from outside decides the outcome, whatever the run came to.
    fn overrule(&self, verdict: Verdict, spool: &SharedSpool) -> Verdict {
        match self.control.reason() {
            Some(StopReason::Canceled { .. }) => {
                spool.note("the job was canceled");
                Verdict {
                    outcome: JobOutcome::Canceled,
                    detail: "canceled".into(),
                }
            }
            Some(StopReason::Shutdown) => {
                spool.note("the builder shut down; the job will run again elsewhere");
                Verdict::infrastructure("builder shut down")
            }
            _ => verdict,
        }
    }

    /// Reports the verdict once the whole log is shipped; a job whose lease
    /// is gone reports nothing.
    async fn report(
        &self,
        verdict: Verdict,
        total_len: u64,
        sha256: String,
        shipper: JoinHandle<Result<(), ShipError>>,
        ship_stop: CancellationToken,
    ) {
        let (job_id, epoch) = (self.id, self.epoch);
        if self.control.reason() == Some(StopReason::Revoked) {
            ship_stop.cancel();
            match shipper.await {
                Ok(Ok(()) | Err(ShipError::Canceled)) => {}
                Ok(Err(e)) => warn!(job_id, error = %e, "log shipping ended"),
                Err(e) => warn!(job_id, error = %e, "log shipper failed"),
            }
            info!(job_id, epoch, "job stopped: its lease is gone");
            return;
        }
        match shipper.await {
            Ok(Ok(())) => self.finish(verdict, total_len, sha256).await,
            Ok(Err(e)) => warn!(job_id, error = %e, "log not shipped; not reporting a result"),
            Err(e) => warn!(job_id, error = %e, "log shipper failed"),
        }
    }

    /// Removes the workspace and the spool.
    async fn remove_files(&self) {
        let (ws, files) = (
            self.run.workspace.clone(),
            [self.spool_path.clone(), self.env_file.clone()],
        );
        let removed = tokio::task::spawn_blocking(move || {
            crate::remove_dir(&ws)?;
            for f in files {
                match std::fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(job_id = self.id, error = %e, "cannot remove the job's files"),
            Err(e) => warn!(job_id = self.id, error = %e, "removing the job's files panicked"),
        }
    }
}

/// Aborts a helper task when the step that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
