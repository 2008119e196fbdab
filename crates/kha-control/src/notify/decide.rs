//! Which deliveries a build event gives: Travis's `notifications:`
//! semantics, GitHub commit statuses and the control node's hooks. A pure
//! function of the event, the build as stored, the project's overrides and
//! what the server can send ([`Server`]), tested by the table below.
//!
//! Travis's rules, from travis-hub (`addons/handlers/*.rb`, `notify.rb`):
//! - email hears of finished, errored and canceled builds; IRC (and kha's
//!   XMPP, shaped like it) of finished and errored ones; webhooks and
//!   plugins also of started ones (`on_start`);
//! - pull-request builds send no email, IRC or XMPP;
//! - `change` compares with the build's `previous_state` (the last finished
//!   push or API build of the branch when this one was created);
//! - email goes to the commit's author and committer unless recipients are
//!   given.

use super::template;
use super::{BuildFacts, JobFacts, Message, Notice, Target, WebhookFormat, NOTICE_VERSION};
use crate::store::records::{Build, Job, Project};
use kha_core::event::EventKind;
use kha_core::travis::{Channel, Notifications, Outcome};
use kha_core::{BuildState, JobState};

/// What the control node can send with, as far as deciding cares.
pub struct Server<'a> {
    /// The web UI's base URL, for links.
    pub web_url: &'a str,
    /// An SMTP relay is configured (else email, which every build would
    /// otherwise give by default, is not decided at all; an XMPP channel
    /// without an account is decided and fails visibly).
    pub email: bool,
    /// GitHub statuses: (context, per job); None: not configured.
    pub github: Option<(&'a str, bool)>,
    /// Whether the hooks directory has this hook.
    pub has_hook: &'a dyn Fn(&str) -> bool,
}

/// One delivery to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub target: Target,
    pub message: Message,
    pub notice: Notice,
}

/// The notice's event name for a build event (None: not one notifiers
/// hear of).
fn notice_event(kind: EventKind, state: BuildState) -> Option<&'static str> {
    Some(match (kind, state) {
        (EventKind::BuildStarted, _) => "build_started",
        (EventKind::BuildFinished, BuildState::Canceled) => "build_canceled",
        (EventKind::BuildFinished, BuildState::Errored) => "build_errored",
        (EventKind::BuildFinished, _) => "build_finished",
        (EventKind::JobStarted, _) => "job_started",
        (EventKind::JobFinished, _) => "job_finished",
        (EventKind::BuildCreated, _) => "build_created",
        (EventKind::BuildRestarted, _) => "build_restarted",
        _ => return None,
    })
}

fn outcome(state: BuildState) -> Option<Outcome> {
    Some(match state {
        BuildState::Passed => Outcome::Passed,
        BuildState::Failed => Outcome::Failed,
        BuildState::Errored => Outcome::Errored,
        BuildState::Canceled => Outcome::Canceled,
        _ => return None,
    })
}

/// Travis's `type` for kha's trigger names.
pub fn event_type(b: &Build) -> &'static str {
    match b.event.as_str() {
        _ if b.pr_number > 0 => "pull_request",
        "pull_request" => "pull_request",
        "api" => "api",
        "cron" => "cron",
        _ => "push",
    }
}

/// Everything a template or payload names, from the stored records.
pub fn facts(web_url: &str, project: &Project, b: &Build, jobs: &[Job]) -> BuildFacts {
    let started_ms = jobs
        .iter()
        .map(|j| j.started_ms)
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(0);
    let state = b.state.to_string();
    let previous = b.previous_state.map(|s| s.to_string());
    let status = template::status_message(&state, previous.as_deref());
    let slug = if project.github_repo.is_empty() {
        project.name.clone()
    } else {
        project.github_repo.clone()
    };
    let github = !project.github_repo.is_empty();
    BuildFacts {
        id: b.id,
        number: b.id.to_string(),
        project: project.name.clone(),
        repository_slug: slug.clone(),
        repository_url: project.repo_url.clone(),
        branch: b.branch.clone(),
        tag: b.tag.then(|| b.branch.clone()),
        commit: b.commit.clone(),
        message: b.message.clone(),
        author_name: b.author.clone(),
        author_email: b.author_email.clone(),
        committer_name: b.committer.clone(),
        committer_email: b.committer_email.clone(),
        event_type: event_type(b).to_string(),
        pull_request: (b.pr_number > 0).then_some(b.pr_number),
        pull_request_url: if github && b.pr_number > 0 {
            format!("https://github.com/{slug}/pull/{}", b.pr_number)
        } else {
            String::new()
        },
        compare_url: if github {
            format!("https://github.com/{slug}/commit/{}", b.commit)
        } else {
            String::new()
        },
        state,
        previous_state: previous,
        status_message: status.to_string(),
        result_text: template::result_text(status).to_string(),
        created_ms: b.created_ms,
        started_ms,
        finished_ms: b.finished_ms,
        duration_secs: (started_ms > 0 && b.finished_ms >= started_ms)
            .then(|| (b.finished_ms - started_ms) / 1000),
        build_url: format!("{web_url}/builds/{}", b.id),
        error: b.error.clone(),
        jobs: jobs.iter().map(|j| job_facts(web_url, j)).collect(),
    }
}

pub fn job_facts(web_url: &str, j: &Job) -> JobFacts {
    JobFacts {
        id: j.id,
        number: format!("{}.{}", j.build, j.number),
        state: j.state.to_string(),
        allow_failure: j.allow_failure,
        name: j.name.clone(),
        stage: j.stage.clone(),
        matrix: j.matrix.clone(),
        started_ms: j.started_ms,
        finished_ms: j.finished_ms,
        url: format!("{web_url}/jobs/{}", j.id),
    }
}

/// The build's channels: its `.travis.yml`'s (or Travis's defaults), with
/// the project's overrides applied. Overrides that no longer read are
/// skipped (they were checked when set).
pub fn channels(project: &Project, b: &Build) -> Notifications {
    let mut n = b.notifications.clone().unwrap_or_default();
    for (key, yaml) in &project.notify {
        if let Ok(o) = n.clone().with_override(key, yaml) {
            n = o;
        }
    }
    n
}

/// The deliveries `kind` (of build `b`, or of its job `job`) gives.
pub fn decide(
    server: &Server,
    kind: EventKind,
    project: &Project,
    b: &Build,
    jobs: &[Job],
    job: Option<&Job>,
) -> Vec<Decision> {
    let Some(event) = notice_event(kind, b.state) else {
        return vec![];
    };
    let facts = facts(server.web_url, project, b, jobs);
    let notice = Notice {
        version: NOTICE_VERSION,
        event: event.to_string(),
        build: facts,
        job: job.map(|j| job_facts(server.web_url, j)),
    };
    let mut out = Vec::new();
    let mut add = |target: Target, message: Message| {
        out.push(Decision {
            target,
            message,
            notice: notice.clone(),
        })
    };

    // Hooks hear of every build state change; post-build of the end.
    let build_event = matches!(
        kind,
        EventKind::BuildCreated
            | EventKind::BuildStarted
            | EventKind::BuildFinished
            | EventKind::BuildRestarted
    );
    if build_event && (server.has_hook)("on-state-change") {
        add(
            Target::Hook {
                name: "on-state-change".into(),
            },
            Message::default(),
        );
    }
    if kind == EventKind::BuildFinished && (server.has_hook)("post-build") {
        add(
            Target::Hook {
                name: "post-build".into(),
            },
            Message::default(),
        );
    }

    // GitHub commit statuses.
    if let Some((context, per_job)) = server.github {
        if !project.github_repo.is_empty() {
            let ctx = format!("{context}/{}", if b.pr_number > 0 { "pr" } else { "push" });
            let status = |state: &str, description: String, context: String, url: String| {
                Target::GithubStatus {
                    repo: project.github_repo.clone(),
                    sha: b.commit.clone(),
                    state: state.into(),
                    context,
                    description,
                    target_url: url,
                }
            };
            let build_url = notice.build.build_url.clone();
            match (kind, job) {
                (EventKind::BuildStarted, _) => add(
                    status(
                        "pending",
                        "The build is running.".into(),
                        ctx.clone(),
                        build_url,
                    ),
                    Message::default(),
                ),
                (EventKind::BuildFinished, _) => add(
                    status(
                        github_state(b.state),
                        notice.build.result_text.clone(),
                        ctx.clone(),
                        build_url,
                    ),
                    Message::default(),
                ),
                (EventKind::JobStarted, Some(j)) if per_job => add(
                    status(
                        "pending",
                        format!("Job {}.{} is running.", j.build, j.number),
                        format!("{ctx}/job/{}", j.number),
                        format!("{}/jobs/{}", server.web_url, j.id),
                    ),
                    Message::default(),
                ),
                (EventKind::JobFinished, Some(j)) if per_job => add(
                    status(
                        github_job_state(j.state),
                        format!("Job {}.{} {}.", j.build, j.number, j.state),
                        format!("{ctx}/job/{}", j.number),
                        format!("{}/jobs/{}", server.web_url, j.id),
                    ),
                    Message::default(),
                ),
                _ => {}
            }
        }
    }

    // `notifications:`, for build starts and ends only.
    let which = match kind {
        EventKind::BuildStarted => Outcome::Started,
        EventKind::BuildFinished => match outcome(b.state) {
            Some(o) => o,
            None => return out,
        },
        _ => return out,
    };
    let previous_passed = b.previous_state.map(|s| s == BuildState::Passed);
    let pr = b.pr_number > 0;
    let wants = |c: &Channel| c.wants(which, previous_passed);
    let n = channels(project, b);
    let chat = which != Outcome::Started && which != Outcome::Canceled && !pr;

    if which != Outcome::Started && !pr && server.email {
        for c in n.email.iter().filter(|c| wants(c)) {
            let to: Vec<String> = if c.recipients.is_empty() {
                let mut to = vec![];
                for a in [&b.author_email, &b.committer_email] {
                    if a.contains('@') && !to.contains(a) {
                        to.push(a.clone());
                    }
                }
                to
            } else {
                c.recipients.clone()
            };
            if to.is_empty() {
                continue;
            }
            add(
                Target::Email { to },
                Message {
                    subject: template::email_subject(&notice.build),
                    body: template::email_body(&notice.build),
                    lines: vec![],
                },
            );
        }
    }
    if chat {
        for c in n.irc.iter().filter(|c| wants(c)) {
            let lines = template::chat_lines(&c.template, &notice.build);
            for ch in &c.recipients {
                // Travis's `#chan,key` form.
                let (channel, key) = match ch.split_once(',') {
                    Some((c, k)) => (c.to_string(), Some(k.into())),
                    None => (ch.clone(), c.channel_key.clone().map(Into::into)),
                };
                add(
                    Target::Irc {
                        channel,
                        key,
                        use_notice: c.use_notice,
                        skip_join: c.skip_join,
                        password: c.password.clone().map(Into::into),
                        nickserv_password: c.nickserv_password.clone().map(Into::into),
                        nick: c.nick.clone(),
                    },
                    Message {
                        lines: lines.clone(),
                        ..Message::default()
                    },
                );
            }
        }
        for c in n.jabber.iter().filter(|c| wants(c)) {
            let lines = template::chat_lines(&c.template, &notice.build);
            let to = c
                .recipients
                .iter()
                .map(|r| (r, false))
                .chain(c.rooms.iter().map(|r| (r, true)));
            for (to, room) in to {
                add(
                    Target::Xmpp {
                        to: to.clone(),
                        room,
                    },
                    Message {
                        lines: lines.clone(),
                        ..Message::default()
                    },
                );
            }
        }
    }
    for c in n.webhooks.iter().filter(|c| wants(c)) {
        let format = match c.format.as_deref() {
            Some("travis") => WebhookFormat::Travis,
            _ => WebhookFormat::Kha,
        };
        for url in &c.recipients {
            add(
                Target::Webhook {
                    url: url.clone(),
                    format,
                },
                Message::default(),
            );
        }
    }
    for (name, c) in n.plugins.iter().filter(|(_, c)| wants(c)) {
        add(
            Target::Plugin {
                name: name.clone(),
                config: serde_json::to_value(&c.config).unwrap_or_default(),
            },
            Message {
                subject: template::email_subject(&notice.build),
                body: template::email_body(&notice.build),
                lines: template::chat_lines(&c.template, &notice.build),
            },
        );
    }
    out
}

fn github_state(s: BuildState) -> &'static str {
    match s {
        BuildState::Passed => "success",
        BuildState::Failed => "failure",
        BuildState::Errored | BuildState::Canceled => "error",
        _ => "pending",
    }
}

fn github_job_state(s: JobState) -> &'static str {
    match s {
        JobState::Passed => "success",
        JobState::Failed => "failure",
        s if s.is_final() => "error",
        _ => "pending",
    }
}

#[cfg(test)]
mod tests;
