//! Control-node hooks: executables in the hooks directory (`[notify]
//! hooks_dir`), run on the control node's host.
//!
//! - `pre-build` runs before a build is created, given the build about to
//!   be created; exit 0 lets it be created, any other end refuses it: the
//!   build is created errored, with the hook's output as the reason.
//! - `post-build` and `on-state-change` are deliveries of the outbox, like
//!   a mail: exit 0 is sent (the output is the answer), any other end is a
//!   permanent failure (hooks are not retried: they may have done half of
//!   their work).
//!
//! Each is given the [`Notice`] as JSON on stdin and as `KHA_*` variables
//! ([`notice_env`]), runs in its own process group with the hooks directory
//! as its working directory, and is killed, group and all, after
//! `hook_timeout_secs`. Output (stdout and stderr together) is kept up to
//! 64 KiB.

use super::exec::{self, End, Exec};
use super::{Delivery, Failure, Notice, Sent};
use std::path::PathBuf;
use std::time::Duration;

/// A refusal's message is cut to this (its end is kept).
pub const REFUSAL_BYTES: usize = 4096;

pub struct Hooks {
    pub dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl Hooks {
    pub fn new(cfg: &super::NotifyConfig) -> Hooks {
        Hooks {
            dir: cfg.hooks_dir.clone(),
            timeout: Duration::try_from_secs_f64(cfg.hook_timeout_secs)
                .unwrap_or(Duration::from_secs(60)),
        }
    }

    /// The hook's executable, if the hooks directory has it.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        if !valid_name(name) {
            return None;
        }
        let p = self.dir.as_ref()?.join(name);
        p.is_file().then_some(p)
    }

    fn exec(&self, program: PathBuf, notice: &Notice, env: Vec<(String, String)>) -> Exec {
        Exec {
            program,
            stdin: serde_json::to_vec(notice).unwrap_or_default(),
            env,
            timeout: self.timeout,
            merge: true,
            keep: exec::KEEP_BYTES,
        }
    }

    /// Asks the `pre-build` hook whether the build in `notice` may be
    /// created: `Err` holds the refusal's message (the hook's output,
    /// trimmed, at most [`REFUSAL_BYTES`]). No hook: yes. A hook that
    /// cannot be started refuses: a broken gate stays shut.
    pub async fn pre_build(&self, notice: &Notice) -> Result<(), String> {
        let Some(program) = self.find("pre-build") else {
            return Ok(());
        };
        let mut env = notice_env(notice);
        env.push(("KHA_HOOK".into(), "pre-build".into()));
        let out = match self.exec(program, notice, env).run().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "the pre-build hook cannot run; refusing the build");
                return Err(format!("the pre-build hook could not be run: {}", e.source));
            }
        };
        let said = out.stdout.tail(REFUSAL_BYTES);
        let why = |end: String| if said.is_empty() { end } else { said.clone() };
        match out.end {
            End::Exited(0) => Ok(()),
            End::Exited(n) => Err(why(format!("exit {n}"))),
            End::Signaled(s) => Err(why(format!("killed by signal {s}"))),
            End::TimedOut => Err(format!(
                "pre-build hook timed out after {}s",
                self.timeout.as_secs_f64()
            )),
        }
    }

    /// Runs the delivery's hook (`post-build`, `on-state-change`).
    pub async fn send(&self, d: &Delivery) -> Result<Sent, Failure> {
        let super::Target::Hook { name } = &d.target else {
            return Err(Failure::Permanent("not a hook delivery".into()));
        };
        let Some(program) = self.find(name) else {
            return Err(Failure::Permanent(format!(
                "no hook {name:?} in {}",
                self.dir
                    .as_ref()
                    .map_or("(no hooks_dir is set)".into(), |d| d.display().to_string())
            )));
        };
        let mut env = notice_env(&d.notice);
        env.push(("KHA_HOOK".into(), name.clone()));
        env.push(("KHA_DELIVERY_KEY".into(), d.key.clone()));
        let out = self
            .exec(program, &d.notice, env)
            .run()
            .await
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        answer(out, self.timeout)
    }
}

/// A hook's end as the delivery's answer.
fn answer(out: exec::Output, timeout: Duration) -> Result<Sent, Failure> {
    let said = out.stdout.tail(exec::KEEP_BYTES);
    let with = |head: String| {
        if said.is_empty() {
            head
        } else {
            format!("{head}: {said}")
        }
    };
    match out.end {
        End::Exited(0) if said.is_empty() => Ok("exit 0".into()),
        End::Exited(0) => Ok(said),
        End::Exited(n) => Err(Failure::Permanent(with(format!("exit {n}")))),
        End::Signaled(s) => Err(Failure::Permanent(with(format!("killed by signal {s}")))),
        End::TimedOut => Err(Failure::Permanent(with(format!(
            "timed out after {}s; killed",
            timeout.as_secs_f64()
        )))),
    }
}

/// Hook and plugin names are plain file names.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The notice as environment variables, for hooks and plugins that would
/// rather not read JSON. Every one is set, empty when unknown.
///
/// | variable | value |
/// |---|---|
/// | `KHA_EVENT` | `build_requested` (pre-build), `build_started`, `build_finished`, … |
/// | `KHA_NOTICE_VERSION` | the JSON's `version` (1) |
/// | `KHA_PROJECT` | the project's name |
/// | `KHA_REPOSITORY_SLUG` | `owner/name` |
/// | `KHA_BUILD_ID`, `KHA_BUILD_NUMBER` | the build's id and number |
/// | `KHA_BUILD_URL` | its page |
/// | `KHA_BRANCH`, `KHA_TAG` | the branch; the tag, for a tag build |
/// | `KHA_COMMIT`, `KHA_COMMIT_MESSAGE` | the commit and its first line |
/// | `KHA_AUTHOR`, `KHA_AUTHOR_EMAIL` | the commit's author |
/// | `KHA_EVENT_TYPE` | push, pull_request, api, cron |
/// | `KHA_PULL_REQUEST` | its number, for a pull-request build |
/// | `KHA_STATE`, `KHA_PREVIOUS_STATE` | the build's state; the branch's previous finished one |
/// | `KHA_STATUS_MESSAGE` | Passed, Fixed, Broken, Failed, Still Failing, Canceled, Errored, Pending |
/// | `KHA_ERROR` | why the build could not be set up |
/// | `KHA_JOB_ID`, `KHA_JOB_NUMBER`, `KHA_JOB_STATE` | the job, for job events |
///
/// Hooks also get `KHA_HOOK` (the hook's name) and, for deliveries,
/// `KHA_DELIVERY_KEY`; plugins get `KHA_PLUGIN` and `KHA_DELIVERY_KEY`.
pub fn notice_env(n: &Notice) -> Vec<(String, String)> {
    let b = &n.build;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut env = vec![
        ("KHA_EVENT", n.event.clone()),
        ("KHA_NOTICE_VERSION", n.version.to_string()),
        ("KHA_PROJECT", b.project.clone()),
        ("KHA_REPOSITORY_SLUG", b.repository_slug.clone()),
        ("KHA_BUILD_ID", b.id.to_string()),
        ("KHA_BUILD_NUMBER", b.number.clone()),
        ("KHA_BUILD_URL", b.build_url.clone()),
        ("KHA_BRANCH", b.branch.clone()),
        ("KHA_TAG", opt(&b.tag)),
        ("KHA_COMMIT", b.commit.clone()),
        ("KHA_COMMIT_MESSAGE", b.message.clone()),
        ("KHA_AUTHOR", b.author_name.clone()),
        ("KHA_AUTHOR_EMAIL", b.author_email.clone()),
        ("KHA_EVENT_TYPE", b.event_type.clone()),
        (
            "KHA_PULL_REQUEST",
            b.pull_request.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("KHA_STATE", b.state.clone()),
        ("KHA_PREVIOUS_STATE", opt(&b.previous_state)),
        ("KHA_STATUS_MESSAGE", b.status_message.clone()),
        ("KHA_ERROR", b.error.clone()),
    ];
    let job = n.job.as_ref();
    env.push((
        "KHA_JOB_ID",
        job.map(|j| j.id.to_string()).unwrap_or_default(),
    ));
    env.push((
        "KHA_JOB_NUMBER",
        job.map(|j| j.number.clone()).unwrap_or_default(),
    ));
    env.push((
        "KHA_JOB_STATE",
        job.map(|j| j.state.clone()).unwrap_or_default(),
    ));
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{BuildFacts, DeliveryState, Message, Target};
    use std::os::unix::fs::PermissionsExt;

    fn hooks(dir: &std::path::Path, timeout: f64) -> Hooks {
        Hooks::new(&crate::notify::NotifyConfig {
            hooks_dir: Some(dir.to_path_buf()),
            hook_timeout_secs: timeout,
            ..Default::default()
        })
    }

    fn hook(dir: &std::path::Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn notice() -> Notice {
        Notice {
            version: 1,
            event: "build_requested".into(),
            build: BuildFacts {
                id: 7,
                project: "demo".into(),
                branch: "main".into(),
                commit: "abc123".into(),
                state: "created".into(),
                ..Default::default()
            },
            job: None,
        }
    }

    fn delivery(name: &str) -> Delivery {
        let mut n = notice();
        n.event = "build_finished".into();
        n.build.state = "failed".into();
        Delivery {
            id: 1,
            key: "kha-9-0".into(),
            build_id: 7,
            project: "demo".into(),
            target: Target::Hook { name: name.into() },
            notice: n,
            message: Message::default(),
            state: DeliveryState::Pending,
            attempts: 0,
            created_ms: 0,
            next_ms: 0,
            updated_ms: 0,
            answer: String::new(),
        }
    }

    #[tokio::test]
    async fn pre_build_lets_through_or_refuses_with_the_output() {
        let d = tempfile::tempdir().unwrap();
        let h = hooks(d.path(), 5.0);
        assert_eq!(h.pre_build(&notice()).await, Ok(()), "no hook: yes");
        hook(
            d.path(),
            "pre-build",
            "read -r json; [ \"$KHA_BRANCH\" = main ] && exit 0\necho \"  no builds of $KHA_BRANCH ($KHA_HOOK, $KHA_BUILD_ID)\"; echo \"$json\" | grep -q '\"build_requested\"' >&2 && echo json-ok >&2; exit 1",
        );
        assert_eq!(h.pre_build(&notice()).await, Ok(()));
        let mut n = notice();
        n.build.branch = "wip".into();
        assert_eq!(
            h.pre_build(&n).await,
            Err("no builds of wip (pre-build, 7)\njson-ok".into())
        );
        hook(d.path(), "pre-build", "exit 4");
        assert_eq!(h.pre_build(&n).await, Err("exit 4".into()));
        hook(d.path(), "pre-build", "yes refused | head -c 10000; exit 1");
        let e = h.pre_build(&n).await.unwrap_err();
        assert!(e.len() <= REFUSAL_BYTES && e.starts_with('…') && e.ends_with("refused"));
        std::fs::set_permissions(
            d.path().join("pre-build"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = h.pre_build(&n).await.unwrap_err();
        assert!(
            e.starts_with("the pre-build hook could not be run: "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_hanging_pre_build_hook_is_a_refusal() {
        let d = tempfile::tempdir().unwrap();
        let h = hooks(d.path(), 0.3);
        hook(d.path(), "pre-build", "echo thinking; sleep 60");
        assert_eq!(
            h.pre_build(&notice()).await,
            Err("pre-build hook timed out after 0.3s".into())
        );
    }

    #[tokio::test]
    async fn delivery_answers() {
        let d = tempfile::tempdir().unwrap();
        let h = hooks(d.path(), 0.5);
        assert_eq!(
            h.send(&delivery("post-build")).await,
            Err(Failure::Permanent(format!(
                "no hook \"post-build\" in {}",
                d.path().display()
            )))
        );
        hook(
            d.path(),
            "post-build",
            "echo \"$KHA_EVENT $KHA_STATE $KHA_DELIVERY_KEY $KHA_HOOK\"; grep -c '\"state\":\"failed\"'",
        );
        assert_eq!(
            h.send(&delivery("post-build")).await,
            Ok("build_finished failed kha-9-0 post-build\n1".into())
        );
        hook(d.path(), "on-state-change", "echo bad >&2; exit 2");
        assert_eq!(
            h.send(&delivery("on-state-change")).await,
            Err(Failure::Permanent("exit 2: bad".into()))
        );
        hook(d.path(), "on-state-change", "true");
        assert_eq!(
            h.send(&delivery("on-state-change")).await,
            Ok("exit 0".into())
        );
        hook(d.path(), "post-build", "echo working; sleep 30");
        assert_eq!(
            h.send(&delivery("post-build")).await,
            Err(Failure::Permanent(
                "timed out after 0.5s; killed: working".into()
            ))
        );
        assert_eq!(h.find("../x"), None);
    }

    #[test]
    fn the_environment_names_everything() {
        let mut n = notice();
        n.build.tag = Some("v1".into());
        n.build.pull_request = Some(12);
        n.job = Some(crate::notify::JobFacts {
            id: 30,
            number: "7.2".into(),
            state: "passed".into(),
            ..Default::default()
        });
        let env: std::collections::HashMap<_, _> = notice_env(&n).into_iter().collect();
        for (k, v) in [
            ("KHA_EVENT", "build_requested"),
            ("KHA_BUILD_ID", "7"),
            ("KHA_TAG", "v1"),
            ("KHA_PULL_REQUEST", "12"),
            ("KHA_PREVIOUS_STATE", ""),
            ("KHA_JOB_ID", "30"),
            ("KHA_JOB_NUMBER", "7.2"),
            ("KHA_JOB_STATE", "passed"),
        ] {
            assert_eq!(env[k], v, "{k}");
        }
    }
}
