//! Encrypted values (`secure:`) in notifications, decrypted at send time.
//!
//! The reader keeps an encrypted recipient, IRC password or key in its
//! stored form ([`secure::env_line`]), so a delivery record (sled, `kha
//! build show`, the outbox's log lines) only ever holds ciphertext.
//! [`reveal`] makes the copy an attempt sends, with the project's private
//! key, and [`Hidden::scrub`] takes the plaintext back out of the answer
//! that is stored. A value that does not decrypt fails its delivery (Travis
//! sends `[unable to decrypt]` instead; a message to nowhere helps nobody).

use super::{Delivery, Failure, Target};
use crate::secrets::{self, KeyStore};
use kha_core::travis::secure;
use kha_core::Secret;
use openssl::pkey::Private;
use openssl::rsa::Rsa;

/// Plaintexts an attempt uses, to be kept out of what is stored.
#[derive(Default)]
pub struct Hidden(Vec<String>);

impl Hidden {
    /// `text` with every hidden value replaced by `[secure]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in self.0.iter().filter(|v| !v.is_empty()) {
            out = out.replace(v.as_str(), secure::SHOWN_AS);
        }
        out
    }
}

/// Does the target hold an encrypted value?
pub fn has_secure(t: &Target) -> bool {
    let enc = |s: &str| secure::ciphertext(s).is_some();
    let enc_secret = |s: &Option<Secret>| s.as_ref().is_some_and(|s| enc(s.expose()));
    match t {
        Target::Email { to } => to.iter().any(|s| enc(s)),
        Target::Xmpp { to, .. } => enc(to),
        Target::Irc {
            channel,
            key,
            password,
            nickserv_password,
            ..
        } => {
            enc(channel) || enc_secret(key) || enc_secret(password) || enc_secret(nickserv_password)
        }
        Target::Webhook { url, .. } => enc(url),
        Target::Plugin { config, .. } => json_has_secure(config),
        Target::GithubStatus { .. } | Target::Hook { .. } => false,
    }
}

/// The delivery as it is sent, its encrypted values decrypted, and what
/// to hide; `None` when it holds none.
pub fn reveal(keys: &KeyStore, d: &Delivery) -> Result<Option<(Delivery, Hidden)>, Failure> {
    if !has_secure(&d.target) {
        return Ok(None);
    }
    let key = match keys.private(&d.project) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return Err(Failure::Permanent(
                "an encrypted value (`secure:`) in `notifications` cannot be decrypted: this project has no key yet (encrypt it with `kha encrypt`)".into(),
            ))
        }
        Err(e) => return Err(Failure::Retry(format!("cannot read the project's key: {e}"))),
    };
    let mut r = Revealer {
        key: &key,
        hidden: Hidden::default(),
    };
    let target = r.target(&d.target)?;
    let mut out = d.clone();
    out.target = target;
    Ok(Some((out, r.hidden)))
}

struct Revealer<'a> {
    key: &'a Rsa<Private>,
    hidden: Hidden,
}

impl Revealer<'_> {
    /// One value: plain as it is, encrypted decrypted.
    fn text(&mut self, s: &str) -> Result<String, Failure> {
        let Some(c) = secure::ciphertext(s) else {
            return Ok(s.to_string());
        };
        let plain = secrets::decrypt(self.key, c).map_err(|e| {
            Failure::Permanent(format!(
                "an encrypted value (`secure:`) in `notifications` cannot be decrypted: {e}"
            ))
        })?;
        let plain = plain.expose().trim().to_string();
        self.hidden.0.push(plain.clone());
        // A URL's host shows in answers ("cannot connect to HOST").
        if let Some(host) = url::Url::parse(&plain)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
        {
            self.hidden.0.push(host);
        }
        Ok(plain)
    }

    fn secret(&mut self, s: &Option<Secret>) -> Result<Option<Secret>, Failure> {
        s.as_ref()
            .map(|s| self.text(s.expose()).map(Secret::from))
            .transpose()
    }

    fn target(&mut self, t: &Target) -> Result<Target, Failure> {
        Ok(match t {
            Target::Email { to } => {
                let mut out = Vec::new();
                for s in to {
                    let plain = self.text(s)?;
                    // One encrypted entry may name several addresses.
                    out.extend(
                        plain
                            .split(',')
                            .map(str::trim)
                            .filter(|a| !a.is_empty())
                            .map(String::from),
                    );
                }
                Target::Email { to: out }
            }
            Target::Xmpp { to, room } => Target::Xmpp {
                to: self.text(to)?,
                room: *room,
            },
            Target::Irc {
                channel,
                key,
                use_notice,
                skip_join,
                password,
                nickserv_password,
                nick,
            } => {
                let mut key = self.secret(key)?;
                let mut channel_plain = self.text(channel)?;
                // Travis's `host#chan,key`, encrypted as one value.
                if secure::ciphertext(channel).is_some() {
                    if let Some((c, k)) = channel_plain.clone().split_once(',') {
                        channel_plain = c.to_string();
                        key = Some(Secret::from(k));
                    }
                }
                Target::Irc {
                    channel: channel_plain,
                    key,
                    use_notice: *use_notice,
                    skip_join: *skip_join,
                    password: self.secret(password)?,
                    nickserv_password: self.secret(nickserv_password)?,
                    nick: nick.clone(),
                }
            }
            Target::Webhook { url, format } => Target::Webhook {
                url: self.text(url)?,
                format: *format,
            },
            Target::Plugin { name, config } => Target::Plugin {
                name: name.clone(),
                config: self.json(config)?,
            },
            other => other.clone(),
        })
    }

    /// A plugin's config with every `{"secure": "…"}` replaced by its
    /// plaintext.
    fn json(&mut self, v: &serde_json::Value) -> Result<serde_json::Value, Failure> {
        use serde_json::Value as J;
        Ok(match v {
            J::Object(m) => match secure_of(v) {
                Some(c) => J::String(self.text(&secure::env_line(c))?),
                None => J::Object(
                    m.iter()
                        .map(|(k, v)| Ok((k.clone(), self.json(v)?)))
                        .collect::<Result<_, Failure>>()?,
                ),
            },
            J::Array(a) => J::Array(a.iter().map(|v| self.json(v)).collect::<Result<_, _>>()?),
            other => other.clone(),
        })
    }
}

/// The ciphertext of a `{"secure": "…"}` object.
fn secure_of(v: &serde_json::Value) -> Option<&str> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    m.get("secure")?.as_str()
}

fn json_has_secure(v: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    secure_of(v).is_some()
        || match v {
            J::Object(m) => m.values().any(json_has_secure),
            J::Array(a) => a.iter().any(json_has_secure),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::WebhookFormat;
    use base64::Engine;
    use openssl::rsa::Padding;

    fn encrypt(key: &Rsa<Private>, plain: &str) -> String {
        let mut out = vec![0u8; key.size() as usize];
        let n = key
            .public_encrypt(plain.as_bytes(), &mut out, Padding::PKCS1)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(&out[..n])
    }

    #[test]
    fn targets_are_decrypted_and_answers_scrubbed() {
        let key = Rsa::generate(1024).unwrap();
        let mut r = Revealer {
            key: &key,
            hidden: Hidden::default(),
        };
        let enc = |p: &str| secure::env_line(&encrypt(&key, p));
        let hook = Target::Webhook {
            url: enc("http://hooks.example:8080/T0/token"),
            format: WebhookFormat::Kha,
        };
        assert!(has_secure(&hook));
        assert_eq!(hook.describe(), "[secure]");
        let Target::Webhook { url, .. } = r.target(&hook).unwrap() else {
            panic!()
        };
        assert_eq!(url, "http://hooks.example:8080/T0/token");
        assert_eq!(
            r.hidden.scrub("cannot connect to hooks.example:8080"),
            "cannot connect to [secure]:8080"
        );

        let mail = Target::Email {
            to: vec!["a@x.org".into(), enc("b@y.org, c@z.org")],
        };
        assert_eq!(
            r.target(&mail).unwrap(),
            Target::Email {
                to: vec!["a@x.org".into(), "b@y.org".into(), "c@z.org".into()]
            }
        );

        let irc = Target::Irc {
            channel: enc("irc.example#ops,hunter2"),
            key: None,
            use_notice: false,
            skip_join: false,
            password: Some(Secret::from(enc("pw"))),
            nickserv_password: None,
            nick: None,
        };
        let Target::Irc {
            channel,
            key: k,
            password,
            ..
        } = r.target(&irc).unwrap()
        else {
            panic!()
        };
        assert_eq!(channel, "irc.example#ops");
        assert_eq!(k.unwrap().expose(), "hunter2");
        assert_eq!(password.unwrap().expose(), "pw");

        let plugin = Target::Plugin {
            name: "slack".into(),
            config: serde_json::json!({"rooms": [{"secure": encrypt(&key, "acme:tok#ci")}], "on_success": "never"}),
        };
        assert!(has_secure(&plugin));
        let Target::Plugin { config, .. } = r.target(&plugin).unwrap() else {
            panic!()
        };
        assert_eq!(
            config,
            serde_json::json!({"rooms": ["acme:tok#ci"], "on_success": "never"})
        );

        // Garbage fails the delivery, saying why, not what.
        let bad = Target::Webhook {
            url: secure::env_line("bm90IGVuY3J5cHRlZA=="),
            format: WebhookFormat::Kha,
        };
        let Err(Failure::Permanent(why)) = r.target(&bad) else {
            panic!()
        };
        assert!(why.contains("cannot be decrypted"), "{why}");
        assert!(!has_secure(&Target::Hook { name: "x".into() }));
    }
}
