//! `[notify]` in `control.toml`: the server-wide accounts notifications are
//! sent from, retry bounds, and where hooks and plugins live.

use kha_core::Secret;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// The first retry waits this long; each next one twice as long…
    pub first_retry_secs: f64,
    /// …but never longer than this…
    pub max_retry_secs: f64,
    /// …and a delivery still failing this long after it was decided is
    /// given up and recorded as failed.
    pub give_up_after_secs: u64,
    /// One attempt (connect, send, answer) may take this long.
    pub attempt_timeout_secs: f64,
    /// At most this many attempts run at once.
    pub max_in_flight: usize,
    /// Directories searched for `kha-notify-NAME` plugins, in order.
    pub plugin_path: Vec<PathBuf>,
    /// Directory of control-node hooks (`pre-build`, `post-build`,
    /// `on-state-change`); absent: none.
    pub hooks_dir: Option<PathBuf>,
    /// A hook or plugin is killed after this long.
    pub hook_timeout_secs: f64,
    pub email: Option<EmailConfig>,
    pub xmpp: Option<XmppConfig>,
    pub irc: IrcConfig,
    pub webhooks: WebhooksConfig,
    /// GitHub commit statuses; absent: none are posted.
    pub github: Option<GithubStatusConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            first_retry_secs: 5.0,
            max_retry_secs: 600.0,
            give_up_after_secs: 6 * 3600,
            attempt_timeout_secs: 30.0,
            max_in_flight: 16,
            plugin_path: vec![
                PathBuf::from("/usr/local/lib/kha/notify"),
                PathBuf::from("/usr/lib/kha/notify"),
            ],
            hooks_dir: None,
            hook_timeout_secs: 60.0,
            email: None,
            xmpp: None,
            irc: IrcConfig::default(),
            webhooks: WebhooksConfig::default(),
            github: None,
        }
    }
}

/// The SMTP relay mail is sent through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none`.
    #[serde(default = "starttls")]
    pub tls: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Secret,
    /// The From address, e.g. `kha <ci@example.org>`.
    pub from: String,
}

fn starttls() -> String {
    "starttls".into()
}

/// The XMPP account messages are sent from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    pub jid: String,
    pub password: Secret,
    /// `host:port` to connect to instead of looking the JID's domain up.
    #[serde(default)]
    pub server: Option<String>,
    /// STARTTLS (default true); false only for a server on loopback.
    #[serde(default = "yes")]
    pub tls: bool,
    /// The nick used in multi-user chat rooms.
    #[serde(default = "kha_nick")]
    pub nick: String,
}

fn yes() -> bool {
    true
}

fn kha_nick() -> String {
    "kha".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrcConfig {
    /// The nick, unless a project's `irc:` names its own.
    pub nick: String,
    pub realname: String,
}

impl Default for IrcConfig {
    fn default() -> Self {
        IrcConfig {
            nick: "kha-ci".into(),
            realname: "kha CI".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// An RSA private key (PEM): webhooks then carry Travis's `Signature`
    /// header (RSA-PKCS1v15-SHA1 of the payload, base64), verifiable with the
    /// public key at `/api/v1/config`.
    pub rsa_private_key: Option<PathBuf>,
    /// One POST (connect, send, answer) may take this long; a receiver
    /// slower than that is tried again later.
    pub timeout_secs: f64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            rsa_private_key: None,
            timeout_secs: 20.0,
        }
    }
}

/// GitHub commit statuses, posted with a token that may write statuses of
/// the projects' repositories.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubStatusConfig {
    pub token: Secret,
    #[serde(default = "github_api")]
    pub api_url: String,
    /// The status's context (`kha` → "kha/push", "kha/pr").
    #[serde(default = "kha_nick")]
    pub context: String,
    /// Also one status per job (`<context>/job/<n>`).
    #[serde(default)]
    pub per_job: bool,
}

fn github_api() -> String {
    "https://api.github.com".into()
}
