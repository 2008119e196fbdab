//! XMPP messages to JIDs and multi-user chat rooms (tokio-xmpp).
//!
//! One short session per delivery, driven here step by step on
//! tokio-xmpp's XML stream (its `Client` reconnects by itself and would
//! retry a refused login forever, in a task of its own):
//!
//! 1. connect: STARTTLS unless `tls = false`, to the host the JID's domain
//!    names in DNS (SRV `_xmpp-client._tcp`, else the domain on 5222), or to
//!    `server` when the configuration names one;
//! 2. log in (SASL) and bind a resource;
//! 3. to a JID: one `chat` message, then a ping to the server, whose answer
//!    says the server has dealt with the message (an error about the
//!    message would have come first);
//!    to a room: join as `room/nick` (MUC presence) and wait for the room's
//!    self-presence, send one `groupchat` message to the room, wait for the
//!    room to echo it, leave;
//! 4. close the stream (our footer, then the server's).
//!
//! A refused login or a refusal from the room (banned, members only) is
//! final; a connection that fails or a server that says "wait" is tried
//! again later. The message's stanza id is the delivery's key.

use super::config::XmppConfig;
use super::{Delivery, Failure, Sent, Target};
use futures_util::{SinkExt, StreamExt};
use kha_core::Secret;
use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;
use tokio_xmpp::connect::{
    AsyncReadAndWrite, DnsConfig, ServerConnector, StartTlsServerConnector, TcpServerConnector,
};
use tokio_xmpp::error::{AuthError, ProtocolError};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::bind::{BindQuery, BindResponse};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::user::{MucUser, Status};
use tokio_xmpp::parsers::muc::{muc::History, Muc};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{self, Presence};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::xmlstream::{ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement};
use tokio_xmpp::{Error, Stanza};

/// A whole session (connect, log in, send, close) never takes longer; the
/// outbox's attempt timeout is usually shorter.
const SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the room has to acknowledge our joining (its self-presence)
/// before the message is sent anyway.
const JOIN_WAIT: Duration = Duration::from_secs(15);
/// How long the room has to echo our message back.
const ECHO_WAIT: Duration = Duration::from_secs(15);
/// How long the server has to answer our stream footer with its own.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Nicks tried in a room whose occupant already has ours: nick, nick_, nick__.
const NICK_TRIES: usize = 3;

const BIND_ID: &str = "kha-bind";
const PING_ID: &str = "kha-ping";

pub struct Xmpp {
    jid: BareJid,
    password: Secret,
    /// `server`, split: connect there instead of looking the domain up.
    server: Option<(String, u16)>,
    tls: bool,
    nick: String,
}

impl Xmpp {
    pub fn new(cfg: &XmppConfig) -> anyhow::Result<Xmpp> {
        let jid = BareJid::new(&cfg.jid).map_err(|e| {
            anyhow::anyhow!(
                "[notify.xmpp] jid = {:?} is not a bare JID (user@domain): {e}",
                cfg.jid
            )
        })?;
        if jid.node().is_none() {
            anyhow::bail!(
                "[notify.xmpp] jid = {:?} names no account: use user@domain",
                cfg.jid
            );
        }
        let server = match &cfg.server {
            None => None,
            Some(s) => Some(split_host_port(s).ok_or_else(|| {
                anyhow::anyhow!("[notify.xmpp] server = {s:?}: use host:port (or host)")
            })?),
        };
        if cfg.nick.trim().is_empty() {
            anyhow::bail!("[notify.xmpp] nick is empty");
        }
        // tokio-xmpp's TLS takes the process's default rustls provider:
        // make it ring, as for everything else kha speaks TLS to. (An error
        // says one is installed already.)
        let _ = tokio_xmpp::rustls::crypto::ring::default_provider().install_default();
        Ok(Xmpp {
            jid,
            password: cfg.password.clone(),
            server,
            tls: cfg.tls,
            nick: cfg.nick.clone(),
        })
    }

    /// Sends the delivery's chat lines as one message, to a JID or a room.
    pub async fn send(&self, d: &Delivery) -> Result<Sent, Failure> {
        let Target::Xmpp { to, room } = &d.target else {
            return Err(Failure::Permanent(format!(
                "not an XMPP delivery ({})",
                d.target.channel()
            )));
        };
        let to =
            Jid::new(to).map_err(|e| Failure::Permanent(format!("{to:?} is not a JID: {e}")))?;
        let note = Note {
            to,
            room: *room,
            key: d.key.clone(),
            body: d.message.lines.join("\n"),
        };
        let session = async {
            match (&self.server, self.tls) {
                (Some((host, port)), true) => {
                    self.deliver(
                        StartTlsServerConnector(DnsConfig::no_srv(host, *port)),
                        &note,
                    )
                    .await
                }
                (Some((host, port)), false) => {
                    self.deliver(TcpServerConnector(DnsConfig::no_srv(host, *port)), &note)
                        .await
                }
                (None, true) => {
                    let dns = DnsConfig::srv_default_client(self.jid.domain().as_str());
                    self.deliver(StartTlsServerConnector(dns), &note).await
                }
                (None, false) => {
                    let dns = DnsConfig::srv_default_client(self.jid.domain().as_str());
                    self.deliver(TcpServerConnector(dns), &note).await
                }
            }
        };
        tokio::time::timeout(SESSION_TIMEOUT, session)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Retry(format!(
                    "{}: no answer within {}s",
                    self.server_name(),
                    SESSION_TIMEOUT.as_secs()
                )))
            })
    }

    async fn deliver<C: ServerConnector>(
        &self,
        connector: C,
        note: &Note,
    ) -> Result<Sent, Failure> {
        let mut session = self.open(connector).await?;
        let sent = if note.room {
            session.post_in_room(note, &self.nick).await
        } else {
            session.message(note).await
        };
        session.close().await;
        sent
    }

    /// Connects, logs in and binds a resource.
    async fn open<C: ServerConnector>(&self, connector: C) -> Result<Session<C::Stream>, Failure> {
        let server = self.server_name();
        let fail = |e: Error| login_failure(&server, &self.jid, e);
        let jid = Jid::from(self.jid.clone());
        let domain = self.jid.domain().as_str();
        let (pending, binding) = connector
            .connect(&jid, ns::JABBER_CLIENT, Timeouts::tight())
            .await
            .map_err(fail)?;
        let (features, stream): (_, XmppStream<C::Stream>) =
            pending.recv_features().await.map_err(|e| fail(e.into()))?;
        let username = self.jid.node().map(|n| n.as_str()).unwrap_or_default();
        let credentials = sasl::common::Credentials::default()
            .with_username(username)
            .with_password(self.password.expose())
            .with_channel_binding(binding);
        let stream = tokio_xmpp::client_login(stream, features.sasl_mechanisms, credentials)
            .await
            .map_err(fail)?;
        let pending = stream
            .send_header(StreamHeader {
                to: Some(Cow::Borrowed(domain)),
                from: None,
                id: None,
            })
            .await
            .map_err(|e| fail(e.into()))?;
        let (features, stream) = pending.recv_features().await.map_err(|e| fail(e.into()))?;
        if !features.can_bind() {
            return Err(Failure::Permanent(format!(
                "{server} offers no resource binding after the login"
            )));
        }
        let mut session = Session {
            stream,
            server,
            domain: BareJid::from_parts(None, self.jid.domain()),
        };
        session.bind().await?;
        Ok(session)
    }

    fn server_name(&self) -> String {
        match &self.server {
            Some((host, port)) => format!("{host}:{port}"),
            None => self.jid.domain().to_string(),
        }
    }
}

/// What one delivery says to whom.
struct Note {
    to: Jid,
    room: bool,
    key: String,
    body: String,
}

impl Note {
    fn message(&self, kind: MessageType, to: Jid) -> Message {
        let mut m =
            Message::new_with_type(kind, Some(to)).with_body(Lang::default(), self.body.clone());
        m.id = Some(Id(self.key.clone()));
        m
    }

    fn is_ours(&self, m: &Message) -> bool {
        m.id.as_ref().is_some_and(|id| id.0 == self.key)
    }
}

/// A logged-in stream.
struct Session<S: AsyncReadAndWrite> {
    stream: XmppStream<S>,
    /// The server, for messages.
    server: String,
    domain: BareJid,
}

impl<S: AsyncReadAndWrite> Session<S> {
    async fn bind(&mut self) -> Result<(), Failure> {
        self.send(Iq::from_set(BIND_ID, BindQuery::new(None)))
            .await?;
        loop {
            match self.recv().await? {
                Stanza::Iq(Iq::Result {
                    id,
                    payload: Some(payload),
                    ..
                }) if id == BIND_ID => {
                    return BindResponse::try_from(payload).map(|_| ()).map_err(|e| {
                        Failure::Retry(format!(
                            "{}: a resource binding we cannot read: {e}",
                            self.server
                        ))
                    });
                }
                Stanza::Iq(Iq::Error { id, error, .. }) if id == BIND_ID => {
                    return Err(stanza_failure(
                        &error,
                        &format!("{} refused a resource", self.server),
                    ));
                }
                _ => {}
            }
        }
    }

    /// One `chat` message to a JID, then a ping: its answer comes after any
    /// error the server has about the message.
    async fn message(&mut self, note: &Note) -> Result<Sent, Failure> {
        self.send(note.message(MessageType::Chat, note.to.clone()))
            .await?;
        self.send(Iq::from_get(PING_ID, Ping).with_to(Jid::from(self.domain.clone())))
            .await?;
        loop {
            match self.recv().await? {
                Stanza::Message(m) if m.type_ == MessageType::Error && note.is_ours(&m) => {
                    let what = format!("{} refused the message to {}", self.server, note.to);
                    return Err(match payload_error(&m.payloads) {
                        Some(e) => stanza_failure(&e, &what),
                        None => Failure::Permanent(what),
                    });
                }
                Stanza::Iq(iq) if iq.id() == PING_ID => {
                    return Ok(format!("{} took it for {}", self.server, note.to));
                }
                _ => {}
            }
        }
    }

    /// Joins the room, sends one `groupchat` message, leaves.
    async fn post_in_room(&mut self, note: &Note, nick: &str) -> Result<Sent, Failure> {
        let room = note.to.to_bare();
        let mut nick = nick.to_owned();
        let mut joined = None;
        for _ in 0..NICK_TRIES {
            let occupant = room.with_resource_str(&nick).map_err(|e| {
                Failure::Permanent(format!("{room}/{nick} is not a room occupant's JID: {e}"))
            })?;
            let join = Presence::available()
                .with_to(occupant.clone())
                .with_payload(Muc::new().with_history(History::new().with_maxstanzas(0)));
            self.send(join).await?;
            match within(JOIN_WAIT, self.joined(&room, &occupant)).await {
                // No word from the room: send anyway (an old server may not
                // say which presence is ours).
                None => joined = Some((occupant, false)),
                Some(Ok(Joined::As(me))) => joined = Some((me, true)),
                Some(Ok(Joined::NickTaken)) => {
                    nick.push('_');
                    continue;
                }
                Some(Err(f)) => return Err(f),
            }
            break;
        }
        let Some((me, confirmed)) = joined else {
            return Err(Failure::Retry(format!(
                "{room}: the nicks {} to {nick} are all taken",
                nick.trim_end_matches('_')
            )));
        };
        self.send(note.message(MessageType::Groupchat, Jid::from(room.clone())))
            .await?;
        let echoed = within(ECHO_WAIT, async {
            loop {
                match self.recv().await? {
                    Stanza::Message(m) if note.is_ours(&m) && from_room(&m.from, &room) => {
                        if m.type_ != MessageType::Error {
                            return Ok(());
                        }
                        let what = format!("{room} refused the message");
                        return Err(match payload_error(&m.payloads) {
                            Some(e) => stanza_failure(&e, &what),
                            None => Failure::Permanent(what),
                        });
                    }
                    _ => {}
                }
            }
        })
        .await;
        // Leaving is a courtesy; the stream's end would do it too.
        let _ = self
            .send(Presence::new(presence::Type::Unavailable).with_to(me.clone()))
            .await;
        match echoed {
            Some(Err(f)) => Err(f),
            Some(Ok(())) => Ok(format!("posted in {room} as {}", me.resource())),
            None if confirmed => Ok(format!(
                "sent to {room} as {} (the room did not echo it)",
                me.resource()
            )),
            None => Ok(format!(
                "sent to {room} (the room acknowledged neither the join nor the message)"
            )),
        }
    }

    /// Waits for the room's answer to our join: our own presence (status
    /// 110, or from the occupant JID we asked for), or an error.
    async fn joined(&mut self, room: &BareJid, occupant: &FullJid) -> Result<Joined, Failure> {
        loop {
            let Stanza::Presence(p) = self.recv().await? else {
                continue;
            };
            if !from_room(&p.from, room) {
                continue;
            }
            if p.type_ == presence::Type::Error {
                let Some(e) = payload_error(&p.payloads) else {
                    return Err(Failure::Permanent(format!("{room} refused us")));
                };
                if e.defined_condition == DefinedCondition::Conflict {
                    return Ok(Joined::NickTaken);
                }
                return Err(stanza_failure(&e, &format!("{room} refused us")));
            }
            let self_presence = p.payloads.iter().any(|el| {
                el.is("x", ns::MUC_USER)
                    && MucUser::try_from(el.clone())
                        .is_ok_and(|u| u.status.contains(&Status::SelfPresence))
            });
            let ours = p.from.as_ref() == Some(&Jid::from(occupant.clone()));
            if p.type_ == presence::Type::None && (self_presence || ours) {
                let me = p
                    .from
                    .and_then(|j| j.try_into_full().ok())
                    .unwrap_or_else(|| occupant.clone());
                return Ok(Joined::As(me));
            }
        }
    }

    async fn send(&mut self, stanza: impl Into<Stanza>) -> Result<(), Failure> {
        let stanza: Stanza = stanza.into();
        self.stream
            .send(&stanza)
            .await
            .map_err(|e| Failure::Retry(format!("{}: {e}", self.server)))
    }

    /// The next stanza; a broken or closed stream is a failure worth
    /// another try.
    async fn recv(&mut self) -> Result<Stanza, Failure> {
        loop {
            let item = self.stream.next().await;
            let gone = |why: String| Failure::Retry(format!("{}: {why}", self.server));
            match item.map(|r| r.and_then(|e| e.into_read_error())) {
                Some(Ok(XmppStreamElement::Stanza(s))) => return Ok(s),
                Some(Ok(XmppStreamElement::StreamError(e))) => {
                    return Err(gone(format!("stream error: {e}")))
                }
                Some(Ok(_)) | Some(Err(ReadError::ParseError(_))) => {}
                // Silence: the hard timeout follows if it lasts.
                Some(Err(ReadError::SoftTimeout)) => {}
                Some(Err(ReadError::HardError(e))) => return Err(gone(e.to_string())),
                Some(Err(ReadError::StreamFooterReceived)) | None => {
                    return Err(gone("the server closed the stream".into()))
                }
            }
        }
    }

    /// Our footer, the server's, then the connection's end.
    async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            if self.stream.shutdown().await.is_err() {
                return;
            }
            while let Some(item) = self.stream.next().await {
                if matches!(
                    item,
                    Err(ReadError::StreamFooterReceived) | Err(ReadError::HardError(_))
                ) {
                    break;
                }
            }
            let _ = SinkExt::<&Stanza>::close(&mut self.stream).await;
        })
        .await;
    }
}

enum Joined {
    /// In the room, as this occupant (the room may have changed our nick).
    As(FullJid),
    NickTaken,
}

async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, f).await.ok()
}

fn from_room(from: &Option<Jid>, room: &BareJid) -> bool {
    from.as_ref().is_some_and(|j| j.to_bare() == *room)
}

fn payload_error(payloads: &[Element]) -> Option<StanzaError> {
    payloads
        .iter()
        .find(|el| el.name() == "error")
        .and_then(|el| StanzaError::try_from(el.clone()).ok())
}

/// `wait` errors are worth another try; the others (`cancel`, `auth`,
/// `modify`) will not change by themselves.
fn stanza_failure(e: &StanzaError, what: &str) -> Failure {
    let text = e
        .texts
        .values()
        .next()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let why = format!("{what}: {}{text}", condition_name(&e.defined_condition));
    if e.type_ == ErrorType::Wait {
        Failure::Retry(why)
    } else {
        Failure::Permanent(why)
    }
}

/// `NotAuthorized` → `not-authorized`, as the protocol spells it.
fn condition_name(c: &impl std::fmt::Debug) -> String {
    let name = format!("{c:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// A refused login, and an address or server that cannot work, are final;
/// everything on the way (DNS, TCP, TLS, a closed stream) is worth another
/// try.
fn login_failure(server: &str, jid: &BareJid, e: Error) -> Failure {
    match e {
        Error::Auth(AuthError::Fail(c)) => Failure::Permanent(format!(
            "{server} refused the login as {jid}: {}",
            condition_name(&c)
        )),
        Error::Auth(e) => Failure::Permanent(format!("logging in to {server} as {jid}: {e}")),
        Error::Protocol(ProtocolError::NoTls) => Failure::Permanent(format!(
            "{server} does not offer STARTTLS (tls = false is meant for a server on loopback)"
        )),
        Error::JidParse(_) | Error::Addr(_) | Error::Idna => {
            Failure::Permanent(format!("{server}: {e}"))
        }
        e => Failure::Retry(format!("{server}: {e}")),
    }
}

/// `host:port`, `host`, `[v6]:port` → (host, port); 5222 by default.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 5222,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            Some((host.to_owned(), port.parse().ok()?))
        }
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_owned(), 5222)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_strings() {
        let table: &[(&str, Option<(&str, u16)>)] = &[
            ("127.0.0.1:5222", Some(("127.0.0.1", 5222))),
            ("xmpp.example.org:5223", Some(("xmpp.example.org", 5223))),
            ("xmpp.example.org", Some(("xmpp.example.org", 5222))),
            ("[::1]:15222", Some(("::1", 15222))),
            ("[::1]", Some(("::1", 5222))),
            ("::1", None),
            ("host:port", None),
            (":5222", None),
            ("", None),
        ];
        for (input, want) in table {
            let got = split_host_port(input);
            let want = want.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn conditions_as_the_protocol_spells_them() {
        assert_eq!(
            condition_name(&DefinedCondition::NotAuthorized),
            "not-authorized"
        );
        assert_eq!(
            condition_name(&DefinedCondition::RegistrationRequired),
            "registration-required"
        );
        assert_eq!(condition_name(&DefinedCondition::Conflict), "conflict");
    }
}
