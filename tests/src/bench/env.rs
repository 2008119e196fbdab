//! A benchmark cluster: the real `kha-control` and `kha-builder` processes on
//! loopback, with a temp data dir, driven through the admin gRPC API (no
//! `kha` CLI process per call: its start would dominate what is measured).
//!
//! Unlike `kha_tests::Cluster` (made for the e2e tests), processes run with
//! the production log filter (no debug logging), the executor can be chosen,
//! and binaries are looked up next to `kha-bench` itself.

use anyhow::{anyhow, bail, Context, Result};
use kha_proto::admin::admin_service_client::AdminServiceClient;
use kha_proto::admin::*;
use kha_tests::{Proc, Repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::Channel;

/// Every process the bench started and has not killed yet, so that an
/// interrupted run (Ctrl-C, SIGTERM) leaves nothing behind.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn register(pid: u32) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.push(pid);
    }
}

/// SIGKILLs every process the bench started that still runs (a pid is only
/// signalled while its command line still names a kha binary).
pub fn kill_children() {
    let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("kha-") {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Milliseconds since the epoch, as the control node stamps builds and jobs.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Where the kha binaries are: `$KHA_BIN_DIR`, else next to this program
/// (`target/release/kha-bench` → `target/release/kha-control`).
pub fn bin(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("KHA_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no parent dir of the bench"))?
            .to_path_buf(),
    };
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} is not built: run `cargo build --release -p kha-tests -p kha-control -p kha-builder` (or set KHA_BIN_DIR)",
            p.display()
        );
    }
    Ok(p)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    Lxc,
    Host,
}

impl Exec {
    pub fn name(self) -> &'static str {
        match self {
            Exec::Lxc => "lxc",
            Exec::Host => "host",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ControlOpts {
    pub heartbeat_ms: u64,
    pub log_cap_bytes: u64,
    pub max_attempts: u32,
    pub max_jobs_per_build: usize,
    /// Serve HTTP (web UI, JSON API, SSE) on a loopback port of its
    /// choosing; off by default, as the other scenarios do not use it.
    pub http: bool,
}

impl Default for ControlOpts {
    fn default() -> Self {
        ControlOpts {
            heartbeat_ms: kha_core::limits::DEFAULT_HEARTBEAT_MS,
            log_cap_bytes: kha_core::limits::DEFAULT_LOG_CAP_BYTES,
            max_attempts: kha_core::limits::DEFAULT_MAX_ATTEMPTS,
            max_jobs_per_build: 200,
            http: false,
        }
    }
}

pub struct BuilderProc {
    pub proc: Proc,
    pub data: PathBuf,
    pub name: String,
    pub exec: Exec,
    pub slots: u32,
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub opts: ControlOpts,
    pub control: Option<Proc>,
    pub builders: Vec<BuilderProc>,
    admin: Option<AdminServiceClient<Channel>>,
    token: String,
    enrol: Option<String>,
}

/// The log filter of the processes: the production default, unless
/// `KHA_BENCH_LOG` says otherwise (e.g. `debug`, to see where time goes).
fn log_filter() -> Vec<(String, String)> {
    std::env::var("KHA_BENCH_LOG")
        .map(|f| vec![("KHA_LOG".to_string(), f)])
        .unwrap_or_default()
}

/// Adds the admin token to a request.
pub fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

impl Env {
    /// A temp dir and a running control node, ready to answer.
    pub async fn start(opts: ControlOpts) -> Result<Env> {
        let dir = tempfile::Builder::new().prefix("kha-bench-").tempdir()?;
        // lxc needs every directory above the workspaces to be searchable.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let mut env = Env {
            dir,
            // 0 until the control node has bound a port of its choosing.
            port: 0,
            opts,
            control: None,
            builders: vec![],
            admin: None,
            token: String::new(),
            enrol: None,
        };
        env.start_control().await?;
        Ok(env)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The control node's HTTP base URL (with `ControlOpts::http`), from
    /// the address it wrote once it listened.
    pub fn http_url(&self) -> Result<String> {
        let a = std::fs::read_to_string(self.path("control/http.addr"))
            .context("the control node serves no HTTP (ControlOpts::http)")?;
        Ok(format!("http://{}", a.trim()))
    }

    pub fn control_pid(&self) -> u32 {
        self.control.as_ref().map(|c| c.child.id()).unwrap_or(0)
    }

    /// Spawns the control node (not waiting for it).
    pub fn spawn_control(&mut self) -> Result<()> {
        let o = &self.opts;
        let http = if o.http { "127.0.0.1:0" } else { "off" };
        let conf = format!(
            "data_dir = {:?}\ngrpc_listen = {:?}\nhttp_listen = {http:?}\nheartbeat_ms = {}\nlog_cap_bytes = {}\nmax_attempts = {}\nmax_jobs_per_build = {}\n",
            self.path("control").to_string_lossy(),
            self.addr(),
            o.heartbeat_ms,
            o.log_cap_bytes,
            o.max_attempts,
            o.max_jobs_per_build,
        );
        let conf_path = self.path("control.toml");
        std::fs::write(&conf_path, conf)?;
        // `wait_ready` learns the port from this file the control node writes.
        for f in ["control/grpc.addr", "control/http.addr"] {
            match std::fs::remove_file(self.path(f)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        let log = self.path(&format!("control-{}.log", now_ms() as u64));
        let f = std::fs::File::create(&log)?;
        let child = Command::new(bin("kha-control")?)
            .arg("--config")
            .arg(&conf_path)
            .env_remove("KHA_LOG")
            .envs(log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .context("starting kha-control")?;
        register(child.id());
        self.control = Some(Proc { child, log });
        self.admin = None;
        Ok(())
    }

    /// Starts the control node and waits until its admin API answers.
    /// Returns spawn → first successful admin call.
    pub async fn start_control(&mut self) -> Result<Duration> {
        let t = Instant::now();
        self.spawn_control()?;
        self.wait_ready(Duration::from_secs(20)).await?;
        Ok(t.elapsed())
    }

    /// Waits (polling every millisecond) until the admin API answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        let token_path = self.path("control/admin.token");
        let addr_path = self.path("control/grpc.addr");
        loop {
            if Instant::now() > until {
                bail!(
                    "the control node did not answer in {timeout:?}: {}",
                    self.control
                        .as_ref()
                        .map(|c| c.log_text())
                        .unwrap_or_default()
                );
            }
            if self.port == 0 {
                if let Some(a) = std::fs::read_to_string(&addr_path)
                    .ok()
                    .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok())
                {
                    self.port = a.port();
                }
            }
            if let Ok(t) = std::fs::read_to_string(&token_path) {
                if self.port != 0 && !t.trim().is_empty() {
                    self.token = t.trim().to_string();
                    if let Ok(ch) = Channel::from_shared(format!("http://{}", self.addr()))?
                        .tcp_nodelay(true)
                        .connect()
                        .await
                    {
                        let mut c = AdminServiceClient::new(ch)
                            .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES);
                        if c.list_projects(authed(&self.token, ListProjectsRequest {}))
                            .await
                            .is_ok()
                        {
                            self.admin = Some(c);
                            return Ok(());
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The admin client (a cheap clone of one HTTP/2 connection).
    pub fn admin(&self) -> AdminServiceClient<Channel> {
        self.admin.clone().expect("control node started")
    }

    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        authed(&self.token, msg)
    }

    pub async fn enrolment_token(&mut self) -> Result<String> {
        if let Some(t) = &self.enrol {
            return Ok(t.clone());
        }
        let t = self
            .admin()
            .create_enrolment_token(self.req(CreateEnrolmentTokenRequest {
                description: "kha-bench".into(),
            }))
            .await?
            .into_inner()
            .token;
        self.enrol = Some(t.clone());
        Ok(t)
    }

    /// A project building a fresh repository whose `.travis.yml` is `yml`.
    pub async fn project(&self, name: &str, yml: &str) -> Result<()> {
        self.project_files(name, &[(".travis.yml", yml)]).await
    }

    /// A project building a fresh repository of one commit with `files`.
    pub async fn project_files(&self, name: &str, files: &[(&str, &str)]) -> Result<()> {
        let repo = Repo::new(self.path(&format!("repo-{name}")));
        repo.commit(files, "bench");
        self.admin()
            .add_project(self.req(AddProjectRequest {
                name: name.into(),
                repo_url: repo.url(),
                default_branch: "master".into(),
                timeout_secs: 0,
                image: String::new(),
                no_poll: true,
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    /// Starts a builder process and returns its index (not waiting for it
    /// to connect).
    pub async fn spawn_builder(&mut self, name: &str, exec: Exec, slots: u32) -> Result<usize> {
        let token = self.enrolment_token().await?;
        let data = self.path(&format!("builder-{name}"));
        if exec == Exec::Lxc && !data.join("images/default/rootfs").exists() {
            let o = Command::new(bin("kha-builder")?)
                .arg("--data-dir")
                .arg(&data)
                .args(["image", "create", "default"])
                .output()?;
            if !o.status.success() {
                bail!("image create: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
        let proc = self.builder_proc(&data, name, exec, slots, Some(&token))?;
        self.builders.push(BuilderProc {
            proc,
            data,
            name: name.into(),
            exec,
            slots,
        });
        Ok(self.builders.len() - 1)
    }

    /// Starts a builder again on its data dir (it is enrolled already).
    pub fn respawn_builder(&self, data: &Path, name: &str, exec: Exec, slots: u32) -> Result<Proc> {
        self.builder_proc(data, name, exec, slots, None)
    }

    fn builder_proc(
        &self,
        data: &Path,
        name: &str,
        exec: Exec,
        slots: u32,
        token: Option<&str>,
    ) -> Result<Proc> {
        let log = self.path(&format!("builder-{name}-{}.log", now_ms() as u64));
        let f = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin("kha-builder")?);
        cmd.arg("--control")
            .arg(self.addr())
            .arg("--data-dir")
            .arg(data)
            .args(["--name", name, "--slots", &slots.to_string()])
            .env_remove("KHA_LOG")
            .envs(log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        if exec == Exec::Host {
            cmd.args(["--executor", "host", "--i-trust-every-job"]);
        }
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let child = cmd.spawn().context("starting kha-builder")?;
        register(child.id());
        Ok(Proc { child, log })
    }

    /// Connected builders, by id.
    pub async fn connected(&self) -> Result<Vec<String>> {
        let list = self
            .admin()
            .list_builders(self.req(ListBuildersRequest {}))
            .await?
            .into_inner();
        Ok(list
            .builders
            .into_iter()
            .filter(|b| {
                matches!(
                    b.state(),
                    kha_proto::admin::BuilderState::Connected
                        | kha_proto::admin::BuilderState::Draining
                )
            })
            .map(|b| b.id)
            .collect())
    }

    /// Waits until at least `n` builders are connected (polling every 2 ms).
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            if self.connected().await?.len() >= n {
                return Ok(());
            }
            if Instant::now() > until {
                let logs: Vec<String> = self.builders.iter().map(|b| b.proc.log_text()).collect();
                bail!("{n} builders did not connect in {timeout:?}: {logs:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn trigger(&self, project: &str) -> Result<Build> {
        let r = self
            .admin()
            .trigger_build(self.req(TriggerBuildRequest {
                project: project.into(),
                branch: String::new(),
                commit: String::new(),
                force: true,
            }))
            .await?
            .into_inner();
        r.build.ok_or_else(|| anyhow!("no build in the answer"))
    }

    pub async fn build(&self, id: u64) -> Result<Build> {
        Ok(self
            .admin()
            .get_build(self.req(GetBuildRequest { build_id: id }))
            .await?
            .into_inner())
    }

    /// Waits for a job to end by following its log (the server tells the
    /// follower as soon as it records the result); returns its state.
    pub async fn follow_to_end(&self, job: u64) -> Result<(String, u64)> {
        let mut s = self
            .admin()
            .follow_log(self.req(FollowLogRequest {
                job_id: job,
                offset: 0,
                follow: true,
                attempt: 0,
            }))
            .await?
            .into_inner();
        let mut bytes = 0u64;
        while let Some(m) = s.message().await? {
            bytes += m.data.len() as u64;
            if m.done {
                let state = kha_core::JobState::try_from(m.state())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                return Ok((state, bytes));
            }
        }
        bail!("log of job {job} ended without `done`")
    }

    /// Reads a finished job's stored log from `offset` to its end, handing
    /// each chunk to `chunk` as it arrives.
    pub async fn read_log(
        &self,
        job: u64,
        offset: u64,
        mut chunk: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut s = self
            .admin()
            .follow_log(self.req(FollowLogRequest {
                job_id: job,
                offset,
                follow: false,
                attempt: 0,
            }))
            .await?
            .into_inner();
        while let Some(m) = s.message().await? {
            chunk(&m.data);
            if m.done {
                break;
            }
        }
        Ok(())
    }

    /// Polls a build until it is final.
    pub async fn wait_build(&self, id: u64, poll: Duration, timeout: Duration) -> Result<Build> {
        let until = Instant::now() + timeout;
        loop {
            let b = self.build(id).await?;
            if kha_core::BuildState::try_from(b.state()).is_ok_and(|s| s.is_final()) {
                return Ok(b);
            }
            if Instant::now() > until {
                bail!("build {id} not final after {timeout:?}: {b:?}");
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// SIGKILLs everything and removes leftover containers.
    pub fn stop_all(&mut self) {
        for b in &mut self.builders {
            b.proc.kill9();
            if b.exec == Exec::Lxc {
                if let Ok(p) = bin("kha-builder") {
                    let _ = Command::new(p)
                        .arg("--data-dir")
                        .arg(&b.data)
                        .arg("cleanup")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        if let Some(c) = &mut self.control {
            c.kill9();
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_all();
        if std::env::var_os("KHA_BENCH_KEEP").is_some() {
            let kept = self.dir.path().with_extension("kept");
            let _ = Command::new("cp")
                .arg("-r")
                .arg(self.dir.path())
                .arg(&kept)
                .status();
            eprintln!("bench data kept in {}", kept.display());
        }
    }
}

/// Resident set size and its peak, in MiB, from /proc.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is 3rd.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14, stime 15 (1-based); rest starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time of the children a process has waited for (user + system), in
/// seconds.
pub fn children_cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

/// Threads of a process.
pub fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
