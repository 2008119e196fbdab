//! A cluster of the real binaries on loopback: one `kha-control` (which
//! binds port 0 and says in `<data_dir>/grpc.addr` and `http.addr` which
//! ports it got), the `kha-builder`s enrolled with it, and the `kha` CLI
//! run against it. Dropping it stops every process and container it
//! started; a failed test's logs are kept next to its temp dir.

use crate::lxc::require_lxc;
use crate::process::{bin, wait_for, Proc};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A control node with its data dir, plus the builders started for it.
/// Made by [`crate::Fixture`].
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub heartbeat_ms: u64,
    pub control: Option<Proc>,
    pub builders: Vec<Builder>,
    /// With TLS: the CA certificate clients trust.
    pub ca: Option<PathBuf>,
    /// Extra environment for the control node and builders.
    pub env: Vec<(String, String)>,
    /// The control node's config file, if the test wrote one.
    pub config: Option<PathBuf>,
    /// The addresses the control node bound on its first start; a restart
    /// binds them again, as the builders know them.
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    /// File systems mounted for the test (a small disk for the control
    /// node's data dir), unmounted once everything is stopped.
    pub mounts: Vec<PathBuf>,
}

pub struct Builder {
    pub proc: Proc,
    pub data: PathBuf,
    pub name: String,
    /// The host executor (no lxc, no containers to clean up).
    pub host: bool,
}

impl Builder {
    fn identity(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.data.join("identity.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v[key].as_str().unwrap_or_default().to_string()
    }

    pub fn id(&self) -> String {
        self.identity("builder_id")
    }

    pub fn secret(&self) -> String {
        self.identity("secret")
    }
}

/// Numbers log files, so a restarted process gets a new one.
fn next_log_number() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Cluster {
    /// A cluster in `dir` with no process started yet.
    pub(crate) fn new(
        dir: tempfile::TempDir,
        heartbeat_ms: u64,
        ca: Option<PathBuf>,
        env: Vec<(String, String)>,
    ) -> Cluster {
        Cluster {
            dir,
            heartbeat_ms,
            control: None,
            builders: vec![],
            ca,
            env,
            config: None,
            grpc: None,
            http: None,
            mounts: Vec::new(),
        }
    }

    /// The web UI's address for the first start (instead of port 0).
    pub(crate) fn preset_http(&mut self, addr: SocketAddr) {
        self.http = Some(addr);
    }

    fn tls_args(&self) -> Vec<String> {
        match self.ca {
            Some(_) => vec![
                "--tls-cert".into(),
                self.path("cert.pem").to_string_lossy().to_string(),
                "--tls-key".into(),
                self.path("key.pem").to_string_lossy().to_string(),
            ],
            None => vec![],
        }
    }

    /// The control node's HTTP base URL (webhooks).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http.expect("the control node started"))
    }

    /// The address clients use (`https://…` with TLS).
    pub fn url(&self) -> String {
        match self.ca {
            Some(_) => format!("https://{}", self.addr()),
            None => self.addr(),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The control node's gRPC address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.grpc.expect("the control node started").to_string()
    }

    /// Starts the control node and waits until it answers. The first start
    /// listens on port 0 (the web UI on its preset port, if it has one); a
    /// restart binds the same ports again (retrying while they are not free
    /// yet).
    pub fn start_control(&mut self) {
        let data = self.path("control");
        let (grpc_file, http_file) = (data.join("grpc.addr"), data.join("http.addr"));
        let restart = self.grpc.is_some();
        let mut tries = 0;
        let (grpc, http) = loop {
            for f in [&grpc_file, &http_file] {
                if let Err(e) = std::fs::remove_file(f) {
                    assert!(e.kind() == std::io::ErrorKind::NotFound, "{e}");
                }
            }
            let mut proc = self.spawn_control();
            let bound = wait_for(
                "the control node to listen",
                Duration::from_secs(20),
                || {
                    if let (Some(g), Some(h)) = (read_addr(&grpc_file), read_addr(&http_file)) {
                        return Some(Some((g, h)));
                    }
                    matches!(proc.child.try_wait(), Ok(Some(_))).then_some(None)
                },
            );
            match bound {
                Some(addrs) => {
                    self.control = Some(proc);
                    break addrs;
                }
                // A port known in advance may still be held a moment.
                None if (restart || self.http.is_some())
                    && tries < 50
                    && proc.log_text().contains("binding") =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                None => panic!("the control node did not start:\n{}", proc.log_text()),
            }
        };
        self.grpc = Some(grpc);
        self.http = Some(http);
        // Listening comes before the admin token exists: wait for an
        // answer to a real call.
        wait_for(
            "the control node to answer",
            Duration::from_secs(20),
            || {
                self.kha(&["builder", "list"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    fn spawn_control(&self) -> Proc {
        let any = "127.0.0.1:0".to_string();
        let grpc = self.grpc.map_or(any.clone(), |a| a.to_string());
        let http = self.http.map_or(any, |a| a.to_string());
        let log = self.path(&format!("control-{}.log", next_log_number()));
        let mut cmd = Command::new(bin("kha-control"));
        cmd.args([
            "--data-dir",
            &self.path("control").to_string_lossy(),
            "--listen",
            &grpc,
            "--http-listen",
            &http,
            "--heartbeat-ms",
            &self.heartbeat_ms.to_string(),
            "--max-attempts",
            "3",
        ])
        .args(self.tls_args())
        .args(
            self.config
                .iter()
                .flat_map(|c| [OsStr::new("--config"), c.as_os_str()]),
        )
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .env("KHA_LOG", "info,kha_control=debug");
        Proc::spawn(&mut cmd, log)
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.path("control/admin.token"))
            .expect("admin token")
            .trim()
            .to_string()
    }

    /// Runs `kha` with the given arguments.
    pub fn kha(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("kha"));
        if let Some(ca) = &self.ca {
            cmd.env("KHA_CA", ca);
        }
        cmd.args(args)
            .env("KHA_SERVER", self.url())
            .env("KHA_DATA_DIR", self.path("control"))
            .env("HOME", self.dir.path())
            .output()
            .expect("run kha")
    }

    /// Runs `kha`, asserts success, returns stdout.
    pub fn kha_ok(&self, args: &[&str]) -> String {
        let o = self.kha(args);
        assert!(
            o.status.success(),
            "kha {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn kha_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.kha_ok(&a)).expect("kha --json output")
    }

    /// Mounts a new ext4 file system of `mib` MiB (a loop device; root
    /// only) at `dir`, unmounted when the cluster is dropped.
    pub fn small_disk(&mut self, dir: &Path, mib: u64) {
        let image = dir.with_extension("disk.img");
        std::fs::create_dir_all(dir).expect("mount point");
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("mkfs/mount");
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("truncate")
            .arg(format!("--size={mib}M"))
            .arg(&image));
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir));
        self.mounts.push(dir.to_path_buf());
    }

    pub fn enrolment_token(&self) -> String {
        self.kha_json(&["builder", "token", "create"])["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Starts a builder (lxc executor) with `slots` slots.
    pub fn builder(&mut self, name: &str, slots: u32) -> usize {
        self.builder_with(name, slots, &[])
    }

    /// Starts a builder with extra flags (e.g. `--label python=3.12`).
    pub fn builder_with(&mut self, name: &str, slots: u32, extra: &[&str]) -> usize {
        require_lxc();
        let token = self.enrolment_token();
        let data = self.path(&format!("builder-{name}"));
        create_default_image(&data);
        let proc = self.spawn_builder(&data, name, slots, Some(&token), extra);
        self.builders.push(Builder {
            proc,
            data,
            name: name.to_string(),
            host: false,
        });
        self.builders.len() - 1
    }

    /// Starts a builder with the host executor (jobs are plain processes of
    /// the test's user; no lxc needed), for tests of what the control node
    /// shows rather than of how a job is isolated.
    pub fn host_builder_with(&mut self, name: &str, slots: u32, extra: &[&str]) -> usize {
        let control = self.url();
        self.host_builder_to(&control, name, slots, extra)
    }

    /// Starts a host-executor builder that reaches the control node at
    /// `control` (a [`crate::FaultProxy`]'s URL) instead of directly.
    pub fn host_builder_via(&mut self, name: &str, slots: u32, control: &str) -> usize {
        self.host_builder_to(control, name, slots, &[])
    }

    fn host_builder_to(&mut self, control: &str, name: &str, slots: u32, extra: &[&str]) -> usize {
        let token = self.enrolment_token();
        let data = self.path(&format!("builder-{name}"));
        let mut args = vec!["--executor", "host", "--i-trust-every-job"];
        args.extend_from_slice(extra);
        let proc = self.spawn_process_to(control, &data, name, slots, Some(&token), &args);
        self.builders.push(Builder {
            proc,
            data,
            name: name.to_string(),
            host: true,
        });
        self.builders.len() - 1
    }

    /// Spawns a builder process on `data` (enrolling with `token` if given).
    pub fn spawn_builder(
        &self,
        data: &Path,
        name: &str,
        slots: u32,
        token: Option<&str>,
        extra: &[&str],
    ) -> Proc {
        require_lxc();
        self.spawn_process(data, name, slots, token, extra)
    }

    /// Spawns a `kha-builder` process with `extra` flags, whatever its
    /// executor.
    fn spawn_process(
        &self,
        data: &Path,
        name: &str,
        slots: u32,
        token: Option<&str>,
        extra: &[&str],
    ) -> Proc {
        self.spawn_process_to(&self.url(), data, name, slots, token, extra)
    }

    fn spawn_process_to(
        &self,
        control: &str,
        data: &Path,
        name: &str,
        slots: u32,
        token: Option<&str>,
        extra: &[&str],
    ) -> Proc {
        let log = self.path(&format!("builder-{name}-{}.log", next_log_number()));
        let mut cmd = Command::new(bin("kha-builder"));
        if let Some(ca) = &self.ca {
            cmd.env("KHA_CA", ca);
        }
        cmd.args([
            "--control",
            control,
            "--data-dir",
            &data.to_string_lossy(),
            "--name",
            name,
        ])
        .args(["--slots", &slots.to_string()])
        .args(extra)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .env("KHA_LOG", "info,kha_builder=debug");
        // As an operator should: in a file, not on the command line where
        // `ps` shows it to every local user.
        if let Some(t) = token {
            let file = self.path(&format!("enrol-token-{name}"));
            std::fs::write(&file, format!("{t}\n")).expect("writing the enrolment token");
            cmd.arg("--token-file").arg(&file);
        }
        Proc::spawn(&mut cmd, log)
    }

    /// Restarts builder `i` (same data dir, so same identity).
    pub fn restart_builder(&mut self, i: usize) {
        let (data, name) = (self.builders[i].data.clone(), self.builders[i].name.clone());
        self.builders[i].proc.kill9();
        self.builders[i].proc = if self.builders[i].host {
            self.spawn_process(
                &data,
                &name,
                1,
                None,
                &["--executor", "host", "--i-trust-every-job"],
            )
        } else {
            self.spawn_builder(&data, &name, 1, None, &[])
        };
    }

    pub fn wait_builders_connected(&self, n: usize) {
        wait_for(
            &format!("{n} builders to connect"),
            Duration::from_secs(20),
            || {
                let v = self.kha_json(&["builder", "list"]);
                let c = v
                    .as_array()?
                    .iter()
                    .filter(|b| b["state"] == "connected" || b["state"] == "draining")
                    .count();
                (c >= n).then_some(())
            },
        );
    }

    pub fn build(&self, id: u64) -> serde_json::Value {
        self.kha_json(&["build", "show", &id.to_string()])
    }

    /// Waits until a build is final; returns it.
    pub fn wait_build(&self, id: u64, timeout: Duration) -> serde_json::Value {
        wait_for(&format!("build {id} to finish"), timeout, || {
            let b = self.build(id);
            matches!(
                b["state"].as_str(),
                Some("passed" | "failed" | "errored" | "canceled")
            )
            .then_some(b)
        })
    }

    /// Triggers a build of `project` (forced) and returns its id.
    pub fn trigger(&self, project: &str, branch: Option<&str>) -> u64 {
        let mut args = vec!["build", "trigger", project, "--force"];
        if let Some(b) = branch {
            args.extend(["--branch", b]);
        }
        self.kha_json(&args)["id"].as_u64().expect("build id")
    }

    pub fn log(&self, job: u64) -> Vec<u8> {
        let o = self.kha(&["log", &job.to_string()]);
        assert!(
            o.status.success(),
            "kha log: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// Running lxc containers of builder `i`.
    pub fn containers_of(&self, i: usize) -> Vec<String> {
        let o = Command::new("lxc-ls")
            .args([
                "-P",
                &self.builders[i].data.join("lxc").to_string_lossy(),
                "--active",
                "-1",
            ])
            .output();
        match o {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            Err(_) => vec![],
        }
    }

    /// Leftover lxc containers of this cluster's builders.
    pub fn running_containers(&self) -> Vec<String> {
        (0..self.builders.len())
            .flat_map(|i| self.containers_of(i))
            .collect()
    }
}

/// The address in a file `kha-control` wrote, once it is there.
fn read_addr(file: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for b in &mut self.builders {
            if b.host {
                // Its jobs are its own process group's children: the tree goes.
                b.proc.kill_tree();
                continue;
            }
            b.proc.kill9();
            let cleanup = Command::new(bin("kha-builder"))
                .args(["--data-dir", &b.data.to_string_lossy(), "cleanup"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Err(e) = cleanup {
                eprintln!("kha-builder cleanup of {}: {e}", b.data.display());
            }
        }
        if let Some(c) = &mut self.control {
            c.kill_tree();
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test where a person can read them.
            let kept = self.dir.path().with_extension("failed");
            if let Err(e) = Command::new("cp")
                .args([
                    "-r",
                    &self.dir.path().to_string_lossy(),
                    &kept.to_string_lossy(),
                ])
                .status()
            {
                eprintln!("keeping the logs: {e}");
            }
            eprintln!("logs of the failed test kept in {}", kept.display());
        }
        for m in self.mounts.drain(..).rev() {
            let st = Command::new("umount").arg(&m).status();
            if !matches!(st, Ok(s) if s.success()) {
                eprintln!("umount {}: {st:?}", m.display());
            }
        }
    }
}

/// Bytes free for an unprivileged writer on the file system holding `dir`
/// (`df`'s "avail").
pub fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df of {}: {out:?}", dir.display()))
}

/// Makes the `default` image in a builder's data dir (`kha-builder image
/// create`, a few milliseconds).
pub(crate) fn create_default_image(data: &Path) {
    let o = Command::new(bin("kha-builder"))
        .arg("--data-dir")
        .arg(data)
        .args(["image", "create", "default"])
        .output()
        .expect("kha-builder image create");
    assert!(
        o.status.success(),
        "image create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
