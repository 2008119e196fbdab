//! `notifications:`: who hears about a build, and when.
//!
//! kha sends `email`, `irc`, `webhooks` and its own `jabber` (alias `xmpp`,
//! shaped like `irc`: `recipients` are JIDs, `rooms` multi-user chat rooms);
//! every other channel key (`slack`, `matrix`, …) goes to the notifier
//! plugin of that name on the control node. Rules from Travis (the docs'
//! "Configuring Build Notifications" and travis-hub's `notify.rb`):
//! - email goes to the committer and the author unless recipients are
//!   given; it is sent on success when the result changed, always on
//!   failure, error and cancel, never on start;
//! - other channels notify on every finished build unless told otherwise,
//!   never on start;
//! - `on_success` / `on_failure` / `on_start` / `on_cancel` / `on_error` take
//!   `always`, `never` or `change` (travis-yml also accepts `true`, `false`
//!   and `changed`); the ones given directly under `notifications` apply to
//!   every channel that does not set its own;
//! - a channel may be given several times as a list of mappings ("multiple
//!   notification targets"), each with its own settings;
//! - `email: false` (or `enabled: false`, `disabled: true`) turns a channel
//!   off; lists given as a string may be comma-separated (email, webhooks);
//! - a recipient, an IRC password or key, or a whole channel may be
//!   encrypted (`{secure: "…"}`, travis-hub's `decrypt`): it is kept
//!   encrypted, in [`secure::env_line`] form, and only the control node
//!   decrypts it when it sends.

use super::cond::{Condition, Data};
use super::diag::{Diagnostic, Diagnostics};
use super::secure;
use super::yaml::{Entry, Kind, Node, Value};
use serde::{Deserialize, Serialize};

/// When a channel is told about a build event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Always,
    Never,
    /// When the result differs from the previous build's on the branch.
    Change,
}

impl Frequency {
    fn parse(node: &Node) -> Option<Frequency> {
        if let Some(b) = node.as_bool() {
            return Some(if b {
                Frequency::Always
            } else {
                Frequency::Never
            });
        }
        match node.scalar()?.trim().to_ascii_lowercase().as_str() {
            "always" | "true" => Some(Frequency::Always),
            "never" | "false" => Some(Frequency::Never),
            "change" | "changed" => Some(Frequency::Change),
            _ => None,
        }
    }

    fn wants(self, changed: bool) -> bool {
        match self {
            Frequency::Always => true,
            Frequency::Never => false,
            Frequency::Change => changed,
        }
    }
}

/// What a build event is, for deciding who hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Started,
    Passed,
    Failed,
    Errored,
    Canceled,
}

/// One configuration of a notification channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub enabled: bool,
    /// Addresses, IRC channels, URLs or JIDs. Empty email recipients mean
    /// Travis's default: the commit's committer and author.
    pub recipients: Vec<String>,
    /// XMPP: multi-user chat rooms.
    #[serde(default)]
    pub rooms: Vec<String>,
    pub on_success: Frequency,
    pub on_failure: Frequency,
    pub on_start: Frequency,
    #[serde(default = "always")]
    pub on_cancel: Frequency,
    #[serde(default = "always")]
    pub on_error: Frequency,
    /// Chat lines with `%{…}` placeholders; empty: the channel's default.
    #[serde(default)]
    pub template: Vec<String>,
    /// IRC: NOTICE instead of PRIVMSG.
    #[serde(default)]
    pub use_notice: bool,
    /// IRC: send without joining (the channel must not be `+n`).
    #[serde(default)]
    pub skip_join: bool,
    #[serde(default)]
    pub channel_key: Option<String>,
    /// IRC: server password.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub nickserv_password: Option<String>,
    #[serde(default)]
    pub nick: Option<String>,
    /// Webhooks (kha's key): `kha` (JSON, the default) or `travis` (Travis's
    /// `payload` form).
    #[serde(default)]
    pub format: Option<String>,
    /// The channel as the file wrote it (what a plugin is given).
    #[serde(default = "null")]
    pub config: Value,
    /// `if:`: applied when the build is created
    /// ([`Notifications::filtered`]), so never stored.
    #[serde(skip)]
    pub condition: Option<Condition>,
}

fn always() -> Frequency {
    Frequency::Always
}

fn null() -> Value {
    Value::Null
}

impl Channel {
    /// A channel with Travis's defaults: `on_success` as given, every
    /// failure always, start never.
    pub fn new(on_success: Frequency) -> Channel {
        Channel {
            enabled: true,
            recipients: Vec::new(),
            rooms: Vec::new(),
            on_success,
            on_failure: Frequency::Always,
            on_start: Frequency::Never,
            on_cancel: Frequency::Always,
            on_error: Frequency::Always,
            template: Vec::new(),
            use_notice: false,
            skip_join: false,
            channel_key: None,
            password: None,
            nickserv_password: None,
            nick: None,
            format: None,
            config: Value::Null,
            condition: None,
        }
    }

    /// Whether to notify about `outcome`, given the state of the previous
    /// finished build on the branch (`Some(true)`: it passed; None: there
    /// was none, which counts as a change). Travis: a success is a change
    /// when the previous did not pass; a failure, error or cancel when the
    /// previous passed.
    pub fn wants(&self, outcome: Outcome, previous_passed: Option<bool>) -> bool {
        if !self.enabled {
            return false;
        }
        let passed = outcome == Outcome::Passed;
        let changed = previous_passed != Some(passed);
        match outcome {
            Outcome::Started => self.on_start == Frequency::Always,
            Outcome::Passed => self.on_success.wants(changed),
            Outcome::Failed => self.on_failure.wants(changed),
            Outcome::Errored => self.on_error.wants(changed),
            Outcome::Canceled => self.on_cancel.wants(changed),
        }
    }
}

/// The channels of a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    pub email: Vec<Channel>,
    pub irc: Vec<Channel>,
    pub webhooks: Vec<Channel>,
    /// kha's own XMPP channel (not a Travis key).
    pub jabber: Vec<Channel>,
    /// Any other channel: the plugin `kha-notify-<name>`.
    #[serde(default)]
    pub plugins: Vec<(String, Channel)>,
    /// `notifications.if`: applied when the build is created.
    #[serde(skip)]
    pub condition: Option<Condition>,
}

impl Default for Notifications {
    fn default() -> Notifications {
        Notifications {
            email: vec![Channel::new(Frequency::Change)],
            irc: vec![],
            webhooks: vec![],
            jabber: vec![],
            plugins: vec![],
            condition: None,
        }
    }
}

/// Which channel a key names, and its list key.
fn channel_kind(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        "email" | "emails" => ("email", "recipients"),
        "irc" => ("irc", "channels"),
        "webhooks" | "webhook" => ("webhooks", "urls"),
        "jabber" | "xmpp" => ("jabber", "recipients"),
        _ => return None,
    })
}

const FREQUENCY_KEYS: [&str; 5] = [
    "on_success",
    "on_failure",
    "on_start",
    "on_cancel",
    "on_error",
];

impl Notifications {
    pub(crate) fn read(d: &mut Diagnostics, e: &Entry) -> Notifications {
        let mut n = Notifications::default();
        let Some(entries) = e.value.entries() else {
            if !e.value.is_null() {
                d.warn(e.value.pos, "`notifications` must be a mapping; ignored");
            }
            return n;
        };
        // Root-level frequencies and switches apply to every channel.
        let mut inherit: [Option<Frequency>; 5] = [None; 5];
        let mut all_off = false;
        for x in entries {
            match x.key.as_str() {
                k if FREQUENCY_KEYS.contains(&k) => {
                    let i = FREQUENCY_KEYS.iter().position(|f| *f == k).unwrap_or(0);
                    inherit[i] = frequency(d, x);
                }
                "disabled" => all_off = x.value.as_bool().unwrap_or(false),
                "if" => n.condition = x.value.scalar().map(|t| Condition::new(t, x.value.pos)),
                "enabled" => all_off = !x.value.as_bool().unwrap_or(true),
                _ => {}
            }
        }
        let base = |on_success: Frequency| {
            let mut c = Channel::new(on_success);
            let slots = [
                &mut c.on_success,
                &mut c.on_failure,
                &mut c.on_start,
                &mut c.on_cancel,
                &mut c.on_error,
            ];
            for (slot, f) in slots.into_iter().zip(inherit) {
                if let Some(f) = f {
                    *slot = f;
                }
            }
            c
        };
        n.email = vec![base(Frequency::Change)];
        for x in entries {
            let key = x.key.as_str();
            if FREQUENCY_KEYS.contains(&key) || matches!(key, "disabled" | "enabled" | "if") {
                continue;
            }
            match channel_kind(key) {
                Some(("email", list)) => n.email = channels(d, x, &base(Frequency::Change), list),
                Some(("irc", list)) => n.irc = channels(d, x, &base(Frequency::Always), list),
                Some(("webhooks", list)) => {
                    n.webhooks = channels(d, x, &base(Frequency::Always), list)
                }
                Some((_, list)) => n.jabber = channels(d, x, &base(Frequency::Always), list),
                None => {
                    if !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        d.warn(
                            x.key_pos,
                            format!("`notifications.{key}` cannot name a notifier plugin; ignored"),
                        );
                        continue;
                    }
                    for c in channels(d, x, &base(Frequency::Always), "recipients") {
                        n.plugins.push((key.to_string(), c));
                    }
                }
            }
        }
        if all_off {
            for c in n.all_mut() {
                c.enabled = false;
            }
        }
        n
    }

    /// The channels whose `if:` holds for `data`, as travis-yml's
    /// `Configs::Filter::Notifications` leaves them: a channel whose
    /// condition is false is removed, and so is the whole section when its
    /// own `if:` is false. What is removed falls back to Travis's defaults,
    /// as on Travis, where a missing `notifications` (or `email`) key means
    /// the default email to the committer and author.
    pub fn filtered(&self, data: &Data, warnings: &mut Vec<Diagnostic>) -> Notifications {
        let mut holds = |c: &Option<Condition>| {
            let Some(c) = c else {
                return true;
            };
            let (ok, w) = c.check(data);
            warnings.extend(w);
            ok
        };
        if !holds(&self.condition) {
            return Notifications::default();
        }
        let mut keep = |list: &[Channel]| -> Vec<Channel> {
            list.iter()
                .filter(|c| holds(&c.condition))
                .cloned()
                .collect()
        };
        let mut n = Notifications {
            email: keep(&self.email),
            irc: keep(&self.irc),
            webhooks: keep(&self.webhooks),
            jabber: keep(&self.jabber),
            plugins: Vec::new(),
            condition: None,
        };
        if n.email.is_empty() && !self.email.is_empty() {
            n.email = Notifications::default().email;
        }
        n.plugins = self
            .plugins
            .iter()
            .filter(|(_, c)| holds(&c.condition))
            .cloned()
            .collect();
        n
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Channel> {
        self.email
            .iter_mut()
            .chain(self.irc.iter_mut())
            .chain(self.webhooks.iter_mut())
            .chain(self.jabber.iter_mut())
            .chain(self.plugins.iter_mut().map(|(_, c)| c))
    }

    /// `notifications:` with one channel's configuration replaced: how a
    /// project's settings on the control node override the file's. `yaml`
    /// is that channel's value as `.travis.yml` would write it (`false`,
    /// a list, a mapping).
    pub fn with_override(mut self, key: &str, yaml: &str) -> Result<Notifications, String> {
        let text = format!("notifications:\n  {key}: {}\n", yaml.trim());
        let cfg = super::parse(&text).map_err(|e| e.to_string())?;
        let mut o = cfg.notifications;
        match channel_kind(key) {
            Some(("email", _)) => self.email = o.email,
            Some(("irc", _)) => self.irc = o.irc,
            Some(("webhooks", _)) => self.webhooks = o.webhooks,
            Some(_) => self.jabber = o.jabber,
            None => {
                self.plugins.retain(|(k, _)| k != key);
                self.plugins.append(&mut o.plugins);
            }
        }
        Ok(self)
    }
}

/// Checks a project-level override (`kha project notify NAME CHANNEL
/// VALUE`): the value must read as that channel without warnings.
pub fn check_override(key: &str, yaml: &str) -> Result<(), String> {
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("`{key}` is not a channel name"));
    }
    let text = format!("notifications:\n  {key}: {}\n", yaml.trim());
    let cfg = super::parse(&text).map_err(|e| e.to_string())?;
    match cfg.warnings.first() {
        Some(w) => Err(w.to_string()),
        None => Ok(()),
    }
}

fn frequency(d: &mut Diagnostics, x: &Entry) -> Option<Frequency> {
    let f = Frequency::parse(&x.value);
    if f.is_none() {
        d.warn(
            x.value.pos,
            format!("`{}` must be always, never or change; ignored", x.key),
        );
    }
    f
}

/// An encrypted value (`{secure: "…"}`) in its stored form
/// ([`secure::env_line`]); None if `node` is not one.
fn encrypted(node: &Node) -> Option<String> {
    let Kind::Map(entries) = &node.kind else {
        return None;
    };
    match entries.as_slice() {
        [e] if e.key == "secure" => e.value.scalar().map(secure::env_line),
        _ => None,
    }
}

/// A setting's text, plain or encrypted.
fn text_or_secure(node: &Node) -> Option<String> {
    encrypted(node).or_else(|| node.scalar().map(|s| s.trim().to_string()))
}

/// Recipients from a string (comma-separated where `split`) or a list; an
/// encrypted one is kept encrypted.
fn recipients(d: &mut Diagnostics, node: &Node, split: bool, out: &mut Vec<String>) {
    match &node.kind {
        _ if node.is_null() => {}
        Kind::Scalar { text, .. } if split => out.extend(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        ),
        Kind::Scalar { text, .. } => out.push(text.trim().to_string()),
        Kind::Seq(items) => {
            for it in items {
                recipients(d, it, split, out);
            }
        }
        Kind::Map(_) => match encrypted(node) {
            Some(line) => out.push(line),
            None => d.warn(
                node.pos,
                "a recipient must be a string or {secure: \"…\"}; left out",
            ),
        },
    }
}

fn lines(node: &Node) -> Vec<String> {
    match &node.kind {
        Kind::Scalar { text, .. } => vec![text.clone()],
        Kind::Seq(items) => items
            .iter()
            .filter_map(|i| i.scalar().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// A channel given as `false`/`true`, a recipient, a list of them, a
/// mapping with `list_key` (recipients, channels, urls) and settings, or a
/// list of such mappings (several configurations).
fn channels(d: &mut Diagnostics, x: &Entry, base: &Channel, list_key: &str) -> Vec<Channel> {
    if let Some(items) = x.value.items() {
        if !items.is_empty() && items.iter().all(|i| i.entries().is_some()) {
            return items
                .iter()
                .map(|i| channel(d, &x.key, i, base.clone(), list_key))
                .collect();
        }
    }
    vec![channel(d, &x.key, &x.value, base.clone(), list_key)]
}

fn channel(d: &mut Diagnostics, key: &str, v: &Node, mut ch: Channel, list_key: &str) -> Channel {
    ch.config = v.to_value();
    let split = matches!(list_key, "recipients" | "urls") && key != "jabber" && key != "xmpp";
    if let Some(b) = v.as_bool() {
        ch.enabled = b;
        return ch;
    }
    let Kind::Map(entries) = &v.kind else {
        recipients(d, v, split, &mut ch.recipients);
        return ch;
    };
    let is = |k: &str| channel_kind(key).map(|(kind, _)| kind) == Some(k);
    let plugin = channel_kind(key).is_none();
    for y in entries {
        let slot = match y.key.as_str() {
            "on_success" => Some(&mut ch.on_success),
            "on_failure" => Some(&mut ch.on_failure),
            "on_start" => Some(&mut ch.on_start),
            "on_cancel" => Some(&mut ch.on_cancel),
            "on_error" => Some(&mut ch.on_error),
            _ => None,
        };
        if let Some(slot) = slot {
            if let Some(f) = frequency(d, y) {
                *slot = f;
            }
            continue;
        }
        let text = || y.value.scalar().map(|s| s.trim().to_string());
        let secret = || text_or_secure(&y.value);
        match y.key.as_str() {
            k if k == list_key => recipients(d, &y.value, split, &mut ch.recipients),
            "rooms" if is("jabber") => recipients(d, &y.value, false, &mut ch.rooms),
            "template" if !is("email") => ch.template = lines(&y.value),
            "use_notice" if is("irc") => ch.use_notice = y.value.as_bool().unwrap_or(false),
            "skip_join" if is("irc") => ch.skip_join = y.value.as_bool().unwrap_or(false),
            "channel_key" if is("irc") => ch.channel_key = secret(),
            "password" if is("irc") => ch.password = secret(),
            "nickserv_password" if is("irc") => ch.nickserv_password = secret(),
            "nick" if is("irc") => ch.nick = text(),
            "format" if is("webhooks") => match text().as_deref() {
                Some("kha") | Some("travis") => ch.format = text(),
                _ => d.warn(
                    y.value.pos,
                    "`format` must be kha (JSON) or travis (Travis's payload form); kha's JSON is sent",
                ),
            },
            "if" => ch.condition = y.value.scalar().map(|t| Condition::new(t, y.value.pos)),
            "enabled" => ch.enabled = y.value.as_bool().unwrap_or(true),
            "disabled" => ch.enabled = !y.value.as_bool().unwrap_or(false),
            // The channel itself encrypted (`webhooks: {secure: "…"}`):
            // its plaintext is a recipient (a URL, `host#channel`, an
            // address). A plugin decrypts its own config's values.
            "secure" if !plugin => match y.value.scalar() {
                Some(c) => ch.recipients.push(secure::env_line(c)),
                None => d.warn(y.value.pos, "`secure` must be a string; ignored"),
            },
            // A plugin reads its own settings from `config`.
            _ if plugin => {}
            other => {
                d.warn(
                    y.key_pos,
                    format!("`notifications.{key}.{other}` is not supported yet; ignored"),
                );
                d.keep(format!("notifications.{key}.{other}"), y.value.to_value());
            }
        }
    }
    ch
}

#[cfg(test)]
mod tests;
