//! An SMTP server that keeps what it accepts: `tests/support/smtp-sink.py`
//! (Debian's python3-aiosmtpd) on a loopback port of its own choosing.
//! Recipients whose local part starts with `refuse` are answered 550, with
//! `later` 451; optionally it speaks TLS and requires a login.

use crate::process::{wait_for, Proc};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Debian's python, which has python3-aiosmtpd (a pyenv python on PATH may not).
const PYTHON: &str = "/usr/bin/python3";
const AIOSMTPD: &str = "/usr/lib/python3/dist-packages/aiosmtpd";

/// How the sink is started.
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkOpts {
    /// `("starttls" | "tls", cert, key)`.
    pub tls: Option<(String, PathBuf, PathBuf)>,
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
}

pub struct SmtpSink {
    pub proc: Proc,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One accepted message, with its envelope.
#[derive(Debug, Clone)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as sent: headers, blank line, body (CRLF line ends).
    pub data: String,
}

impl SmtpSink {
    /// Can this machine run it?
    pub fn available() -> bool {
        Path::new(PYTHON).exists() && Path::new(AIOSMTPD).exists()
    }

    pub fn start() -> SmtpSink {
        SmtpSink::start_with(SmtpSinkOpts::default())
    }

    pub fn start_with(opts: SmtpSinkOpts) -> SmtpSink {
        assert!(
            SmtpSink::available(),
            "the SMTP sink needs Debian's python3-aiosmtpd (`apt-get install python3-aiosmtpd`)"
        );
        let dir = tempfile::Builder::new()
            .prefix("kha-smtp-")
            .tempdir()
            .expect("temp dir");
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).expect("mail dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp-sink.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script).arg(&mail).stdout(Stdio::piped());
        if let Some((mode, cert, key)) = &opts.tls {
            cmd.arg("--tls").arg(mode).arg(cert).arg(key);
        }
        if let Some((user, password)) = &opts.auth {
            cmd.args(["--auth", user, password]);
        }
        let mut proc = Proc::spawn_keeping_stdout(&mut cmd, dir.path().join("smtp-sink.log"));
        // It binds port 0 and prints the port it got once it listens.
        let mut line = String::new();
        let out = proc.child.stdout.take().expect("piped stdout");
        if let Err(e) = std::io::BufReader::new(out).read_line(&mut line) {
            panic!("reading the SMTP sink's port: {e}");
        }
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP sink did not start: {}", proc.log_text()));
        SmtpSink { proc, port, dir }
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("the mail dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("a message file");
                let v: serde_json::Value = serde_json::from_str(&text).expect("message JSON");
                Mail {
                    mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect(),
                    data: v["data"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived; returns them all.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        wait_for(&format!("{n} mail(s) at the SMTP sink"), timeout, || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
    }

    /// What the sink logged (aiosmtpd's warnings, tracebacks).
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

impl Mail {
    /// A header's value, unfolded; the first one of that name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_string());
                }
            }
        }
        value
    }

    /// The body as sent (lettre sends plain ASCII text unencoded), with
    /// `\n` line ends.
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}
