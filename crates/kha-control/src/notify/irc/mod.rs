//! IRC: one short-lived connection per delivery, as Travis's notifier
//! speaks it (travis-tasks `irc/client.rb`): register, identify, join, say
//! each line, part, quit.
//!
//! Hand-written on tokio: the dozen commands needed do not justify an IRC
//! crate with its own TLS stack and config format. Two things go beyond
//! Travis's client, because a delivery must know whether it went through:
//! the JOIN waits for the server's echo (or its refusal), and a `PING`
//! after the last line is a barrier: the server answers commands in order,
//! so any refusal of a line (`404 Cannot send to channel`) arrives before
//! the `PONG`.
//!
//! Everything that reaches the wire is checked for CR, LF and NUL first: a
//! commit message cannot smuggle in a command.

use super::config::IrcConfig;
use super::{Delivery, Failure, Sent, Target};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls;

mod place;
mod wire;

use place::{word, Place};
use wire::{texts, Line};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to welcome us (Travis waits 60 s).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a JOIN, the barrier or anything else the server answers may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// After QUIT, how long the server may take to close.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// 433 (nick in use): this many more nicks are tried, with `_` appended.
const NICK_RETRIES: usize = 3;
/// Lines sent at once; further lines wait [`PACE`] each, as bots do to
/// stay clear of servers' flood limits.
const BURST: usize = 4;
const PACE: Duration = Duration::from_millis(700);
/// Longer lines from the server are cut (IRCv3 tags may make them long).
const MAX_LINE: u64 = 16 * 1024;

/// Sends to IRC channels as the server-wide nick.
pub struct Irc {
    nick: String,
    realname: String,
    /// rustls with the system's roots, made at the first `ircs://`.
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Irc {
    pub fn new(cfg: &IrcConfig) -> Irc {
        Irc {
            nick: cfg.nick.clone(),
            realname: cfg.realname.clone(),
            tls: OnceLock::new(),
        }
    }

    pub async fn send(&self, d: &Delivery) -> Result<Sent, Failure> {
        let Target::Irc {
            channel,
            key,
            use_notice,
            skip_join,
            password,
            nickserv_password,
            nick,
        } = &d.target
        else {
            return Err(Failure::Permanent(format!(
                "not an IRC target: {}",
                d.target.channel()
            )));
        };
        let place = Place::parse(channel).map_err(Failure::Permanent)?;
        let key = place
            .key
            .clone()
            .or_else(|| key.as_ref().map(|k| k.expose().to_string()));
        let nick = nick.clone().unwrap_or_else(|| self.nick.clone());
        for (what, v) in [
            ("nick", Some(nick.as_str())),
            ("channel key", key.as_deref()),
            ("server password", password.as_ref().map(|p| p.expose())),
            (
                "NickServ password",
                nickserv_password.as_ref().map(|p| p.expose()),
            ),
        ] {
            if let Some(v) = v {
                word(what, v).map_err(Failure::Permanent)?;
            }
        }
        let texts = texts(&d.message.lines);
        if texts.is_empty() {
            return Err(Failure::Permanent("the message has no lines".into()));
        }

        let mut c = self.connect(&place).await?;
        let server = place.server();
        if let Some(pw) = password {
            c.send(&format!("PASS {}", pw.expose())).await?;
        }
        c.register(&nick, &self.realname).await?;
        if let Some(pw) = nickserv_password {
            c.send(&format!("PRIVMSG NickServ :IDENTIFY {}", pw.expose()))
                .await?;
        }
        if !skip_join {
            c.join(&place.channel, key.as_deref()).await?;
        }
        let command = if *use_notice { "NOTICE" } else { "PRIVMSG" };
        for (i, text) in texts.iter().enumerate() {
            if i >= BURST {
                tokio::time::sleep(PACE).await;
            }
            c.send(&format!("{command} {} :{text}", place.channel))
                .await?;
        }
        c.barrier(&place.channel).await?;
        if !skip_join {
            c.send(&format!("PART {}", place.channel)).await?;
        }
        c.quit().await;
        let n = texts.len();
        Ok(format!(
            "sent {n} line{} to {} on {server}",
            if n == 1 { "" } else { "s" },
            place.channel
        ))
    }

    async fn connect(&self, place: &Place) -> Result<Conn, Failure> {
        let server = place.server();
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((place.host.as_str(), place.port)),
        )
        .await
        .map_err(|_| {
            Failure::Retry(format!(
                "cannot connect to {server}: timed out after {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Failure::Retry(format!("cannot connect to {server}: {e}")))?;
        let io: Box<dyn Io> = if place.tls {
            let config = self
                .tls
                .get_or_init(tls_config)
                .clone()
                .map_err(Failure::Permanent)?;
            let name = rustls::pki_types::ServerName::try_from(place.host.clone())
                .map_err(|e| Failure::Permanent(format!("{}: {e}", place.host)))?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| Failure::Retry(format!("TLS with {server}: timed out")))?
            .map_err(|e| {
                // rustls reports a certificate it does not trust (and any
                // other protocol refusal) as invalid data: trying again
                // will not change it.
                let m = format!("TLS with {server}: {e}");
                if e.kind() == std::io::ErrorKind::InvalidData {
                    Failure::Permanent(m)
                } else {
                    Failure::Retry(m)
                }
            })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        Ok(Conn {
            io: BufReader::new(io),
            server,
            nick: String::new(),
        })
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(
            "no trusted root certificates: install ca-certificates or set SSL_CERT_FILE".into(),
        );
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection.
struct Conn {
    io: BufReader<Box<dyn Io>>,
    /// host:port, for messages.
    server: String,
    /// Our nick, once sent.
    nick: String,
}

impl Conn {
    async fn send(&mut self, line: &str) -> Result<(), Failure> {
        let server = &self.server;
        let lost = |e: std::io::Error| Failure::Retry(format!("connection to {server} lost: {e}"));
        self.io
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(lost)?;
        self.io.flush().await.map_err(lost)
    }

    /// The next line before `deadline`, answering PINGs on the way. A
    /// server's `ERROR` ends the conversation: it is permanent (a ban, a
    /// refused password, a closing server say so).
    async fn next(&mut self, deadline: Instant, waiting_for: &str) -> Result<Line, Failure> {
        loop {
            let mut buf = vec![];
            let read = tokio::time::timeout_at(
                deadline,
                (&mut self.io).take(MAX_LINE).read_until(b'\n', &mut buf),
            )
            .await;
            let n = match read {
                Err(_) => {
                    return Err(Failure::Retry(format!(
                        "{} did not answer in time (waiting for {waiting_for})",
                        self.server
                    )))
                }
                Ok(Err(e)) => {
                    return Err(Failure::Retry(format!(
                        "connection to {} lost: {e}",
                        self.server
                    )))
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(Failure::Retry(format!(
                    "{} closed the connection (waiting for {waiting_for})",
                    self.server
                )));
            }
            let Some(line) = Line::parse(&String::from_utf8_lossy(&buf)) else {
                continue;
            };
            match line.command.as_str() {
                "PING" => {
                    let token = line.params.join(" ");
                    self.send(&format!("PONG :{token}")).await?;
                }
                "ERROR" => {
                    return Err(Failure::Permanent(format!(
                        "{} refused: {}",
                        self.server,
                        line.text()
                    )))
                }
                _ => return Ok(line),
            }
        }
    }

    /// NICK and USER, until the server's 001; another nick (with `_`)
    /// while the nick is in use.
    async fn register(&mut self, nick: &str, realname: &str) -> Result<(), Failure> {
        let deadline = Instant::now() + WELCOME_TIMEOUT;
        self.nick = nick.to_string();
        self.send(&format!("NICK {nick}")).await?;
        let realname: String = realname
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
            .collect();
        let realname = match realname.trim() {
            "" => nick,
            r => r,
        };
        self.send(&format!("USER {nick} 0 * :{realname}")).await?;
        let mut tries = 0;
        loop {
            let l = self.next(deadline, "the welcome (001)").await?;
            match l.command.as_str() {
                "001" => {
                    // The server may have shortened or changed it.
                    if !l.param(0).is_empty() {
                        self.nick = l.param(0).to_string();
                    }
                    return Ok(());
                }
                "433" | "436" if tries < NICK_RETRIES => {
                    tries += 1;
                    self.nick = format!("{nick}{}", "_".repeat(tries));
                    let n = self.nick.clone();
                    self.send(&format!("NICK {n}")).await?;
                }
                "433" | "436" => {
                    return Err(Failure::Retry(format!(
                        "{}: the nick {nick} and {NICK_RETRIES} variants are in use",
                        self.server
                    )))
                }
                "432" if tries > 0 => {
                    return Err(Failure::Retry(format!(
                        "{}: the nick {nick} is in use and {} is refused ({})",
                        self.server,
                        self.nick,
                        l.text()
                    )))
                }
                "432" | "464" | "465" | "463" => {
                    return Err(Failure::Permanent(format!(
                        "{} refused: {}",
                        self.server,
                        l.describe()
                    )))
                }
                _ => {}
            }
        }
    }

    /// JOIN, until the server echoes it or refuses.
    async fn join(&mut self, channel: &str, key: Option<&str>) -> Result<(), Failure> {
        match key {
            Some(k) => self.send(&format!("JOIN {channel} {k}")).await?,
            None => self.send(&format!("JOIN {channel}")).await?,
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let l = self.next(deadline, "JOIN").await?;
            let about_channel = l.params.iter().any(|p| p.eq_ignore_ascii_case(channel));
            match l.command.as_str() {
                "JOIN" if l.from.eq_ignore_ascii_case(&self.nick) && about_channel => return Ok(()),
                // Full, or held after a netsplit: later it may work.
                "471" | "437" if about_channel => {
                    return Err(Failure::Retry(format!(
                        "{} cannot join: {}",
                        self.server,
                        l.describe()
                    )))
                }
                "403" | "405" | "473" | "474" | "475" | "476" | "477" | "489" | "520"
                    if about_channel =>
                {
                    return Err(Failure::Permanent(format!(
                        "{} cannot join: {}",
                        self.server,
                        l.describe()
                    )))
                }
                _ => {}
            }
        }
    }

    /// A PING answered in order after the lines: any refusal of them
    /// comes first.
    async fn barrier(&mut self, channel: &str) -> Result<(), Failure> {
        const TOKEN: &str = "kha-sent";
        self.send(&format!("PING :{TOKEN}")).await?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut refused = None;
        loop {
            let l = self.next(deadline, "the answer to the lines").await?;
            match l.command.as_str() {
                "PONG" if l.params.iter().any(|p| p == TOKEN) => break,
                "401" | "403" | "404" | "412" | "442" | "477" | "486" | "489"
                    if refused.is_none() =>
                {
                    refused = Some(l.describe());
                }
                _ => {}
            }
        }
        match refused {
            Some(why) => Err(Failure::Permanent(format!(
                "{} refused the message to {channel}: {why}",
                self.server
            ))),
            None => Ok(()),
        }
    }

    /// QUIT, then read until the server closes (briefly: the message is
    /// already through).
    async fn quit(mut self) {
        if self.send("QUIT :kha").await.is_err() {
            return;
        }
        let deadline = Instant::now() + QUIT_TIMEOUT;
        let mut sink = vec![];
        loop {
            sink.clear();
            match tokio::time::timeout_at(
                deadline,
                (&mut self.io).take(MAX_LINE).read_until(b'\n', &mut sink),
            )
            .await
            {
                Ok(Ok(n)) if n > 0 => continue,
                _ => break,
            }
        }
        let _ = self.io.shutdown().await;
    }
}
