//! A real IRC server for the notification tests: Debian's ngircd on a
//! loopback port, with a config made for the test in its own temp dir, and
//! a small raw-TCP IRC client ([`IrcClient`]) that joins channels and
//! reads what the server relays, as a person in the channel would see it.
//!
//! The server is killed when the [`Ngircd`] is dropped.

use crate::process::{test_dir, wait_for, Proc};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where Debian installs it.
pub const NGIRCD: &str = "/usr/sbin/ngircd";

/// Is ngircd installed (`apt-get install ngircd`)?
pub fn ngircd_available() -> bool {
    Path::new(NGIRCD).exists()
}

/// Panics with what to do when ngircd is missing.
pub fn require_ngircd() {
    assert!(
        ngircd_available(),
        "this test runs an IRC server: install ngircd (`apt-get install ngircd`; \
         `deploy/test.sh` does), or set KHA_SKIP_NGIRCD=1 to report the IRC tests as ignored"
    );
}

/// A pre-defined channel (ngircd's `[Channel]`): its name and `MODE`
/// arguments, e.g. `("#keyed", "+k s3cret")` or `("#quiet", "+n")`.
pub type ChannelSpec<'a> = (&'a str, &'a str);

/// ngircd listening on `127.0.0.1:port`.
pub struct Ngircd {
    pub port: u16,
    /// Its config and log live here.
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl Ngircd {
    /// Starts ngircd with these pre-defined channels; returns once it
    /// accepts connections.
    pub fn start(channels: &[ChannelSpec]) -> Ngircd {
        Ngircd::start_with(channels, &[])
    }

    /// Also with TLS on `tls_port`, for `ircs://` (`[SSL]` with the given
    /// certificate and key files).
    pub fn start_tls(channels: &[ChannelSpec], cert: &Path, key: &Path) -> (Ngircd, u16) {
        let tls_port = free_port();
        let ssl = [
            "[SSL]".to_string(),
            format!("CertFile = {}", cert.display()),
            format!("KeyFile = {}", key.display()),
            format!("Ports = {tls_port}"),
        ];
        let n = Ngircd::start_with(channels, &ssl);
        wait_for("ngircd's TLS port", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", tls_port)).ok()
        });
        (n, tls_port)
    }

    fn start_with(channels: &[ChannelSpec], extra: &[String]) -> Ngircd {
        require_ngircd();
        let dir = test_dir("kha-ngircd-");
        let port = free_port();
        let mut conf = format!(
            "[Global]\n\
             Name = irc.kha.test\n\
             Info = kha test server\n\
             AdminInfo1 = kha tests\n\
             AdminInfo2 = loopback\n\
             AdminEMail = nobody@kha.test\n\
             Listen = 127.0.0.1\n\
             Ports = {port}\n\
             MotdPhrase = kha test server\n\
             [Limits]\n\
             MaxConnectionsIP = 0\n\
             MaxNickLength = 30\n\
             [Options]\n\
             PAM = no\n\
             Ident = no\n\
             DNS = no\n"
        );
        for l in extra {
            conf.push_str(l);
            conf.push('\n');
        }
        for (name, modes) in channels {
            conf.push_str(&format!("[Channel]\nName = {name}\n"));
            if !modes.is_empty() {
                conf.push_str(&format!("Modes = {modes}\n"));
            }
        }
        let path = dir.path().join("ngircd.conf");
        std::fs::write(&path, conf).expect("write ngircd.conf");
        let proc = Proc::spawn(
            Command::new(NGIRCD).arg("-n").arg("-f").arg(&path),
            dir.path().join("ngircd.log"),
        );
        let mut n = Ngircd { port, dir, proc };
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = n.proc.wait_exit(Duration::from_millis(50)) {
                panic!("ngircd exited ({s}): {}", n.proc.log_text());
            }
            assert!(
                Instant::now() < until,
                "ngircd does not listen on {port}: {}",
                n.proc.log_text()
            );
        }
        n
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A channel string as `.travis.yml` gives it: `irc://127.0.0.1:<port>/#chan`.
    pub fn channel_url(&self, chan: &str) -> String {
        format!("irc://127.0.0.1:{}/{chan}", self.port)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One line the client received, split (`:from!user@host COMMAND params :text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcLine {
    /// The sender's nick (or the server's name).
    pub from: String,
    pub command: String,
    pub params: Vec<String>,
    pub raw: String,
}

impl IrcLine {
    fn parse(raw: &str) -> IrcLine {
        let mut rest = raw.trim_end_matches(['\r', '\n']);
        let mut from = String::new();
        if let Some(r) = rest.strip_prefix(':') {
            let (p, r) = r.split_once(' ').unwrap_or((r, ""));
            from = p.split(['!', '@']).next().unwrap_or(p).to_string();
            rest = r;
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut params = vec![];
        while !rest.is_empty() {
            if let Some(t) = rest.strip_prefix(':') {
                params.push(t.to_string());
                break;
            }
            let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p.to_string());
            rest = r;
        }
        IrcLine {
            from,
            command: command.to_string(),
            params,
            raw: raw.trim_end().to_string(),
        }
    }

    /// The last parameter: a message's text.
    pub fn text(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }
}

/// A person on the IRC server: a plain TCP client that registers, joins,
/// answers PINGs and collects what it is sent.
pub struct IrcClient {
    pub nick: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl IrcClient {
    /// Connects as `nick` and waits for the welcome.
    pub fn connect(port: u16, nick: &str) -> IrcClient {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to ngircd");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a read timeout");
        let mut c = IrcClient {
            nick: nick.to_string(),
            writer: s.try_clone().expect("clone the socket"),
            reader: BufReader::new(s),
        };
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :kha test client"));
        c.wait_for("the welcome (001)", Duration::from_secs(20), |l| {
            l.command == "001"
        });
        c
    }

    pub fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write to ngircd");
    }

    /// Joins `chan` (with `key`) and waits until the server says it is in.
    pub fn join(&mut self, chan: &str, key: Option<&str>) {
        match key {
            Some(k) => self.send(&format!("JOIN {chan} {k}")),
            None => self.send(&format!("JOIN {chan}")),
        }
        let c = chan.to_string();
        self.wait_for(&format!("joining {chan}"), Duration::from_secs(20), |l| {
            l.command == "366" && l.params.get(1).is_some_and(|p| p.eq_ignore_ascii_case(&c))
        });
    }

    /// Sets channel modes (the client is the channel's operator when it
    /// created it) and waits for the server to confirm.
    pub fn mode(&mut self, chan: &str, modes: &str) {
        self.send(&format!("MODE {chan} {modes}"));
        self.wait_for(
            &format!("MODE {chan} {modes}"),
            Duration::from_secs(20),
            |l| l.command == "MODE",
        );
    }

    /// The next line, answering PINGs; None when `until` passes.
    pub fn next_line(&mut self, until: Instant) -> Option<IrcLine> {
        let mut buf = Vec::new();
        while Instant::now() < until {
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => panic!("ngircd closed the test client's connection"),
                Ok(_) if buf.ends_with(b"\n") => {
                    let l = IrcLine::parse(&String::from_utf8_lossy(&buf));
                    if l.command == "PING" {
                        let token = l.params.join(" ");
                        self.send(&format!("PONG :{token}"));
                        buf.clear();
                        continue;
                    }
                    return Some(l);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading from ngircd: {e}"),
            }
        }
        None
    }

    /// Reads until a line matches; panics after `timeout` with what it saw.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&IrcLine) -> bool,
    ) -> IrcLine {
        let until = Instant::now() + timeout;
        let mut seen = vec![];
        while let Some(l) = self.next_line(until) {
            if f(&l) {
                return l;
            }
            seen.push(l.raw);
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; saw:\n{}",
            seen.join("\n")
        );
    }

    /// Every line received until none came for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> Vec<IrcLine> {
        let mut out = vec![];
        while let Some(l) = self.next_line(Instant::now() + quiet) {
            out.push(l);
        }
        out
    }

    /// The messages (`PRIVMSG` or `NOTICE`) to `target` until `n` have
    /// arrived; panics after `timeout`.
    pub fn messages(&mut self, target: &str, n: usize, timeout: Duration) -> Vec<IrcLine> {
        let until = Instant::now() + timeout;
        let mut got = vec![];
        let mut seen = vec![];
        while got.len() < n {
            let Some(l) = self.next_line(until) else {
                panic!(
                    "timed out after {timeout:?} with {} of {n} messages to {target}; saw:\n{}",
                    got.len(),
                    seen.join("\n")
                );
            };
            seen.push(l.raw.clone());
            if matches!(l.command.as_str(), "PRIVMSG" | "NOTICE")
                && l.params
                    .first()
                    .is_some_and(|t| t.eq_ignore_ascii_case(target))
            {
                got.push(l);
            }
        }
        got
    }
}

impl Drop for IrcClient {
    fn drop(&mut self) {
        let _ = self.writer.write_all(b"QUIT\r\n");
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}
