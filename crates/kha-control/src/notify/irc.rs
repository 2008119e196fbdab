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

/// Travis's default port, for `irc://` and `host#chan`.
const IRC_PORT: u16 = 6667;
/// The registered port for IRC over TLS (Travis's client would try 6667).
const IRCS_PORT: u16 = 6697;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to welcome us (Travis waits 60 s).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a JOIN, the barrier or anything else the server answers may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// After QUIT, how long the server may take to close.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// 433 (nick in use): this many more nicks are tried, with `_` appended.
const NICK_RETRIES: usize = 3;
/// A message's text is cut into pieces of at most this many bytes, so the
/// line the server relays (with our prefix and the channel) stays within
/// IRC's 512.
const MAX_TEXT: usize = 400;
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

/// A server and channel, from a channel string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    host: String,
    port: u16,
    tls: bool,
    /// With its `#`.
    channel: String,
    /// From `#chan,key`.
    key: Option<String>,
}

impl Place {
    /// Travis's forms: `host#chan`, `host:port#chan`, `irc://host[:port]/#chan`,
    /// `ircs://host[:port]/#chan`; the channel may end in `,key`. As in
    /// Travis, `#` is put before the name after the separating `#` (so
    /// `host##chan` is `##chan`).
    fn parse(s: &str) -> Result<Place, String> {
        let bad = |why: &str| format!("bad IRC channel {s:?}: {why}");
        let (tls, rest) = if let Some(r) = s.strip_prefix("ircs://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("irc://") {
            (false, r)
        } else if s.contains("://") {
            return Err(bad("only irc:// and ircs:// are known"));
        } else {
            (false, s)
        };
        let (server, fragment) = rest.split_once('#').ok_or_else(|| bad("no #channel"))?;
        let server = server.trim_end_matches('/');
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port is not a number"))?,
            ),
            None => (server, if tls { IRCS_PORT } else { IRC_PORT }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:_".contains(c))
        {
            return Err(bad("no host name"));
        }
        let fragment = percent_encoding::percent_decode_str(fragment)
            .decode_utf8()
            .map_err(|_| bad("a %-escape that is not UTF-8"))?;
        let (name, key) = match fragment.split_once(',') {
            Some((n, k)) => (n, Some(k.to_string())),
            None => (&*fragment, None),
        };
        if name.is_empty() || name.contains([' ', ',', '\x07']) || word("", name).is_err() {
            return Err(bad("the channel name"));
        }
        if let Some(k) = &key {
            if k.is_empty() || word("", k).is_err() {
                return Err(bad("the channel key"));
            }
        }
        Ok(Place {
            host: host.to_string(),
            port,
            tls,
            channel: format!("#{name}"),
            key,
        })
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A nick, key or password: one IRC parameter, never a second command.
fn word(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.contains(['\r', '\n', '\0', ' ']) || v.starts_with(':') {
        Err(format!(
            "the {what} is not usable on IRC (empty, or spaces or line breaks)"
        ))
    } else {
        Ok(())
    }
}

/// The message's lines as IRC texts: control characters that would end
/// or break a line become spaces, empty lines are dropped (IRC has no
/// empty message), long lines are cut at [`MAX_TEXT`] bytes.
fn texts(lines: &[String]) -> Vec<String> {
    let mut out = vec![];
    for line in lines {
        let clean: String = line
            .chars()
            .map(|c| {
                if matches!(c, '\r' | '\n' | '\0') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let mut rest = clean.trim_end();
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_TEXT);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
    }
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One line from the server, split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// The prefix's nick (or server name), without `!user@host`.
    from: String,
    command: String,
    params: Vec<String>,
}

impl Line {
    /// RFC 1459 with IRCv3 tags: `[@tags ][:prefix ]COMMAND params [:trailing]`.
    fn parse(raw: &str) -> Option<Line> {
        let mut rest = raw.trim_end_matches(['\r', '\n']);
        if rest.starts_with('@') {
            rest = rest.split_once(' ')?.1.trim_start_matches(' ');
        }
        let mut from = "";
        if let Some(r) = rest.strip_prefix(':') {
            let (prefix, r) = r.split_once(' ')?;
            from = prefix.split(['!', '@']).next().unwrap_or(prefix);
            rest = r.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = vec![];
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_string());
                break;
            }
            let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p.to_string());
            rest = r;
        }
        Some(Line {
            from: from.to_string(),
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The human part of a numeric or ERROR: its last parameter.
    fn text(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }

    /// `433 #chan :text` as people read it, without our nick.
    fn describe(&self) -> String {
        let mut words = vec![self.command.clone()];
        let skip = usize::from(self.command.len() == 3 && self.params.len() > 1);
        words.extend(self.params.iter().skip(skip).cloned());
        words.join(" ")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_strings() {
        let p = |host: &str, port, tls, channel: &str, key: Option<&str>| Place {
            host: host.into(),
            port,
            tls,
            channel: channel.into(),
            key: key.map(str::to_string),
        };
        let table = [
            (
                "irc.freenode.net#travis",
                p("irc.freenode.net", 6667, false, "#travis", None),
            ),
            (
                "irc.example.org:7000#ci",
                p("irc.example.org", 7000, false, "#ci", None),
            ),
            (
                "irc://irc.example.org:8000/#chan",
                p("irc.example.org", 8000, false, "#chan", None),
            ),
            (
                "irc://irc.example.org/#chan,s3cret",
                p("irc.example.org", 6667, false, "#chan", Some("s3cret")),
            ),
            (
                "ircs://irc.example.org:7070/#chan",
                p("irc.example.org", 7070, true, "#chan", None),
            ),
            (
                "ircs://irc.example.org/#chan",
                p("irc.example.org", 6697, true, "#chan", None),
            ),
            (
                "irc.libera.chat##kha",
                p("irc.libera.chat", 6667, false, "##kha", None),
            ),
            (
                "127.0.0.1:6667#a%2Bb",
                p("127.0.0.1", 6667, false, "#a+b", None),
            ),
        ];
        for (s, want) in table {
            assert_eq!(Place::parse(s), Ok(want), "{s}");
        }
        for bad in [
            "irc.example.org",
            "#chan",
            "http://irc.example.org/#chan",
            "irc://irc.example.org:99999/#chan",
            "irc://irc.example.org/#",
            "irc.example.org#chan x",
            "irc.example.org#chan\r\nQUIT",
            "irc.example.org#chan%0D%0AQUIT",
            "irc.example.org#chan,",
            "irc.example.org#chan,k y",
            "evil host#chan",
        ] {
            assert!(Place::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_from_the_server() {
        let l = |from: &str, command: &str, params: &[&str]| {
            Some(Line {
                from: from.into(),
                command: command.into(),
                params: params.iter().map(|p| p.to_string()).collect(),
            })
        };
        let table = [
            (
                ":irc.test 001 kha-ci :Welcome to the Internet Relay Network kha-ci!~kha@127.0.0.1\r\n",
                l("irc.test", "001", &["kha-ci", "Welcome to the Internet Relay Network kha-ci!~kha@127.0.0.1"]),
            ),
            ("PING :irc.test\r\n", l("", "PING", &["irc.test"])),
            (
                ":kha-ci!~kha@127.0.0.1 JOIN :#chan\r\n",
                l("kha-ci", "JOIN", &["#chan"]),
            ),
            (
                ":irc.test 433 * kha-ci :Nickname already in use\n",
                l("irc.test", "433", &["*", "kha-ci", "Nickname already in use"]),
            ),
            (
                "@time=2024-01-01T00:00:00Z :n!u@h PRIVMSG #c :a :b\r\n",
                l("n", "PRIVMSG", &["#c", "a :b"]),
            ),
            (
                "ERROR :Closing connection\r\n",
                l("", "ERROR", &["Closing connection"]),
            ),
            ("\r\n", None),
        ];
        for (raw, want) in table {
            assert_eq!(Line::parse(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn texts_are_single_safe_lines() {
        let long = "é".repeat(300);
        let got = texts(&[
            "one\r\nQUIT".into(),
            String::new(),
            "  ".into(),
            long.clone(),
        ]);
        assert_eq!(got[0], "one  QUIT");
        assert_eq!(got.len(), 3);
        assert!(got[1].len() <= MAX_TEXT && got[2].len() <= MAX_TEXT);
        assert_eq!(format!("{}{}", got[1], got[2]), long);
    }
}
