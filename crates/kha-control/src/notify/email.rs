//! Email through an SMTP relay (lettre): one connection per message, with
//! STARTTLS, implicit TLS or none as `[notify.email] tls` says, and AUTH
//! when a username is set.
//!
//! The relay's reply decides what happens next. A 4xx reply (greylisting, a
//! full queue) or a connection that fails is tried again later; a 5xx reply
//! (an unknown recipient, a refused login) is final. A mail that is tried
//! again carries the same `Message-ID` (`<{delivery key}.{decided at}@{From domain}>`), so the
//! receiving side can tell a second copy from a new message when a reply
//! was lost after the relay had taken the mail.

use super::config::EmailConfig;
use super::{Delivery, Failure, Sent, Target};
use anyhow::{bail, Context};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, Error as SmtpError};
use lettre::{AsyncTransport, Tokio1Executor};
use std::error::Error as _;
use std::time::Duration;

/// Each SMTP command (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA) is
/// given this long for its reply; the outbox's attempt timeout bounds the
/// whole conversation.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The header naming the build a mail is about, for filters.
const BUILD_HEADER: HeaderName = HeaderName::new_from_ascii_str("X-Kha-Build");

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for messages.
    relay: String,
}

/// `<kha-SEQ-N.CREATED@DOMAIN>`: the same on every retry of a delivery
/// (receivers drop repeats by it), and unique across installations, which
/// number their events alike: the decision's time in milliseconds and the
/// From address's domain set them apart.
fn message_id(d: &Delivery, domain: &str) -> String {
    format!("<{}.{}@{domain}>", d.key, d.created_ms)
}

impl Mailer {
    fn sender_domain(&self) -> String {
        self.from.email.domain().to_string()
    }

    pub fn new(cfg: &EmailConfig) -> anyhow::Result<Mailer> {
        let from: Mailbox = cfg.from.parse().with_context(|| {
            format!(
                "[notify.email] from = {:?} is not a mail address (e.g. \"kha <ci@example.org>\")",
                cfg.from
            )
        })?;
        let tls_for = |host: &str| {
            TlsParameters::new_rustls(host.to_owned())
                .context("[notify.email]: setting up TLS (the system's root certificates)")
        };
        let (tls, default_port) = match cfg.tls.as_str() {
            "starttls" => (Tls::Required(tls_for(&cfg.smtp_host)?), 587),
            "tls" => (Tls::Wrapper(tls_for(&cfg.smtp_host)?), 465),
            "none" => (Tls::None, 25),
            other => {
                bail!("[notify.email] tls = {other:?}: use \"starttls\", \"tls\" or \"none\"")
            }
        };
        let port = cfg.smtp_port.unwrap_or(default_port);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)
            .port(port)
            .tls(tls)
            .timeout(Some(COMMAND_TIMEOUT));
        if let Some(user) = &cfg.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                cfg.password.expose().to_owned(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            relay: format!("{}:{port}", cfg.smtp_host),
        })
    }

    /// Sends the delivery's message to all of its recipients at once; the
    /// answer is the relay's reply to the message (e.g. "250 2.0.0 Ok:
    /// queued as 4BC1F2").
    pub async fn send(&self, d: &Delivery) -> Result<Sent, Failure> {
        let Target::Email { to } = &d.target else {
            return Err(Failure::Permanent(format!(
                "not an email delivery ({})",
                d.target.channel()
            )));
        };
        let mail = self.compose(d, to)?;
        match self.transport.send(mail).await {
            Ok(reply) => Ok(format!(
                "{} {}",
                reply.code(),
                reply.message().collect::<Vec<_>>().join(" ")
            )
            .trim_end()
            .to_owned()),
            Err(e) => Err(self.failure(&e)),
        }
    }

    fn compose(&self, d: &Delivery, to: &[String]) -> Result<lettre::Message, Failure> {
        if to.is_empty() {
            return Err(Failure::Permanent("no recipients".into()));
        }
        let mut mail = lettre::Message::builder()
            .from(self.from.clone())
            .subject(d.message.subject.clone())
            .message_id(Some(message_id(d, &self.sender_domain())))
            .raw_header(HeaderValue::new(BUILD_HEADER, d.build_id.to_string()))
            .header(ContentType::TEXT_PLAIN);
        for address in to {
            let mailbox: Mailbox = address.parse().map_err(|e| {
                Failure::Permanent(format!("{address:?} is not a mail address: {e}"))
            })?;
            mail = mail.to(mailbox);
        }
        // SMTP's end of data (CRLF . CRLF) ends the last line: a body's own
        // final line end would arrive as an extra blank line.
        let body = d.message.body.trim_end_matches(['\r', '\n']).to_owned();
        mail.body(body)
            .map_err(|e| Failure::Permanent(format!("the message cannot be built: {e}")))
    }

    /// 5xx replies and mistakes of our own are final; 4xx replies and
    /// everything on the way (DNS, TCP, TLS, timeouts) are worth another
    /// try.
    fn failure(&self, e: &SmtpError) -> Failure {
        let relay = &self.relay;
        match (e.status(), e.source()) {
            (Some(code), Some(text)) if e.is_permanent() => {
                Failure::Permanent(format!("{relay} refused it: {code} {text}"))
            }
            (Some(code), Some(text)) => Failure::Retry(format!("{relay} answered {code} {text}")),
            _ if e.is_permanent() || e.is_client() => Failure::Permanent(format!("{relay}: {e}")),
            _ => Failure::Retry(format!("{relay}: {e}")),
        }
    }
}
