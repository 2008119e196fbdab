//! The one way a test gets a running cluster: say what it needs (TLS,
//! projects, builders), then `start()` starts the control node, adds the
//! projects, starts the builders and waits until they are connected.
//!
//! ```no_run
//! use kha_tests::{Fixture, Repo};
//! let repo = Repo::with_travis_yml("language: shell\nscript: echo hi\n");
//! let mut c = Fixture::new().project("demo", &repo.url()).builder("a", 1).start();
//! ```

use crate::certs::make_certificates;
use crate::cluster::Cluster;
use crate::process::test_dir;

/// What a test's cluster is made of, before it starts.
pub struct Fixture {
    heartbeat_ms: u64,
    tls: bool,
    trust_test_ca: bool,
    env: Vec<(String, String)>,
    projects: Vec<Vec<String>>,
    builders: Vec<FixtureBuilder>,
    /// The control node's config file's lines (`--config`).
    config: String,
    /// Bind the web UI to a port chosen before the start (not port 0).
    known_http_port: bool,
    /// A tar of a data dir the control node starts on (an earlier
    /// release's, for upgrade tests).
    data: Option<std::path::PathBuf>,
    /// The control node's data dir on an ext4 file system of this many
    /// MiB of its own (a loop device), to fill up.
    disk_mib: Option<u64>,
}

/// A builder the fixture starts.
struct FixtureBuilder {
    name: String,
    slots: u32,
    extra: Vec<String>,
    /// The host executor instead of lxc.
    host: bool,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Fixture {
    /// A control node (heartbeats every 300 ms, plain gRPC) and nothing else.
    pub fn new() -> Fixture {
        Fixture {
            heartbeat_ms: 300,
            tls: false,
            trust_test_ca: false,
            env: vec![],
            projects: vec![],
            builders: vec![],
            config: String::new(),
            known_http_port: false,
            data: None,
            disk_mib: None,
        }
    }

    /// The control node's data dir is a file system of `mib` MiB of its
    /// own (ext4 on a loop device; root only), unmounted when the
    /// cluster is dropped.
    pub fn control_disk_mib(mut self, mib: u64) -> Fixture {
        self.disk_mib = Some(mib);
        self
    }

    /// Builders heartbeat every `ms` (leases last three heartbeats);
    /// 300 by default.
    pub fn heartbeat_ms(mut self, ms: u64) -> Fixture {
        self.heartbeat_ms = ms;
        self
    }

    /// The control node starts on the data dir in the tar `archive`
    /// instead of an empty one.
    pub fn data_dir_from(mut self, archive: &std::path::Path) -> Fixture {
        self.data = Some(archive.to_path_buf());
        self
    }

    /// Lines of the control node's config file (`control.toml`, given
    /// with `--config`); top-level keys before any `[table]`.
    pub fn config(mut self, toml: &str) -> Fixture {
        self.config.push_str(toml);
        if !self.config.ends_with('\n') {
            self.config.push('\n');
        }
        self
    }

    /// The web UI listens on a port chosen before the control node starts,
    /// and `public_url` names it: for a party that must know the address in
    /// advance (GitHub sign-in sends the browser back to it).
    pub fn known_http_port(mut self) -> Fixture {
        self.known_http_port = true;
        self
    }

    /// The control node serves gRPC over TLS, with a certificate for
    /// 127.0.0.1 signed by a CA made for the test; clients trust that CA.
    pub fn tls(mut self) -> Fixture {
        self.tls = true;
        self
    }

    /// Makes the test CA and certificate (`ca.pem`, `cert.pem`, `key.pem`
    /// in the cluster's dir) and has the control node and builders trust
    /// the CA through OpenSSL's `SSL_CERT_FILE`, as a deployment would
    /// through its system store (for a git server on HTTPS).
    pub fn trust_test_ca(mut self) -> Fixture {
        self.trust_test_ca = true;
        self
    }

    /// Extra environment for the control node and builders.
    pub fn env(mut self, key: &str, value: &str) -> Fixture {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `kha project add NAME URL --no-poll` once the control node answers.
    pub fn project(self, name: &str, url: &str) -> Fixture {
        self.project_with(name, url, &[])
    }

    /// `kha project add NAME URL --no-poll EXTRA…`.
    pub fn project_with(mut self, name: &str, url: &str, extra: &[&str]) -> Fixture {
        let mut args: Vec<String> = ["project", "add", name, url, "--no-poll"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        self.projects.push(args);
        self
    }

    /// An lxc builder with `slots` slots, enrolled and connected.
    pub fn builder(self, name: &str, slots: u32) -> Fixture {
        self.builder_with(name, slots, &[])
    }

    /// A builder with extra flags (e.g. `--label python=3.12`).
    pub fn builder_with(mut self, name: &str, slots: u32, extra: &[&str]) -> Fixture {
        self.builders.push(FixtureBuilder {
            name: name.into(),
            slots,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            host: false,
        });
        self
    }

    /// A builder with the host executor (plain processes, no lxc): for
    /// tests of what kha shows, not of how it isolates jobs.
    pub fn host_builder(self, name: &str, slots: u32) -> Fixture {
        self.host_builder_with(name, slots, &[])
    }

    pub fn host_builder_with(mut self, name: &str, slots: u32, extra: &[&str]) -> Fixture {
        self.builders.push(FixtureBuilder {
            name: name.into(),
            slots,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            host: true,
        });
        self
    }

    /// Starts it all; returns once the control node answers, the projects
    /// are added and every builder is connected.
    pub fn start(self) -> Cluster {
        let dir = test_dir("kha-e2e-");
        if self.tls || self.trust_test_ca {
            make_certificates(dir.path());
        }
        let ca = dir.path().join("ca.pem");
        let mut env = self.env;
        if self.trust_test_ca {
            env.push(("SSL_CERT_FILE".into(), ca.to_string_lossy().to_string()));
        }
        let mut c = Cluster::new(dir, self.heartbeat_ms, self.tls.then_some(ca), env);
        if let Some(mib) = self.disk_mib {
            let data = c.path("control");
            c.small_disk(&data, mib);
        }
        if let Some(archive) = &self.data {
            let data = c.path("control");
            std::fs::create_dir_all(&data).expect("control data dir");
            let st = std::process::Command::new("tar")
                .arg("-xzf")
                .arg(archive)
                .arg("-C")
                .arg(&data)
                .status()
                .expect("tar");
            assert!(st.success(), "unpacking {}", archive.display());
        }
        let mut config = String::new();
        if self.known_http_port {
            // Bound and released at once: the control node binds it a
            // moment later (start_control retries a port not free yet).
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port");
            c.preset_http(addr);
            config.push_str(&format!("public_url = \"http://{addr}\"\n"));
        }
        config.push_str(&self.config);
        if !config.is_empty() {
            let path = c.path("control.toml");
            std::fs::write(&path, config).expect("write control.toml");
            c.config = Some(path);
        }
        c.start_control();
        for args in &self.projects {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.kha_ok(&args);
        }
        for b in &self.builders {
            let extra: Vec<&str> = b.extra.iter().map(String::as_str).collect();
            if b.host {
                c.host_builder_with(&b.name, b.slots, &extra);
            } else {
                c.builder_with(&b.name, b.slots, &extra);
            }
        }
        if !self.builders.is_empty() {
            c.wait_builders_connected(self.builders.len());
        }
        c
    }
}
