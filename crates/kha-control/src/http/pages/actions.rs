//! The forms of the build, builder and project pages: restart or cancel a
//! build, drain or revoke a builder, trigger a build, star or unstar a
//! project, change its settings. Each checks the session's CSRF field,
//! calls one service function (which decides whether the caller may) and
//! answers 303 back to the page, or an error page.

use super::{error_page, parse_id, project_url};
use crate::api::builds::BuildAction;
use crate::api::{self, ApiError, Principal};
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;

/// A form that carries nothing but its CSRF token (every page's buttons).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf: String,
}

/// Checks the poster, runs `act` as them, and sends the browser to the
/// page `act` names.
pub(super) async fn act<F, Fut>(app: &App, c: &Caller, csrf: &str, back: &str, act: F) -> Response
where
    F: FnOnce(Principal) -> Fut,
    Fut: Future<Output = Result<String, ApiError>>,
{
    let who = match c.form_writer(app, csrf, back) {
        Ok(who) => who.clone(),
        Err(r) => return *r,
    };
    match act(who).await {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => error_page(app, c, &e),
    }
}

pub async fn restart(
    s: State<Arc<App>>,
    c: Caller,
    id: Path<String>,
    f: Form<CsrfForm>,
) -> Response {
    on_build(s, c, id, f, BuildAction::Restart).await
}

pub async fn prioritize(
    s: State<Arc<App>>,
    c: Caller,
    id: Path<String>,
    f: Form<CsrfForm>,
) -> Response {
    on_build(s, c, id, f, BuildAction::Prioritize).await
}

pub async fn cancel(
    s: State<Arc<App>>,
    c: Caller,
    id: Path<String>,
    f: Form<CsrfForm>,
) -> Response {
    on_build(s, c, id, f, BuildAction::Cancel).await
}

/// The build page's buttons: restart, run next, cancel.
async fn on_build(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(raw): Path<String>,
    Form(f): Form<CsrfForm>,
    action: BuildAction,
) -> Response {
    let back = format!("/builds/{}", fmt::pct(&raw));
    let app = &*app;
    act(app, &c, &f.csrf, &back.clone(), |who| async move {
        let id = parse_id("build", &raw)?;
        api::builds::act(app, &who, id, action).await.map(|_| back)
    })
    .await
}

pub async fn drain(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let app = &*app;
    act(app, &c, &f.csrf, "/builders", |who| async move {
        api::builders::drain(app, &who, &id)
            .await
            .map(|_| "/builders".to_string())
    })
    .await
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let app = &*app;
    act(app, &c, &f.csrf, "/builders", |who| async move {
        api::builders::revoke(app, &who, &id)
            .await
            .map(|_| "/builders".to_string())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StarForm {
    csrf: String,
    /// "account": back to the account page instead of the project's.
    back: String,
}

pub async fn star(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<StarForm>,
) -> Response {
    star_or_not(&app, &c, &name, f, true).await
}

pub async fn unstar(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<StarForm>,
) -> Response {
    star_or_not(&app, &c, &name, f, false).await
}

async fn star_or_not(app: &App, c: &Caller, name: &str, f: StarForm, on: bool) -> Response {
    let back = match f.back.as_str() {
        "account" => "/account".to_string(),
        _ => project_url(name),
    };
    act(app, c, &f.csrf, &back.clone(), |who| async move {
        api::users::star(app, &who, name, on).await.map(|_| back)
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TriggerForm {
    csrf: String,
    branch: String,
    /// "on" when checked: build even if this commit was built already.
    force: String,
}

/// "Trigger build" on the project page: to the build's page.
pub async fn trigger(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<TriggerForm>,
) -> Response {
    let back = project_url(&name);
    let app = &*app;
    act(app, &c, &f.csrf, &back, |who| async move {
        let args = api::builds::TriggerArgs {
            project: name,
            branch: f.branch.trim().to_string(),
            force: !f.force.is_empty(),
            ..Default::default()
        };
        let out = api::builds::trigger(app, &who, args).await?;
        Ok(format!("/builds/{}", out.build.id))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SettingsForm {
    csrf: String,
    /// "private" or "public".
    visibility: String,
    default_branch: String,
    timeout_secs: String,
    poll_interval_secs: String,
    /// Checkboxes: "on" when checked, absent when not.
    build_tags: String,
    cancel_superseded: String,
    share_secrets_with_forks: String,
    /// Job limits; absent (an older form): unchanged.
    job_memory_mib: String,
    job_pids: String,
    /// In CPUs ("0.5").
    job_cpus: String,
    /// Checkbox.
    job_network: String,
    /// Absent (an older form): unchanged.
    max_running_jobs: String,
    /// Checkbox.
    one_build_per_branch: String,
    /// Absent (an older form): unchanged.
    log_keep_builds: String,
    log_max_age_days: String,
}

#[derive(Deserialize)]
pub struct NotifyForm {
    csrf: String,
    channel: String,
    #[serde(default)]
    value: String,
    /// "on": remove the channel's setting.
    #[serde(default)]
    clear: String,
}

/// Sets or removes one notification channel of a project.
pub async fn notify(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<NotifyForm>,
) -> Response {
    let back = format!("{}#notify", project_url(&name));
    let app = &*app;
    act(app, &c, &f.csrf, &back.clone(), |who| async move {
        let u = api::projects::ProjectUpdate {
            notify: Some(api::projects::NotifyChange {
                channel: f.channel.trim().to_string(),
                value: f.clear.is_empty().then_some(f.value),
            }),
            ..Default::default()
        };
        api::projects::update(app, &who, &name, u).await?;
        Ok(back)
    })
    .await
}

/// A number field of the settings form.
fn secs(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::Invalid(format!("{field} must be a whole number of seconds")))
}

/// A limit field of the settings form: empty (absent) leaves it as it is.
/// A whole number from a form field; empty: unchanged.
fn whole(field: &str, raw: &str) -> Result<Option<u64>, ApiError> {
    match raw.trim() {
        "" => Ok(None),
        raw => raw.parse::<u64>().map(Some).map_err(|_| {
            ApiError::Invalid(format!("{field} {raw:?}: give a whole number, 0 for none"))
        }),
    }
}

fn limit(field: &str, raw: &str, scale: f64) -> Result<Option<u64>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some((v * scale).round() as u64)),
        _ => Err(ApiError::Invalid(format!(
            "{field} must be a number, 0 for the builder's default"
        ))),
    }
}

/// The project's settings form: only what differs from the project as it
/// is goes to `projects::update`, so the audit log says what changed.
pub async fn settings(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<SettingsForm>,
) -> Response {
    let back = format!("{}#settings", project_url(&name));
    let app = &*app;
    act(app, &c, &f.csrf, &back.clone(), |who| async move {
        let p = api::projects::get(app, &who, &name)?;
        let private = match f.visibility.as_str() {
            "private" => true,
            "public" => false,
            other => {
                return Err(ApiError::Invalid(format!(
                    "visibility {other:?}: choose private or public"
                )))
            }
        };
        let timeout = secs("timeout", &f.timeout_secs)?;
        let poll = secs("poll interval", &f.poll_interval_secs)?;
        let branch = f.default_branch.trim().to_string();
        let (tags, superseded) = (!f.build_tags.is_empty(), !f.cancel_superseded.is_empty());
        let share = !f.share_secrets_with_forks.is_empty();
        let changed = |v: Option<u64>, now: u64| v.filter(|v| *v != now);
        let memory = changed(
            limit("memory", &f.job_memory_mib, 1.0)?,
            p.job_limits.memory_mib,
        );
        let pids = changed(limit("processes", &f.job_pids, 1.0)?, p.job_limits.pids);
        let cpus = changed(limit("CPUs", &f.job_cpus, 1000.0)?, p.job_limits.cpu_millis);
        let network = !f.job_network.is_empty();
        let max_running = whole("running jobs", &f.max_running_jobs)?
            .map(|v| v.min(u32::MAX as u64) as u32)
            .filter(|v| *v != p.max_running_jobs);
        let one_per_branch = !f.one_build_per_branch.is_empty();
        let keep_logs = whole("logs of the last builds", &f.log_keep_builds)?
            .map(|v| v.min(u32::MAX as u64) as u32)
            .filter(|v| *v != p.log_keep_builds);
        let log_days = whole("log age", &f.log_max_age_days)?.filter(|v| *v != p.log_max_age_days);
        let u = api::projects::ProjectUpdate {
            private: (private != p.private).then_some(private),
            default_branch: (branch != p.default_branch).then_some(branch),
            timeout_secs: (timeout != p.timeout_secs).then_some(timeout),
            poll_interval_secs: (poll != p.poll_interval_secs).then_some(poll),
            build_tags: (tags != p.build_tags).then_some(tags),
            cancel_superseded: (superseded != p.cancel_superseded).then_some(superseded),
            share_secrets_with_forks: (share != p.share_secrets_with_forks).then_some(share),
            job_memory_mib: memory,
            job_pids: pids,
            job_cpu_millis: cpus,
            job_network: (network != p.job_limits.network).then_some(network),
            max_running_jobs: max_running,
            one_build_per_branch: (one_per_branch != p.one_build_per_branch)
                .then_some(one_per_branch),
            log_keep_builds: keep_logs,
            log_max_age_days: log_days,
            notify: None,
        };
        let unchanged = u.private.is_none()
            && u.default_branch.is_none()
            && u.timeout_secs.is_none()
            && u.poll_interval_secs.is_none()
            && u.build_tags.is_none()
            && u.cancel_superseded.is_none()
            && u.share_secrets_with_forks.is_none()
            && u.job_memory_mib.is_none()
            && u.job_pids.is_none()
            && u.job_cpu_millis.is_none()
            && u.job_network.is_none()
            && u.max_running_jobs.is_none()
            && u.one_build_per_branch.is_none()
            && u.log_keep_builds.is_none()
            && u.log_max_age_days.is_none();
        if !unchanged {
            api::projects::update(app, &who, &name, u).await?;
        }
        Ok(back)
    })
    .await
}
