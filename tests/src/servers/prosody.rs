//! An XMPP server for the tests: prosody in the foreground with a config
//! of its own (loopback only, no server-to-server, plain logins allowed
//! unless TLS is asked for), the virtual host `localhost` and the rooms
//! service `conference.localhost`; and [`XmppReader`], a second client
//! (tokio-xmpp) that logs in, joins rooms and records every message it is
//! sent.

use super::free_port;
use crate::process::{wait_for, Proc};
use futures_util::StreamExt;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::MessageType;
use tokio_xmpp::parsers::muc::user::{MucUser, Status};
use tokio_xmpp::parsers::muc::{muc::History, Muc};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};

const PROSODY: &str = "/usr/bin/prosody";
const PROSODYCTL: &str = "/usr/bin/prosodyctl";

/// The virtual host, and the rooms' service.
pub const DOMAIN: &str = "localhost";
pub const ROOMS: &str = "conference.localhost";

pub struct Prosody {
    pub proc: Proc,
    pub port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Prosody {
    /// Can this machine run it?
    pub fn available() -> bool {
        Path::new(PROSODY).exists() && Path::new(PROSODYCTL).exists()
    }

    /// Starts prosody with these `(user, password)` accounts on `localhost`.
    pub fn start(users: &[(&str, &str)]) -> Prosody {
        Prosody::start_with(users, None)
    }

    /// With `tls = (cert, key)` (a certificate for `localhost`, see
    /// [`localhost_certificate`]), the server offers STARTTLS; it does not
    /// require it, so that an [`XmppReader`] (which cannot be told which
    /// CA to trust) still logs in.
    pub fn start_with(users: &[(&str, &str)], tls: Option<(&Path, &Path)>) -> Prosody {
        assert!(
            Prosody::available(),
            "the XMPP tests need prosody (`apt-get install prosody`)"
        );
        let dir = tempfile::Builder::new()
            .prefix("kha-prosody-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("prosody.cfg.lua");
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        std::fs::create_dir(dir.path().join("certs")).expect("certs dir");
        // Accounts are files under data/: made before the server starts.
        write_config(dir.path(), &config, 0, tls);
        for (user, password) in users {
            let out = Command::new(PROSODYCTL)
                .arg("--config")
                .arg(&config)
                .args(["register", user, DOMAIN, password])
                .output()
                .expect("prosodyctl");
            assert!(
                out.status.success(),
                "prosodyctl register {user}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // prosody cannot bind port 0 and say which it got: a port free a
        // moment ago, and another if someone took it meanwhile.
        for _ in 0..5 {
            let port = free_port();
            write_config(dir.path(), &config, port, tls);
            let mut cmd = Command::new(PROSODY);
            cmd.arg("-F").arg("--config").arg(&config);
            let log = dir.path().join(format!("prosody-{port}.stderr"));
            let mut proc = Proc::spawn(&mut cmd, log);
            let up = wait_for("prosody to listen", Duration::from_secs(20), || {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(true);
                }
                matches!(proc.child.try_wait(), Ok(Some(_))).then_some(false)
            });
            if up {
                return Prosody {
                    proc,
                    port,
                    config,
                    dir,
                };
            }
            eprintln!(
                "prosody on port {port} did not start: {}{}",
                proc.log_text(),
                std::fs::read_to_string(dir.path().join("prosody.log")).unwrap_or_default()
            );
        }
        panic!("prosody found no free port in 5 tries");
    }

    /// `127.0.0.1:PORT`, for `[notify.xmpp] server`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `user@localhost`.
    pub fn jid(user: &str) -> String {
        format!("{user}@{DOMAIN}")
    }

    /// `name@conference.localhost`.
    pub fn room(name: &str) -> String {
        format!("{name}@{ROOMS}")
    }

    /// The server's log (`prosody.log`) and what it printed.
    pub fn log_text(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default(),
            self.proc.log_text()
        )
    }

    /// The config file, for `prosodyctl --config`.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// A second client, logged in as `user`, present in `rooms` (as nick
    /// `user`): see [`XmppReader`].
    pub fn reader(&self, user: &str, password: &str, rooms: &[&str]) -> XmppReader {
        XmppReader::start(&self.addr(), &Prosody::jid(user), password, rooms)
    }
}

fn write_config(dir: &Path, config: &Path, port: u16, tls: Option<(&Path, &Path)>) {
    let d = dir.display();
    let (tls_module, ssl) = match tls {
        Some((cert, key)) => (
            "\"tls\";",
            format!(
                "    ssl = {{ certificate = \"{}\"; key = \"{}\"; }}\n",
                cert.display(),
                key.display()
            ),
        ),
        None => ("", String::new()),
    };
    let text = format!(
        r#"-- kha test server: loopback only, no server-to-server.
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ debug = "{d}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"; {tls_module} }}
modules_disabled = {{ "s2s" }}

VirtualHost "{DOMAIN}"
{ssl}
Component "{ROOMS}" "muc"
    -- A room made by its first occupant is open at once.
    muc_room_locking = false
"#
    );
    std::fs::write(config, text).expect("write prosody.cfg.lua");
}

/// One message a [`XmppReader`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppSeen {
    pub from: String,
    /// `chat`, `groupchat`, `normal`, `error`, `headline`.
    pub kind: String,
    pub body: String,
    pub id: Option<String>,
}

/// A client logged in on its own thread, present in its rooms, that keeps
/// every message (with a body) it receives. Dropping it closes the stream.
pub struct XmppReader {
    seen: Arc<Mutex<Vec<XmppSeen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl XmppReader {
    /// Returns once the client is online and every room has answered its
    /// join with our self-presence.
    pub fn start(addr: &str, jid: &str, password: &str, rooms: &[&str]) -> XmppReader {
        let seen = Arc::new(Mutex::new(vec![]));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (addr, jid, password) = (addr.to_string(), jid.to_string(), password.to_string());
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        let record = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the XMPP reader");
            rt.block_on(read(addr, jid, password, rooms, record, ready_tx, stop_rx));
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the XMPP reader: {e}"),
            Err(_) => panic!("the XMPP reader did not get online and into its rooms in 30 s"),
        }
        XmppReader {
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn messages(&self) -> Vec<XmppSeen> {
        self.seen.lock().expect("reader lock").clone()
    }

    /// Waits for a message that `f` accepts; returns it.
    pub fn wait_message(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&XmppSeen) -> bool,
    ) -> XmppSeen {
        wait_for(what, timeout, || self.messages().into_iter().find(|m| f(m)))
    }
}

impl Drop for XmppReader {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn read(
    addr: String,
    jid: String,
    password: String,
    rooms: Vec<String>,
    seen: Arc<Mutex<Vec<XmppSeen>>>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let user = match Jid::new(&jid) {
        Ok(j) => j,
        Err(e) => {
            let _ = ready.send(Err(format!("{jid}: {e}")));
            return;
        }
    };
    let nick = user.node().map(|n| n.to_string()).unwrap_or_default();
    let mut client =
        Client::new_plaintext(user, password, DnsConfig::addr(&addr), Timeouts::tight());
    let mut waiting: Vec<BareJid> = vec![];
    let mut online = false;
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            e = client.next() => e,
        };
        let Some(event) = event else { break };
        match event {
            Event::Online { .. } if !online => {
                online = true;
                let sent = client.send_stanza(Presence::available().into()).await;
                if let Err(e) = sent {
                    let _ = ready.send(Err(format!("presence: {e}")));
                    return;
                }
                for room in &rooms {
                    let Ok(room) = BareJid::new(room) else {
                        let _ = ready.send(Err(format!("{room} is not a room JID")));
                        return;
                    };
                    let Ok(occupant) = room.with_resource_str(&nick) else {
                        let _ = ready.send(Err(format!("{room}/{nick}")));
                        return;
                    };
                    let join = Presence::available()
                        .with_to(occupant)
                        .with_payload(Muc::new().with_history(History::new().with_maxstanzas(0)));
                    if let Err(e) = client.send_stanza(join.into()).await {
                        let _ = ready.send(Err(format!("joining {room}: {e}")));
                        return;
                    }
                    waiting.push(room);
                }
                if waiting.is_empty() {
                    let _ = ready.send(Ok(()));
                }
            }
            Event::Stanza(Stanza::Presence(p)) => {
                let is_self = p.payloads.iter().any(|el| {
                    el.is("x", ns::MUC_USER)
                        && MucUser::try_from(el.clone())
                            .is_ok_and(|u| u.status.contains(&Status::SelfPresence))
                });
                let from = p.from.as_ref().map(|j| j.to_bare());
                if is_self {
                    let before = waiting.len();
                    waiting.retain(|r| Some(r) != from.as_ref());
                    if before > 0 && waiting.is_empty() {
                        let _ = ready.send(Ok(()));
                    }
                }
            }
            Event::Stanza(Stanza::Message(m)) => {
                let Some((_, body)) = m.get_best_body(vec![]) else {
                    continue;
                };
                let kind = match m.type_ {
                    MessageType::Chat => "chat",
                    MessageType::Groupchat => "groupchat",
                    MessageType::Error => "error",
                    MessageType::Headline => "headline",
                    MessageType::Normal => "normal",
                };
                let entry = XmppSeen {
                    from: m.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
                    kind: kind.into(),
                    body: body.clone(),
                    id: m.id.as_ref().map(|i| i.0.clone()),
                };
                seen.lock().expect("reader lock").push(entry);
            }
            _ => {}
        }
    }
    let _ = client.send_end().await;
}

/// A certificate for `localhost` (`localhost.pem`, `localhost.key` in
/// `dir`), signed by the test CA that [`crate::make_certificates`] made
/// there (`ca.pem`, `ca.key`): an XMPP server's certificate names the
/// JID's domain.
pub fn localhost_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let ssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "localhost.key",
        "-out",
        "localhost.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("localhost.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("localhost.cnf");
    ssl(&[
        "x509",
        "-req",
        "-in",
        "localhost.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "localhost.pem",
        "-days",
        "2",
        "-extfile",
        "localhost.cnf",
    ]);
    (dir.join("localhost.pem"), dir.join("localhost.key"))
}
