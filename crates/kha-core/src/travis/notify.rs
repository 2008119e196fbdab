//! `notifications:`: who hears about a build, and when.
//!
//! kha acts on `email`, `irc`, `webhooks` and its own `jabber` (XMPP); the
//! other Travis channels (slack, hipchat, …) are reported and kept. Rules
//! from the Travis docs (Configuring Build Notifications):
//! - email goes to the committer and the author unless recipients are
//!   given; it is sent on failure always and on success when the result
//!   changed;
//! - other channels notify on every build unless told otherwise;
//! - `on_success`/`on_failure` take `always`, `never` or `change`
//!   (travis-yml also accepts `true`, `false` and `changed`), and the ones
//!   given directly under `notifications` apply to every channel that does
//!   not set its own (travis-yml's `inherit` change);
//! - `email: false` (or `disabled: true`) turns a channel off.

use super::diag::Diagnostics;
use super::yaml::{Entry, Kind, Node};

/// When a channel is told about a finished build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One notification channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub enabled: bool,
    /// Addresses, IRC channels, URLs or JIDs. Empty email recipients mean
    /// Travis's default: the commit's committer and author.
    pub recipients: Vec<String>,
    pub on_success: Frequency,
    pub on_failure: Frequency,
    /// Webhooks only: also notify when the build starts.
    pub on_start: Frequency,
}

impl Channel {
    fn new(on_success: Frequency, on_failure: Frequency) -> Channel {
        Channel {
            enabled: true,
            recipients: Vec::new(),
            on_success,
            on_failure,
            on_start: Frequency::Never,
        }
    }

    /// Whether to notify about a finished build that `passed`, given the
    /// previous build's result on the same branch (None: no previous build,
    /// which counts as a change).
    pub fn wants(&self, passed: bool, previous_passed: Option<bool>) -> bool {
        if !self.enabled {
            return false;
        }
        let changed = previous_passed != Some(passed);
        if passed {
            self.on_success.wants(changed)
        } else {
            self.on_failure.wants(changed)
        }
    }
}

/// The channels of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifications {
    pub email: Channel,
    pub irc: Option<Channel>,
    pub webhooks: Option<Channel>,
    /// kha's own XMPP channel (not a Travis key).
    pub jabber: Option<Channel>,
}

impl Default for Notifications {
    fn default() -> Notifications {
        Notifications {
            email: Channel::new(Frequency::Change, Frequency::Always),
            irc: None,
            webhooks: None,
            jabber: None,
        }
    }
}

/// Channels Travis has and kha does not.
const OTHER_CHANNELS: &[&str] = &[
    "slack", "hipchat", "campfire", "flowdock", "pushover", "msteams", "webhook",
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
        let mut inherit_success = None;
        let mut inherit_failure = None;
        let mut all_off = false;
        for x in entries {
            match x.key.as_str() {
                "on_success" => inherit_success = frequency(d, x),
                "on_failure" => inherit_failure = frequency(d, x),
                "disabled" => all_off = x.value.as_bool().unwrap_or(false),
                "enabled" => all_off = !x.value.as_bool().unwrap_or(true),
                _ => {}
            }
        }
        let base = |s: Frequency, f: Frequency| {
            Channel::new(inherit_success.unwrap_or(s), inherit_failure.unwrap_or(f))
        };
        n.email = base(Frequency::Change, Frequency::Always);
        for x in entries {
            let key = x.key.as_str();
            match key {
                "on_success" | "on_failure" | "disabled" | "enabled" => {}
                "email" => {
                    n.email = channel(
                        d,
                        x,
                        base(Frequency::Change, Frequency::Always),
                        "recipients",
                    )
                }
                "irc" => {
                    n.irc = Some(channel(
                        d,
                        x,
                        base(Frequency::Always, Frequency::Always),
                        "channels",
                    ))
                }
                "webhooks" => {
                    n.webhooks = Some(channel(
                        d,
                        x,
                        base(Frequency::Always, Frequency::Always),
                        "urls",
                    ))
                }
                "jabber" => {
                    n.jabber = Some(channel(
                        d,
                        x,
                        base(Frequency::Always, Frequency::Always),
                        "recipients",
                    ))
                }
                _ if OTHER_CHANNELS.contains(&key) => {
                    d.warn(
                        x.key_pos,
                        format!("`notifications.{key}` is not supported by kha (it notifies by email, IRC, webhooks and Jabber); ignored"),
                    );
                    d.keep(format!("notifications.{key}"), x.value.to_value());
                }
                _ => {
                    d.warn(
                        x.key_pos,
                        format!("unknown key `notifications.{key}`; ignored"),
                    );
                    d.keep(format!("notifications.{key}"), x.value.to_value());
                }
            }
        }
        if all_off {
            n.email.enabled = false;
            for c in [n.irc.as_mut(), n.webhooks.as_mut(), n.jabber.as_mut()]
                .into_iter()
                .flatten()
            {
                c.enabled = false;
            }
        }
        n
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

/// Recipients from a string or a list; encrypted ones are reported.
fn recipients(d: &mut Diagnostics, node: &Node, out: &mut Vec<String>) {
    match &node.kind {
        _ if node.is_null() => {}
        Kind::Scalar { text, .. } => out.push(text.trim().to_string()),
        Kind::Seq(items) => {
            for it in items {
                recipients(d, it, out);
            }
        }
        Kind::Map(_) if node.get("secure").is_some() => d.warn(
            node.pos,
            "encrypted recipient (`secure:`): kha cannot decrypt Travis-encrypted values; it is left out",
        ),
        Kind::Map(_) => d.warn(
            node.pos,
            "a recipient must be a string; left out",
        ),
    }
}

/// A channel given as `false`/`true`, a recipient, a list of them, or a
/// mapping with `list_key` (recipients, channels, urls) and frequencies.
fn channel(d: &mut Diagnostics, x: &Entry, mut ch: Channel, list_key: &str) -> Channel {
    let v = &x.value;
    if let Some(b) = v.as_bool() {
        ch.enabled = b;
        return ch;
    }
    match &v.kind {
        Kind::Map(entries) => {
            for y in entries {
                match y.key.as_str() {
                    k if k == list_key => recipients(d, &y.value, &mut ch.recipients),
                    "on_success" => {
                        if let Some(f) = frequency(d, y) {
                            ch.on_success = f
                        }
                    }
                    "on_failure" => {
                        if let Some(f) = frequency(d, y) {
                            ch.on_failure = f
                        }
                    }
                    "on_start" if list_key == "urls" => {
                        if let Some(f) = frequency(d, y) {
                            ch.on_start = f
                        }
                    }
                    "enabled" => ch.enabled = y.value.as_bool().unwrap_or(true),
                    "disabled" => ch.enabled = !y.value.as_bool().unwrap_or(false),
                    "secure" => d.warn(
                        y.key_pos,
                        "encrypted setting (`secure:`): kha cannot decrypt Travis-encrypted values; ignored",
                    ),
                    other => {
                        d.warn(
                            y.key_pos,
                            format!("`notifications.{}.{other}` is not supported yet; ignored", x.key),
                        );
                        d.keep(
                            format!("notifications.{}.{other}", x.key),
                            y.value.to_value(),
                        );
                    }
                }
            }
        }
        _ => recipients(d, v, &mut ch.recipients),
    }
    ch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies() {
        let c = Channel::new(Frequency::Change, Frequency::Always);
        // (passed, previous, wanted)
        let table = [
            (true, None, true),
            (true, Some(true), false),
            (true, Some(false), true),
            (false, Some(false), true),
            (false, Some(true), true),
        ];
        for (passed, prev, want) in table {
            assert_eq!(c.wants(passed, prev), want, "{passed} {prev:?}");
        }
        let mut off = c.clone();
        off.enabled = false;
        assert!(!off.wants(false, None));
    }
}
