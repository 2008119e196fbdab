//! Real servers the notification tests talk to, each on loopback in its
//! own temp dir, stopped when dropped: ngircd, an HTTP receiver, an SMTP
//! sink ([`SmtpSink`], Debian's python3-aiosmtpd) and an XMPP server
//! ([`Prosody`]) with a client that reads what arrives ([`XmppReader`]).
//!
//! A machine without one of them builds the tests that need it as ignored
//! (`tests/build.rs`).

pub mod ngircd;
pub mod prosody;
pub mod receiver;
pub mod smtp;

pub use prosody::{localhost_certificate, Prosody, XmppReader, XmppSeen};
pub use smtp::{Mail, SmtpSink, SmtpSinkOpts};

/// A port no one listens on right now: bound and released at once, for a
/// server that cannot bind port 0 and say which port it got.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
