//! Helpers for kha's end-to-end tests: start the real `kha-control`,
//! `kha-builder` and `kha` binaries as separate processes on loopback, each
//! test in its own temp dir with its own ports, and clean up processes and
//! containers even when a test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the binaries (next to this test's own executable).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Can this machine run lxc containers for the tests?
pub fn lxc_available() -> bool {
    nix_is_root() && Path::new("/usr/bin/lxc-execute").exists()
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// True (and says so) when this machine cannot run the lxc tests.
pub fn no_lxc() -> bool {
    if !lxc_available() {
        eprintln!("SKIPPED: needs root and lxc (run the README's setup first)");
        return true;
    }
    false
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A test's own temp dir. lxc needs every directory above the workspaces
/// to be searchable, so it is 0755.
fn test_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kha-e2e-")
        .tempdir()
        .expect("temp dir");
    let _ = Command::new("chmod")
        .args(["755", &dir.path().to_string_lossy()])
        .status();
    dir
}

/// Makes a CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it
/// (`cert.pem`, `key.pem`) in `d`, with openssl.
pub fn make_certificates(d: &Path) {
    let ssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ssl(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kha test CA",
        ],
    ]
    .concat());
    ssl(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("ext");
    ssl(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A control node with its data dir, plus the builders started for it.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub heartbeat_ms: u64,
    pub control: Option<Proc>,
    pub builders: Vec<Builder>,
    /// With TLS: the CA certificate clients trust.
    pub ca: Option<PathBuf>,
    /// The control node's HTTP (webhook) port.
    pub http_port: u16,
    /// Extra environment for the control node and builders.
    pub env: Vec<(String, String)>,
}

pub struct Builder {
    pub proc: Proc,
    pub data: PathBuf,
    pub name: String,
}

impl Builder {
    pub fn id(&self) -> String {
        let text = std::fs::read_to_string(self.data.join("identity.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["builder_id"].as_str().unwrap_or_default().to_string()
    }

    pub fn secret(&self) -> String {
        let text = std::fs::read_to_string(self.data.join("identity.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["secret"].as_str().unwrap_or_default().to_string()
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(300)
    }

    pub fn start_with(heartbeat_ms: u64) -> Cluster {
        let dir = test_dir();
        let mut c = Cluster {
            dir,
            port: free_port(),
            heartbeat_ms,
            control: None,
            builders: vec![],
            ca: None,
            http_port: free_port(),
            env: vec![],
        };
        c.start_control();
        c
    }

    /// A cluster whose control node serves gRPC over TLS, with a
    /// certificate for 127.0.0.1 signed by a CA made for the test.
    pub fn start_tls() -> Cluster {
        let dir = test_dir();
        let d = dir.path();
        make_certificates(d);
        let ca = d.join("ca.pem");
        let mut c = Cluster {
            dir,
            port: free_port(),
            heartbeat_ms: 300,
            control: None,
            builders: vec![],
            ca: Some(ca),
            http_port: free_port(),
            env: vec![],
        };
        c.start_control();
        c
    }

    fn tls_args(&self) -> Vec<String> {
        match self.ca {
            Some(_) => ["--tls-cert", "cert.pem", "--tls-key", "key.pem"]
                .iter()
                .map(|a| match *a {
                    "cert.pem" | "key.pem" => self.path(a).to_string_lossy().to_string(),
                    a => a.to_string(),
                })
                .collect(),
            None => vec![],
        }
    }

    /// The control node's HTTP base URL (webhooks).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
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

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start_control(&mut self) {
        let log = self.path(&format!(
            "control-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let log = if log.exists() {
            self.path("control-2.log")
        } else {
            log
        };
        let f = std::fs::File::create(&log).expect("control log");
        let child = Command::new(bin("kha-control"))
            .args([
                "--data-dir",
                &self.path("control").to_string_lossy(),
                "--listen",
                &self.addr(),
            ])
            .args([
                "--heartbeat-ms",
                &self.heartbeat_ms.to_string(),
                "--max-attempts",
                "3",
            ])
            .args(self.tls_args())
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KHA_LOG", "info,kha_control=debug")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start kha-control");
        self.control = Some(Proc { child, log });
        let addr = self.addr();
        wait_for(
            "the control node to listen",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(&addr).ok(),
        );
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
        let token = self.enrolment_token();
        let data = self.path(&format!("builder-{name}"));
        let o = Command::new(bin("kha-builder"))
            .args([
                "--data-dir",
                &data.to_string_lossy(),
                "image",
                "create",
                "default",
            ])
            .output()
            .expect("create image");
        assert!(
            o.status.success(),
            "image create: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let proc = self.spawn_builder(&data, name, slots, Some(&token), extra);
        self.builders.push(Builder {
            proc,
            data,
            name: name.to_string(),
        });
        self.builders.len() - 1
    }

    pub fn spawn_builder(
        &self,
        data: &Path,
        name: &str,
        slots: u32,
        token: Option<&str>,
        extra: &[&str],
    ) -> Proc {
        let log = self.path(&format!(
            "builder-{name}-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let f = std::fs::File::create(&log).expect("builder log");
        let mut cmd = Command::new(bin("kha-builder"));
        if let Some(ca) = &self.ca {
            cmd.env("KHA_CA", ca);
        }
        cmd.args([
            "--control",
            &self.url(),
            "--data-dir",
            &data.to_string_lossy(),
            "--name",
            name,
        ])
        .args(["--slots", &slots.to_string()])
        .args(extra)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .env("KHA_LOG", "info,kha_builder=debug")
        .stdout(Stdio::null())
        .stderr(f);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let child = cmd.spawn().expect("start kha-builder");
        Proc { child, log }
    }

    /// Restarts builder `i` (same data dir, so same identity).
    pub fn restart_builder(&mut self, i: usize) {
        let (data, name) = (self.builders[i].data.clone(), self.builders[i].name.clone());
        self.builders[i].proc.kill9();
        self.builders[i].proc = self.spawn_builder(&data, &name, 1, None, &[]);
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

    /// Leftover lxc containers of this cluster's builders.
    pub fn running_containers(&self) -> Vec<String> {
        let mut names = vec![];
        for b in &self.builders {
            let o = Command::new("lxc-ls")
                .args([
                    "-P",
                    &b.data.join("lxc").to_string_lossy(),
                    "--active",
                    "-1",
                ])
                .output();
            if let Ok(o) = o {
                names.extend(
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .filter(|l| !l.is_empty()),
                );
            }
        }
        names
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for b in &mut self.builders {
            b.proc.kill9();
            let _ = Command::new(bin("kha-builder"))
                .args(["--data-dir", &b.data.to_string_lossy(), "cleanup"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(c) = &mut self.control {
            c.kill9();
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test where a person can read them.
            let kept = self.dir.path().with_extension("failed");
            let _ = Command::new("cp")
                .args([
                    "-r",
                    &self.dir.path().to_string_lossy(),
                    &kept.to_string_lossy(),
                ])
                .status();
            eprintln!("logs of the failed test kept in {}", kept.display());
        }
    }
}

/// A git repository in a temp dir.
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    pub fn new(dir: PathBuf) -> Repo {
        std::fs::create_dir_all(&dir).expect("repo dir");
        let r = Repo { dir };
        r.git(&["init", "-q", "-b", "master"]);
        r.git(&["config", "user.email", "test@example.com"]);
        r.git(&["config", "user.name", "kha test"]);
        r
    }

    pub fn git(&self, args: &[&str]) -> String {
        let o = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Writes files and commits them; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        for (p, text) in files {
            let path = self.dir.join(p);
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).expect("dir");
            }
            std::fs::write(path, text).expect("write");
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

/// `git daemon` serving every repository under `base` on a loopback port.
pub struct GitDaemon {
    pub proc: Proc,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let log = base.join(format!("git-daemon-{port}.log"));
        let f = std::fs::File::create(&log).expect("daemon log");
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start git daemon");
        wait_for("git daemon to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        GitDaemon {
            proc: Proc { child, log },
            port,
        }
    }

    /// The git:// URL of the repository in `base/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

/// A plain HTTP/1.1 POST on loopback; returns the status and body.
pub fn http_post(base: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// GitHub's `X-Hub-Signature-256` for `body`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A real GitHub payload from `tests/fixtures/github`, as raw bytes, with
/// commit ids (and repository names) swapped for the test's own; nothing
/// else changes, and the bytes are signed as they are.
pub fn github_fixture(name: &str, swaps: &[(&str, &str)]) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/github")
        .join(name);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in swaps {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    text.into_bytes()
}

/// A git smart-HTTP server with basic auth (`tests/support/git-http.py`,
/// `git http-backend` behind Python's http.server) on a loopback port.
pub struct GitHttp {
    pub proc: Proc,
    pub port: u16,
    pub tls: bool,
}

impl GitHttp {
    pub fn start(root: &Path, user: &str, password: &str) -> GitHttp {
        GitHttp::start_with(root, user, password, None)
    }

    /// Over TLS with `tls = (cert, key)`: the URL is https://.
    pub fn start_with(
        root: &Path,
        user: &str,
        password: &str,
        tls: Option<(&Path, &Path)>,
    ) -> GitHttp {
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/git-http.py");
        let log = root.join(format!("git-http-{port}.log"));
        let f = std::fs::File::create(&log).expect("log");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(root)
            .args([user, password])
            .args(
                tls.map(|(c, k)| vec![c.to_path_buf(), k.to_path_buf()])
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start the git HTTP server");
        wait_for("the git HTTP server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        GitHttp {
            proc: Proc { child, log },
            port,
            tls: tls.is_some(),
        }
    }

    pub fn url(&self, name: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{name}", self.port)
    }
}
