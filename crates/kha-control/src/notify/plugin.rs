//! Notifier plugins: `kha-notify-NAME` executables on the plugin path
//! (`[notify] plugin_path`), so a new kind of notification needs no Rust.
//! `notifications: NAME: …` in `.travis.yml` routes to `kha-notify-NAME`.
//!
//! The protocol (documented for plugin authors in `docs/plugins.md`):
//! stdin is one JSON object, [`PluginInput`] (`version` 1: `key`, `notice`,
//! `config`, `message`); the environment has the `KHA_*` variables of
//! hooks ([`super::hooks::notice_env`]) plus `KHA_PLUGIN` and
//! `KHA_DELIVERY_KEY`. The exit status answers: 0 sent (the first line of
//! stdout is the answer shown to people), 75 (`EX_TEMPFAIL`) try again
//! later, anything else failed for good (stderr says why). A plugin still
//! running at `hook_timeout_secs` is killed with its process group, and
//! the delivery is retried.

use super::exec::{self, End, Exec};
use super::{Delivery, Failure, Message, Notice, Sent, Target};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// The version of [`PluginInput`]'s shape.
pub const PLUGIN_PROTOCOL_VERSION: u32 = 1;

/// Exit status that asks for another attempt later (sysexits' EX_TEMPFAIL).
pub const EXIT_RETRY: i32 = 75;

/// The most of a plugin's stderr an answer carries.
const ANSWER_BYTES: usize = 4096;

/// What a plugin reads on stdin.
#[derive(Debug, Serialize)]
pub struct PluginInput<'a> {
    pub version: u32,
    /// The delivery's idempotency key: the same for every attempt of one
    /// notification, so a plugin can tell a retry from a new one.
    pub key: &'a str,
    pub notice: &'a Notice,
    /// The channel's value in `.travis.yml` (`notifications: NAME: <this>`).
    pub config: &'a serde_json::Value,
    /// The rendered text (subject, body, chat lines).
    pub message: &'a Message,
}

pub struct Plugins {
    pub path: Vec<PathBuf>,
    pub timeout: Duration,
}

impl Plugins {
    pub fn new(cfg: &super::NotifyConfig) -> Plugins {
        Plugins {
            path: cfg.plugin_path.clone(),
            timeout: Duration::try_from_secs_f64(cfg.hook_timeout_secs)
                .unwrap_or(Duration::from_secs(60)),
        }
    }

    /// Whether `kha-notify-NAME` exists on the plugin path.
    pub fn exists(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The first `kha-notify-NAME` on the plugin path.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        if !super::hooks::valid_name(name) {
            return None;
        }
        self.path
            .iter()
            .map(|d| d.join(format!("kha-notify-{name}")))
            .find(|p| p.is_file())
    }

    pub async fn send(&self, d: &Delivery) -> Result<Sent, Failure> {
        let Target::Plugin { name, config } = &d.target else {
            return Err(Failure::Permanent("not a plugin delivery".into()));
        };
        let Some(program) = self.find(name) else {
            let dirs: Vec<String> = self.path.iter().map(|p| p.display().to_string()).collect();
            return Err(Failure::Permanent(format!(
                "no kha-notify-{name} on the plugin path ({})",
                dirs.join(":")
            )));
        };
        let input = PluginInput {
            version: PLUGIN_PROTOCOL_VERSION,
            key: &d.key,
            notice: &d.notice,
            config,
            message: &d.message,
        };
        let mut env = super::hooks::notice_env(&d.notice);
        env.push(("KHA_PLUGIN".into(), name.clone()));
        env.push(("KHA_DELIVERY_KEY".into(), d.key.clone()));
        let out = Exec {
            program,
            stdin: serde_json::to_vec(&input).unwrap_or_default(),
            env,
            timeout: self.timeout,
            merge: false,
            keep: exec::KEEP_BYTES,
        }
        .run()
        .await
        .map_err(|e| Failure::Permanent(e.to_string()))?;
        let why = |head: String| {
            let err = out.stderr.tail(ANSWER_BYTES);
            if err.is_empty() {
                head
            } else {
                format!("{head}: {err}")
            }
        };
        match out.end {
            End::Exited(0) => {
                let first = out.stdout.first_line();
                Ok(if first.is_empty() {
                    "exit 0".into()
                } else {
                    first
                })
            }
            End::Exited(EXIT_RETRY) => Err(Failure::Retry(why(format!("exit {EXIT_RETRY}")))),
            End::Exited(n) => Err(Failure::Permanent(why(format!("exit {n}")))),
            End::Signaled(s) => Err(Failure::Permanent(why(format!("killed by signal {s}")))),
            // Most likely a server that did not answer: like any other
            // channel's timeout, worth another attempt.
            End::TimedOut => Err(Failure::Retry(why(format!(
                "timed out after {}s; killed",
                self.timeout.as_secs_f64()
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{BuildFacts, DeliveryState};
    use std::os::unix::fs::PermissionsExt;

    fn plugin(dir: &std::path::Path, name: &str, body: &str) {
        let p = dir.join(format!("kha-notify-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn delivery(name: &str) -> Delivery {
        Delivery {
            id: 1,
            key: "kha-12-1".into(),
            build_id: 3,
            project: "demo".into(),
            target: Target::Plugin {
                name: name.into(),
                config: serde_json::json!({"anything": 1}),
            },
            notice: Notice {
                version: 1,
                event: "build_finished".into(),
                build: BuildFacts {
                    id: 3,
                    state: "passed".into(),
                    ..Default::default()
                },
                job: None,
            },
            message: Message {
                subject: "s".into(),
                body: "b".into(),
                lines: vec!["one".into(), "two".into()],
            },
            state: DeliveryState::Pending,
            attempts: 0,
            created_ms: 0,
            next_ms: 0,
            updated_ms: 0,
            answer: String::new(),
        }
    }

    fn plugins(dirs: Vec<PathBuf>) -> Plugins {
        Plugins::new(&crate::notify::NotifyConfig {
            plugin_path: dirs,
            hook_timeout_secs: 0.5,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn the_plugin_reads_versioned_json_and_answers_by_exit_status() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let p = plugins(vec![a.path().into(), b.path().into()]);
        let seen = b.path().join("seen.json");
        plugin(
            b.path(),
            "myplug",
            &format!(
                "cat > {}; echo \"posted $KHA_PLUGIN $KHA_DELIVERY_KEY $KHA_STATE\"; echo more",
                seen.display()
            ),
        );
        assert_eq!(
            p.send(&delivery("myplug")).await,
            Ok("posted myplug kha-12-1 passed".into())
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["key"], "kha-12-1");
        assert_eq!(v["config"], serde_json::json!({"anything": 1}));
        assert_eq!(v["notice"]["build"]["state"], "passed");
        assert_eq!(v["message"]["lines"], serde_json::json!(["one", "two"]));

        // The first on the path wins.
        plugin(a.path(), "myplug", "echo busy >&2; exit 75");
        assert_eq!(
            p.send(&delivery("myplug")).await,
            Err(Failure::Retry("exit 75: busy".into()))
        );
        plugin(a.path(), "myplug", "echo 'no such room' >&2; exit 1");
        assert_eq!(
            p.send(&delivery("myplug")).await,
            Err(Failure::Permanent("exit 1: no such room".into()))
        );
        plugin(a.path(), "myplug", "sleep 30");
        assert_eq!(
            p.send(&delivery("myplug")).await,
            Err(Failure::Retry("timed out after 0.5s; killed".into()))
        );
        assert_eq!(
            p.send(&delivery("other")).await,
            Err(Failure::Permanent(format!(
                "no kha-notify-other on the plugin path ({}:{})",
                a.path().display(),
                b.path().display()
            )))
        );
        assert!(!p.exists("../myplug") && p.exists("myplug"));
    }
}
