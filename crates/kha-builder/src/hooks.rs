//! Builder hooks, Buildkite-style: executables in the builder's
//! `hooks_dir`, put there by the builder's owner and run on this host,
//! outside the job's container, around every job:
//!
//! ```text
//! environment → pre-checkout → (checkout) → post-checkout → pre-command
//!   → (the job, in its container) → post-command → pre-exit
//! ```
//!
//! Only the hooks present run. The ones before the command are gates: a
//! hook that exits non-zero, is killed, or is still running at
//! `hook_timeout_secs` errors the job, and nothing after it runs but
//! `pre-exit`. `post-command` (after the job's command, whatever it came
//! to) and `pre-exit` (always, last, even when a gate failed) cannot change
//! the result: their failures are written to the log.
//!
//! Each hook gets the builder's environment plus the job's
//! ([`JobFacts::env`]: `KHA_*` and Travis's variables; the job's `env:`
//! lines are shell code for the container and are never evaluated here,
//! only passed verbatim in `KHA_JOB_ENV`). A hook before the command may
//! add variables for the later hooks and for the job by writing
//! `NAME=value` lines to the file named by `$KHA_ENV_FILE`.
//!
//! Output goes to the job's log under a header line (`kha: running builder
//! hook pre-command`). A hook runs in a process group of its own; when it
//! ends (or times out, or the job is canceled) what is left of the group is
//! killed.

use crate::logs::SharedSpool;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// How long a hook's output may still arrive after it ended (from a
/// process that left its group and holds the pipe open).
const DRAIN: Duration = Duration::from_secs(2);

/// The builder hooks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Environment,
    PreCheckout,
    PostCheckout,
    PreCommand,
    PostCommand,
    PreExit,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Environment => "environment",
            Hook::PreCheckout => "pre-checkout",
            Hook::PostCheckout => "post-checkout",
            Hook::PreCommand => "pre-command",
            Hook::PostCommand => "post-command",
            Hook::PreExit => "pre-exit",
        }
    }

    /// A gate: its failure errors the job. Gates may add variables.
    pub fn gates(self) -> bool {
        !matches!(self, Hook::PostCommand | Hook::PreExit)
    }
}

/// How a hook run came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// No such hook: nothing ran.
    Absent,
    Passed,
    /// It failed; the text says how, for the log and the job's detail
    /// ("builder hook pre-command failed (exit 3)").
    Failed(String),
    /// The job was stopped while it ran; it was killed.
    Stopped,
}

/// The builder's hooks directory and timeout.
#[derive(Debug, Clone)]
pub struct BuilderHooks {
    pub dir: Option<PathBuf>,
    pub timeout: Duration,
}

/// One job's hooks: the job's variables and those its hooks added, its
/// log, and its stop signal.
pub struct JobHooks {
    hooks: BuilderHooks,
    /// `KHA_*` and Travis's variables of the job.
    base: Vec<(String, String)>,
    /// Added by gates through `$KHA_ENV_FILE`, in order (a later value of
    /// the same name replaces the earlier one).
    added: Vec<(String, String)>,
    /// The file a hook writes its variables to (emptied before each).
    env_file: PathBuf,
    spool: SharedSpool,
    /// A cancel or shutdown: kills a running hook (but not `pre-exit`).
    stop: CancellationToken,
}

impl BuilderHooks {
    pub fn new(cfg: &crate::config::Config) -> BuilderHooks {
        BuilderHooks {
            dir: cfg.hooks_dir.clone(),
            timeout: Duration::from_secs(cfg.hook_timeout_secs.max(1)),
        }
    }

    fn path(&self, hook: Hook) -> Option<PathBuf> {
        let p = self.dir.as_ref()?.join(hook.name());
        p.is_file().then_some(p)
    }
}

impl JobHooks {
    pub fn new(
        hooks: BuilderHooks,
        base: Vec<(String, String)>,
        env_file: PathBuf,
        spool: SharedSpool,
        stop: CancellationToken,
    ) -> JobHooks {
        JobHooks {
            hooks,
            base,
            added: vec![],
            env_file,
            spool,
            stop,
        }
    }

    /// Sets one of the job's variables (`KHA_WORKSPACE` once the
    /// checkout decided where the workspace is).
    pub fn set_var(&mut self, name: &str, value: String) {
        match self.base.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.base.push((name.to_string(), value)),
        }
    }

    /// The variables gates added, for the job.
    pub fn added(&self) -> &[(String, String)] {
        &self.added
    }

    /// Runs `hook` if present, in `cwd`, with the job's environment plus
    /// `extra`; its output goes to the log. A gate's variables are kept.
    pub async fn run(&mut self, hook: Hook, cwd: &Path, extra: &[(&str, String)]) -> Ran {
        let Some(program) = self.hooks.path(hook) else {
            return Ran::Absent;
        };
        let name = hook.name();
        self.spool
            .line(&format!("kha: running builder hook {name}"));
        let executable = std::fs::metadata(&program)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        let ran = if !executable {
            Ran::Failed(format!(
                "builder hook {name} is not executable (chmod +x {})",
                program.display()
            ))
        } else {
            if let Err(e) = std::fs::write(&self.env_file, b"") {
                tracing::warn!(error = %e, "cannot create the hooks' environment file");
            }
            let ran = self.spawn_and_wait(hook, &program, cwd, extra).await;
            if ran == Ran::Passed && hook.gates() {
                self.read_env_file(name);
            }
            ran
        };
        if let Ran::Failed(why) = &ran {
            self.spool.line(&format!("kha: {why}"));
        }
        ran
    }

    async fn spawn_and_wait(
        &self,
        hook: Hook,
        program: &Path,
        cwd: &Path,
        extra: &[(&str, String)],
    ) -> Ran {
        let name = hook.name();
        let failed = |how: String| Ran::Failed(format!("builder hook {name} {how}"));
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_remove("KHA_ENROL_TOKEN")
            .envs(self.base.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(self.added.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env("KHA_HOOK", name)
            .env("KHA_ENV_FILE", &self.env_file)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .process_group(0);
        let reader = match output_pipe(&mut cmd) {
            Ok(r) => r,
            Err(e) => return failed(format!("could not be started: {e}")),
        };
        let mut child = match spawn(&mut cmd) {
            Ok(c) => c,
            Err(e) => return failed(format!("could not be started: {e}")),
        };
        drop(cmd); // our copies of the pipe's write end
        let group = Group(child.id().map(|p| Pid::from_raw(p as i32)));
        // pre-exit runs even for a stopped job.
        let never = CancellationToken::new();
        let stop = if hook == Hook::PreExit {
            &never
        } else {
            &self.stop
        };
        let mut pump = pin!(pump(reader, &self.spool));
        let mut pumped = false;
        let mut deadline = pin!(tokio::time::sleep(self.hooks.timeout));
        let (ran, exited) = loop {
            tokio::select! {
                _ = &mut pump, if !pumped => pumped = true,
                st = child.wait() => break (match st {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(0), _) => Ran::Passed,
                        (Some(c), _) => failed(format!("failed (exit {c})")),
                        (None, Some(sig)) => failed(format!("failed (killed by signal {sig})")),
                        (None, None) => failed("failed".into()),
                    },
                    Err(e) => failed(format!("failed: {e}")),
                }, true),
                _ = &mut deadline => break (failed(format!(
                    "timed out after {}s; killed",
                    self.hooks.timeout.as_secs()
                )), false),
                _ = stop.cancelled() => break (Ran::Stopped, false),
            }
        };
        // What the hook left running goes with it; then the pipe closes.
        group.kill();
        if !pumped && tokio::time::timeout(DRAIN, &mut pump).await.is_err() {
            tracing::debug!(hook = name, "hook output still open after it ended");
        }
        if !exited {
            let _ = tokio::time::timeout(DRAIN, child.wait()).await;
        }
        ran
    }

    /// Takes the `NAME=value` lines a hook wrote to `$KHA_ENV_FILE`. Blank
    /// lines and `#` comments are skipped; a line that is not an assignment
    /// to a shell name is skipped with a note in the log.
    fn read_env_file(&mut self, hook: &str) {
        let Ok(text) = std::fs::read_to_string(&self.env_file) else {
            return;
        };
        for (i, line) in text.lines().enumerate() {
            match parse_assignment(line) {
                Parsed::Skip => {}
                Parsed::Var(k, v) => {
                    self.added.retain(|(name, _)| name != k);
                    self.added.push((k.to_string(), v.to_string()));
                }
                Parsed::Bad => self.spool.line(&format!(
                    "kha: builder hook {hook}: line {} of $KHA_ENV_FILE is not NAME=value; ignored",
                    i + 1
                )),
            }
        }
    }
}

/// stdout and stderr on one pipe, so the log keeps their interleaving.
fn output_pipe(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    let (r, w) = std::io::pipe()?;
    let w2 = w.try_clone()?;
    cmd.stdout(w).stderr(w2);
    tokio::net::unix::pipe::Receiver::from_owned_fd(r.into())
}

async fn pump(mut r: tokio::net::unix::pipe::Receiver, spool: &SharedSpool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Err(e) = spool.write(&buf[..n]) {
                    tracing::warn!(error = %e, "cannot write a hook's output to the spool");
                    return;
                }
            }
        }
    }
}

/// Spawns, retrying a moment while the file is still open for writing
/// somewhere (ETXTBSY: a hook being installed as it is run).
fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// A hook's process group, killed when its run ends or is dropped (a job
/// task aborted at shutdown).
struct Group(Option<Pid>);

impl Group {
    fn kill(&self) {
        if let Some(pg) = self.0 {
            let _ = killpg(pg, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    Skip,
    Var(&'a str, &'a str),
    Bad,
}

fn parse_assignment(line: &str) -> Parsed<'_> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Parsed::Skip;
    }
    let Some((k, v)) = trimmed.split_once('=') else {
        return Parsed::Bad;
    };
    let k = k.strip_prefix("export ").unwrap_or(k).trim();
    let shell_name = k
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if shell_name {
        Parsed::Var(k, v)
    } else {
        Parsed::Bad
    }
}

/// `https://user:pw@host/x` → `https://host/x`: a repository URL may carry
/// credentials, and hooks are told where the code comes from, not how to
/// fetch it.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Spool;
    use std::time::Instant;

    struct Setup {
        dir: tempfile::TempDir,
        hooks_dir: PathBuf,
        hooks: JobHooks,
        log: PathBuf,
    }

    fn setup(timeout: Duration) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let hooks_dir = dir.path().join("hooks");
        std::fs::create_dir(&hooks_dir).unwrap();
        let log = dir.path().join("job.log");
        let (spool, _) = Spool::create(&log, 1 << 20).unwrap();
        let hooks = JobHooks::new(
            BuilderHooks {
                dir: Some(hooks_dir.clone()),
                timeout,
            },
            vec![("KHA_JOB_ID".into(), "42".into())],
            dir.path().join("env"),
            SharedSpool::new(spool),
            CancellationToken::new(),
        );
        Setup {
            hooks_dir,
            hooks,
            log,
            dir,
        }
    }

    impl Setup {
        fn hook(&self, hook: Hook, body: &str) {
            let p = self.hooks_dir.join(hook.name());
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        async fn run(&mut self, hook: Hook) -> Ran {
            let cwd = self.dir.path().to_path_buf();
            self.hooks
                .run(hook, &cwd, &[("KHA_JOB_OUTCOME", "passed".into())])
                .await
        }

        fn log(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap()
        }
    }

    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[tokio::test]
    async fn a_hook_runs_with_the_job_environment_and_its_output_is_logged() {
        let mut s = setup(Duration::from_secs(10));
        assert_eq!(s.run(Hook::PreCommand).await, Ran::Absent);
        assert_eq!(s.log(), "", "an absent hook leaves no trace");
        s.hook(
            Hook::Environment,
            "echo \"env for $KHA_JOB_ID in $(basename \"$PWD\")\"; echo warn >&2\n\
             printf 'A=one\\n# c\\n\\nB=two words=x\\nexport C=3\\nbad line\\nA=uno\\n' > \"$KHA_ENV_FILE\"",
        );
        assert_eq!(s.run(Hook::Environment).await, Ran::Passed);
        assert_eq!(
            s.hooks.added(),
            [
                ("B".to_string(), "two words=x".to_string()),
                ("C".into(), "3".into()),
                ("A".into(), "uno".into())
            ]
        );
        s.hook(
            Hook::PreCommand,
            "printf '%s' \"$KHA_HOOK $A $B $KHA_JOB_OUTCOME\"",
        );
        assert_eq!(s.run(Hook::PreCommand).await, Ran::Passed);
        s.hook(Hook::PostCommand, "echo 'X=1' > \"$KHA_ENV_FILE\"; exit 3");
        assert_eq!(
            s.run(Hook::PostCommand).await,
            Ran::Failed("builder hook post-command failed (exit 3)".into())
        );
        let dir = s
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert_eq!(
            s.log(),
            format!(
                "kha: running builder hook environment\nenv for 42 in {dir}\nwarn\n\
                 kha: builder hook environment: line 6 of $KHA_ENV_FILE is not NAME=value; ignored\n\
                 kha: running builder hook pre-command\npre-command uno two words=x passed\n\
                 kha: running builder hook post-command\n\
                 kha: builder hook post-command failed (exit 3)\n"
            )
        );
        assert!(
            !s.hooks.added().iter().any(|(k, _)| k == "X"),
            "only gates add variables"
        );
    }

    #[tokio::test]
    async fn a_hanging_hook_is_killed_with_its_group_at_the_timeout() {
        let mut s = setup(Duration::from_secs(1));
        let pid = s.dir.path().join("pid");
        s.hook(
            Hook::PreCheckout,
            &format!(
                "trap '' TERM; sleep 300 & echo $! > {}; echo waiting; wait",
                pid.display()
            ),
        );
        let t = Instant::now();
        assert_eq!(
            s.run(Hook::PreCheckout).await,
            Ran::Failed("builder hook pre-checkout timed out after 1s; killed".into())
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !alive(&std::fs::read_to_string(&pid).unwrap()),
            "the hook's child survived"
        );
        assert!(s
            .log()
            .ends_with("waiting\nkha: builder hook pre-checkout timed out after 1s; killed\n"));
    }

    #[tokio::test]
    async fn a_stop_kills_a_running_hook_but_not_pre_exit() {
        let mut s = setup(Duration::from_secs(60));
        s.hook(Hook::PreCommand, "sleep 300");
        s.hook(Hook::PreExit, "sleep 0.3; echo bye");
        let stop = s.hooks.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        });
        let t = Instant::now();
        assert_eq!(s.run(Hook::PreCommand).await, Ran::Stopped);
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(s.run(Hook::PreExit).await, Ran::Passed);
        assert!(s.log().ends_with("pre-exit\nbye\n"), "{}", s.log());
    }

    #[tokio::test]
    async fn a_hook_that_is_not_executable_fails() {
        let mut s = setup(Duration::from_secs(5));
        s.hook(Hook::PostCheckout, "true");
        let p = s.hooks_dir.join("post-checkout");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            s.run(Hook::PostCheckout).await,
            Ran::Failed(format!(
                "builder hook post-checkout is not executable (chmod +x {})",
                p.display()
            ))
        );
    }

    #[test]
    fn assignments_and_urls() {
        for (line, want) in [
            ("A=1", Parsed::Var("A", "1")),
            ("  export _X2= spaced ", Parsed::Var("_X2", " spaced ")),
            ("# A=1", Parsed::Skip),
            ("   ", Parsed::Skip),
            ("1A=x", Parsed::Bad),
            ("A-B=x", Parsed::Bad),
            ("=x", Parsed::Bad),
            ("novalue", Parsed::Bad),
        ] {
            assert_eq!(parse_assignment(line), want, "{line:?}");
        }
        assert_eq!(
            without_userinfo("https://u:p@git.example/x@y.git"),
            "https://git.example/x@y.git"
        );
        assert_eq!(without_userinfo("file:///srv/r"), "file:///srv/r");
        assert_eq!(without_userinfo("/srv/r"), "/srv/r");
    }
}
