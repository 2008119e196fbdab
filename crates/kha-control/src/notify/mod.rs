//! Notifications, control-side hooks and notifier plugins: everyone who
//! hears about a build, from one durable outbox.
//!
//! The event stream feeds [`outbox`]: for each build event it decides, with
//! Travis's `notifications:` semantics ([`decide`]), which deliveries are
//! due, renders their text ([`template`]) and stores them **in the same sled
//! transaction** that moves its cursor past the event. A control node killed
//! at any point therefore neither loses a decision nor takes it twice.
//! Deliveries are then attempted off the build path, each with a timeout,
//! retried with backoff for a bounded time and finally recorded as sent or
//! failed with the server's answer. Every delivery carries an idempotency
//! key (`key`) that channels which allow it pass on (webhooks:
//! `X-Kha-Delivery`; commit statuses are idempotent by nature).
//!
//! One module per channel, each with a `send` that turns one [`Delivery`]
//! into an answer ([`Sent`]) or a [`Failure`].

pub mod config;
pub mod decide;
pub mod email;
pub mod exec;
pub mod github;
pub mod hooks;
pub mod irc;
pub mod outbox;
pub mod plugin;
pub mod secure;
pub mod template;
pub mod webhook;
pub mod xmpp;

pub use config::NotifyConfig;

use kha_core::{BuildId, JobId, Millis, Secret};
use serde::{Deserialize, Serialize};

/// The version of [`Notice`]'s JSON shape that plugins and hooks read.
pub const NOTICE_VERSION: u32 = 1;

/// What happened to a build, as notifiers, plugins and hooks see it. Its
/// JSON is versioned ([`NOTICE_VERSION`]) and documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub version: u32,
    /// `build_started`, `build_finished`, `build_canceled`, `build_errored`,
    /// or for per-job statuses and hooks `job_started` / `job_finished`.
    pub event: String,
    pub build: BuildFacts,
    /// The job, for job events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobFacts>,
}

/// A build, with everything a message template or a webhook payload names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildFacts {
    pub id: BuildId,
    /// Travis's build number (kha numbers builds by id).
    pub number: String,
    pub project: String,
    /// `owner/name`: the GitHub repository if the project has one, else the
    /// project's name.
    pub repository_slug: String,
    pub repository_url: String,
    pub branch: String,
    /// The tag, for a tag build.
    pub tag: Option<String>,
    pub commit: String,
    /// The commit message (its first line, which is what kha keeps).
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    pub committer_name: String,
    pub committer_email: String,
    /// push, pull_request, api or cron (Travis's `type`).
    pub event_type: String,
    pub pull_request: Option<u64>,
    pub pull_request_url: String,
    pub compare_url: String,
    /// The build's state: created, queued, started, passed, failed,
    /// errored, canceled.
    pub state: String,
    /// The last finished push or API build's state on the branch when this
    /// one was created (Travis's `previous_state`); None: the first.
    pub previous_state: Option<String>,
    /// Travis's status message: Pending, Passed, Fixed, Broken, Failed,
    /// Still Failing, Canceled, Errored.
    pub status_message: String,
    /// Travis's sentence: "The build was fixed.", …
    pub result_text: String,
    pub created_ms: Millis,
    pub started_ms: Millis,
    pub finished_ms: Millis,
    /// finished − started, in seconds; None while unknown.
    pub duration_secs: Option<u64>,
    pub build_url: String,
    /// Why the build could not be set up or was refused, if it was.
    pub error: String,
    pub jobs: Vec<JobFacts>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobFacts {
    pub id: JobId,
    /// `<build>.<n>`
    pub number: String,
    pub state: String,
    pub allow_failure: bool,
    pub name: String,
    pub stage: String,
    pub matrix: Vec<(String, String)>,
    pub started_ms: Millis,
    pub finished_ms: Millis,
    pub url: String,
}

/// The rendered text of a message, decided with the delivery so a retry
/// sends exactly what was decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// Email subject.
    pub subject: String,
    /// Email body (plain text).
    pub body: String,
    /// Chat lines (IRC, XMPP), from the channel's template: one message per
    /// line on IRC, one message with these lines on XMPP.
    pub lines: Vec<String>,
}

/// Where a delivery goes, with what that channel needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// One message to all of `to`.
    Email { to: Vec<String> },
    /// One message to a JID, or (`room`) to a multi-user chat room
    /// (`room@conference.host`, joined as the configured nick).
    Xmpp { to: String, room: bool },
    /// One IRC channel: `irc://host[:port]/#chan`, `ircs://…` for TLS, or
    /// Travis's `host#chan`.
    Irc {
        channel: String,
        /// The channel's key (`#chan,key` in Travis's strings).
        key: Option<Secret>,
        use_notice: bool,
        skip_join: bool,
        /// Server password (`PASS`).
        password: Option<Secret>,
        nickserv_password: Option<Secret>,
        /// Overrides the server-wide nick.
        nick: Option<String>,
    },
    /// An HTTP POST.
    Webhook { url: String, format: WebhookFormat },
    /// A GitHub commit status.
    GithubStatus {
        /// owner/name
        repo: String,
        sha: String,
        /// pending, success, failure, error
        state: String,
        context: String,
        description: String,
        target_url: String,
    },
    /// `kha-notify-NAME` on the plugin path, given the notice and `config`
    /// (the channel's `.travis.yml` value) as JSON on stdin.
    Plugin {
        name: String,
        config: serde_json::Value,
    },
    /// A control-node hook (`post-build`, `on-state-change`) from the hooks
    /// directory.
    Hook { name: String },
}

impl Target {
    /// The channel's name, as `kha build show` and `.travis.yml` say it.
    pub fn channel(&self) -> String {
        match self {
            Target::Email { .. } => "email".into(),
            Target::Xmpp { .. } => "xmpp".into(),
            Target::Irc { .. } => "irc".into(),
            Target::Webhook { .. } => "webhooks".into(),
            Target::GithubStatus { .. } => "github_status".into(),
            Target::Plugin { name, .. } => format!("plugin:{name}"),
            Target::Hook { name } => format!("hook:{name}"),
        }
    }

    /// Who or what it goes to, for people (no secrets; an encrypted
    /// value is `[secure]`).
    pub fn describe(&self) -> String {
        let shown = |s: &str| kha_core::travis::secure::shown(s).to_string();
        match self {
            Target::Email { to } => to.iter().map(|s| shown(s)).collect::<Vec<_>>().join(", "),
            Target::Xmpp { to, .. } => shown(to),
            Target::Irc { channel, .. } => shown(channel),
            Target::Webhook { url, .. } if kha_core::travis::secure::ciphertext(url).is_some() => {
                shown(url)
            }
            Target::Webhook { url, .. } => webhook_origin(url),
            Target::GithubStatus {
                repo,
                state,
                context,
                ..
            } => format!("{repo} {context}: {state}"),
            Target::Plugin { name, .. } => format!("kha-notify-{name}"),
            Target::Hook { name } => name.clone(),
        }
    }
}

/// A webhook URL as shown to people: its origin only, as the path and
/// query of many chat services' incoming webhooks are the credential
/// (`https://hooks.example/services/T0/B0/XXXX` → `https://hooks.example/…`).
pub fn webhook_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.has_host() => {
            let origin = u.origin().ascii_serialization();
            if u.path() == "/" && u.query().is_none() {
                format!("{origin}/")
            } else {
                format!("{origin}/…")
            }
        }
        _ => "(not a URL)".into(),
    }
}

/// `https://user:pw@host/x` → `https://host/x`.
pub fn redact_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// kha's own JSON ([`Notice`]), `Content-Type: application/json`.
    #[default]
    Kha,
    /// Travis's form field `payload` with Travis's JSON shape.
    Travis,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Decided, not yet attempted.
    Pending,
    /// An attempt failed; another follows at `next_ms`.
    Retrying,
    Sent,
    /// Given up: a permanent failure, or retries ran out.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, DeliveryState::Sent | DeliveryState::Failed)
    }
}

/// One message to one target, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique, increasing; the outbox's key.
    pub id: u64,
    /// Stable across retries and restarts: `kha-<event seq>-<n>`. Sent as
    /// the idempotency key where the channel takes one.
    pub key: String,
    pub build_id: BuildId,
    pub project: String,
    pub target: Target,
    pub notice: Notice,
    pub message: Message,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_ms: Millis,
    /// When the next attempt is due (Pending, Retrying).
    pub next_ms: Millis,
    pub updated_ms: Millis,
    /// The server's last answer, or why it failed (for people; no secrets).
    pub answer: String,
}

/// A delivery that went through: the server's answer, for people.
pub type Sent = String;

/// Why a delivery did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again later (connection refused, timeout, 5xx, 429).
    Retry(String),
    /// Trying again cannot help (bad address, 4xx, no such plugin).
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(m) | Failure::Permanent(m) => f.write_str(m),
        }
    }
}
