//! Projects: add (with the defaults a new project gets), list, show, remove.

use super::{audit, views, ApiError, Principal};
use crate::app::App;
use crate::auth;
use crate::store::records::{self, Credentials, Secret};
use kha_core::spec::VcsKind;
use kha_core::view::{self, Role};
use serde::{Deserialize, Serialize};

/// What `add` needs; empty or 0 fields take their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProject {
    pub name: String,
    pub repo_url: String,
    /// Empty: "master" if the repository has it, else "main".
    pub default_branch: String,
    /// 0: the control node's default.
    pub timeout_secs: u64,
    /// Empty: "default".
    pub image: String,
    /// 0: 60 s (unless `no_poll`).
    pub poll_interval_secs: u64,
    pub no_poll: bool,
    pub build_tags: bool,
    pub cancel_superseded: bool,
    /// Empty: derived from a github.com URL.
    pub github_repo: String,
    pub credential_username: String,
    pub credential_password: String,
    /// Only people with a role on it see it.
    pub private: bool,
    /// "git", "svn" or "cvs"; empty: detected from the URL.
    #[serde(default)]
    pub vcs: String,
    /// cvs: the module to build.
    #[serde(default)]
    pub module: String,
    /// svn: the repository's layout (`vcs::svn::Layout`); empty: standard.
    #[serde(default)]
    pub layout: String,
}

/// Adds a project; the answer carries its webhook secret, shown only here.
pub async fn add(app: &App, who: &Principal, r: NewProject) -> Result<view::Project, ApiError> {
    who.require_admin()?;
    kha_core::validate_project_name(&r.name).map_err(ApiError::Invalid)?;
    if r.repo_url.trim().is_empty() {
        return Err(ApiError::Invalid(
            "repo_url is empty: give the URL to build".into(),
        ));
    }
    let exists = || ApiError::Exists(format!("project {:?} exists already", r.name));
    if app.store.get_project(&r.name)?.is_some() {
        return Err(exists());
    }
    // A removed project's builds, logs and events stay, filed under its
    // name: a new project of that name would show them to its readers.
    if app.store.project_build_ids(&r.name).next().is_some()
        || !app.store.list_branches(&r.name)?.is_empty()
    {
        return Err(ApiError::Exists(format!(
            "the name {:?} belonged to a removed project whose builds are still stored; choose another name",
            r.name
        )));
    }
    let vcs = match r.vcs.trim() {
        "" => crate::vcs::detect(&r.repo_url),
        k => k.parse().map_err(ApiError::Invalid)?,
    };
    let module = r.module.trim().to_string();
    match vcs {
        VcsKind::Cvs if module.is_empty() => {
            return Err(ApiError::Invalid(
                "a CVS project needs its module: give --module".into(),
            ))
        }
        VcsKind::Cvs => crate::vcs::cvs_module_ok(&module).map_err(ApiError::Invalid)?,
        _ if !module.is_empty() => {
            return Err(ApiError::Invalid(format!(
                "--module is for CVS projects; this one is {vcs}"
            )))
        }
        _ => {}
    }
    let layout = r.layout.trim().to_string();
    // The URL reaches the svn client as an argument: it must be a URL, not
    // something svn would read as an option.
    const SVN_SCHEMES: [&str; 5] = ["svn://", "svn+", "http://", "https://", "file://"];
    if vcs == VcsKind::Svn && !SVN_SCHEMES.iter().any(|s| r.repo_url.starts_with(s)) {
        return Err(ApiError::Invalid(format!(
            "{:?} is not a Subversion URL: give svn://, svn+ssh://, http(s):// or file://",
            r.repo_url
        )));
    }
    match vcs {
        VcsKind::Svn => {
            crate::vcs::svn::Layout::parse(&layout).map_err(ApiError::Invalid)?;
        }
        _ if !layout.is_empty() => {
            return Err(ApiError::Invalid(format!(
                "--layout is for Subversion projects; this one is {vcs}"
            )))
        }
        _ => {}
    }
    let credentials = (!r.credential_username.is_empty() || !r.credential_password.is_empty())
        .then(|| Credentials {
            username: r.credential_username.clone(),
            password: Secret::new(r.credential_password.clone()),
        });
    let default_branch = if r.default_branch.is_empty() {
        let (m, n, u, c) = (
            app.vcs.get(vcs, &module),
            r.name.clone(),
            r.repo_url.clone(),
            credentials.clone(),
        );
        match tokio::task::spawn_blocking(move || m.default_branch(&n, &u, c.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
        {
            Ok(b) => b,
            // An empty repository: its first push names the branch
            // (`Triggerer::note_branch`).
            Err(crate::vcs::VcsError::NoBranch(_)) if vcs == VcsKind::Git => String::new(),
            Err(e) => return Err(ApiError::Invalid(format!("{e}; check the URL"))),
        }
    } else {
        r.default_branch
    };
    let p = records::Project {
        job_limits: Default::default(),
        max_running_jobs: 0,
        one_build_per_branch: false,
        log_keep_builds: 0,
        log_max_age_days: 0,
        notify: Default::default(),
        name: r.name.clone(),
        repo_url: r.repo_url.clone(),
        default_branch,
        timeout_secs: match r.timeout_secs {
            0 => app.cfg.job_timeout_secs,
            n => n,
        },
        image: if r.image.is_empty() {
            "default".into()
        } else {
            r.image
        },
        created_ms: app.clock.now(),
        poll_interval_secs: match (r.no_poll, r.poll_interval_secs) {
            (true, _) => 0,
            (false, 0) => 60,
            (false, n) => n,
        },
        build_tags: r.build_tags,
        cancel_superseded: r.cancel_superseded,
        github_repo: if r.github_repo.is_empty() {
            github_repo_of(&r.repo_url).unwrap_or_default()
        } else {
            r.github_repo
        },
        webhook_secret: auth::new_token("khaw_"),
        credentials,
        private: r.private,
        vcs,
        module,
        layout,
        share_secrets_with_forks: false,
    };
    if !app.store.add_project(&p)? {
        return Err(exists());
    }
    let detail = format!(
        "{}{}",
        p.repo_url,
        if p.private { " (private)" } else { "" }
    );
    audit::record(app, who, "project.add", &p.name, &detail);
    app.store.durable().await?;
    let secret = p.webhook_secret.expose().to_string();
    let mut v = views::project(p);
    v.webhook_secret = secret;
    Ok(v)
}

/// The projects the caller may see.
pub fn list(app: &App, who: &Principal) -> Result<Vec<view::Project>, ApiError> {
    Ok(app
        .store
        .list_projects()?
        .into_iter()
        .filter(|p| who.can_see(p))
        .map(views::project)
        .collect())
}

pub fn get(app: &App, who: &Principal, name: &str) -> Result<view::Project, ApiError> {
    Ok(views::project(visible(app, who, name)?))
}

/// The project's public key (made now if it has none): anyone who may see
/// the project may have it, as on Travis; the private half never leaves
/// the control node.
pub async fn public_key(
    app: &App,
    who: &Principal,
    name: &str,
) -> Result<view::ProjectKey, ApiError> {
    let p = visible(app, who, name)?;
    let keys = app.sched.keys.clone();
    // Making a 4096-bit key takes a moment: off the async threads.
    let k = tokio::task::spawn_blocking(move || keys.public(&p.name))
        .await
        .map_err(|e| ApiError::Internal(format!("making the key: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(view::ProjectKey {
        key: k.pem,
        fingerprint: k.fingerprint,
    })
}

/// Removes a project, its key pair, its cache, and every role and star
/// naming it (a project added later under the same name starts with
/// nobody and nothing).
pub async fn remove(app: &App, who: &Principal, name: &str) -> Result<(), ApiError> {
    who.require_admin()?;
    if !app.store.remove_project(name)? {
        return Err(not_found(name));
    }
    app.sched
        .set_rules(name, crate::scheduler::ProjectRules::default());
    if let Err(e) = app.sched.keys.remove(name) {
        tracing::warn!(project = name, error = %e, "cannot remove the project's key");
    }
    // Its cached archives go too: a project added later under the same
    // name must not restore them.
    if let Err(e) = app.caches.clear(name, None).await {
        tracing::warn!(project = name, error = %e, "cannot remove the project's cache");
    }
    // And its scheduled builds.
    app.store.remove_project_schedules(name)?;
    for u in app.store.list_users()? {
        if u.roles.contains_key(name) || u.stars.contains(name) {
            app.store.update_user(&u.name, |mut u| {
                u.roles.remove(name);
                u.stars.remove(name);
                Some(u)
            })?;
        }
    }
    audit::record(app, who, "project.remove", name, "");
    app.store.durable().await?;
    Ok(())
}

/// What a maintainer may change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectUpdate {
    pub private: Option<bool>,
    pub default_branch: Option<String>,
    pub timeout_secs: Option<u64>,
    /// 0: never poll.
    pub poll_interval_secs: Option<u64>,
    pub build_tags: Option<bool>,
    pub cancel_superseded: Option<bool>,
    /// Pull requests from forks get the encrypted variables too.
    pub share_secrets_with_forks: Option<bool>,
    /// The limits its jobs ask builders for; 0: a builder's default.
    pub job_memory_mib: Option<u64>,
    pub job_pids: Option<u64>,
    /// Thousandths of a CPU.
    pub job_cpu_millis: Option<u64>,
    /// Its jobs get network.
    pub job_network: Option<bool>,
    /// At most this many of its jobs run at once; 0: no limit.
    pub max_running_jobs: Option<u32>,
    /// A branch's later build waits until its earlier one is over.
    pub one_build_per_branch: Option<bool>,
    /// Keep the logs of its last N builds; 0: the server's policy.
    pub log_keep_builds: Option<u32>,
    /// Remove logs of builds that ended more than this many days ago; 0:
    /// the server's policy.
    pub log_max_age_days: Option<u64>,
    /// One channel of `notifications:` replaced (`Some(yaml)`) or given
    /// back to the `.travis.yml` (`None`).
    pub notify: Option<NotifyChange>,
}

/// One channel of a project's `notifications:` set on the control node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotifyChange {
    /// email, irc, webhooks, jabber, or a plugin's name.
    pub channel: String,
    /// The channel's value as `.travis.yml` writes it (YAML); None: the
    /// override goes and the file's setting applies again.
    #[serde(default)]
    pub value: Option<String>,
}

/// Changes a project's settings (maintainers).
pub async fn update(
    app: &App,
    who: &Principal,
    name: &str,
    u: ProjectUpdate,
) -> Result<view::Project, ApiError> {
    let mut p = record(app, name)?;
    who.require(
        &p,
        Role::Maintainer,
        &format!("changing the settings of {name}"),
    )?;
    let mut changed = Vec::new();
    if let Some(v) = u.private {
        p.private = v;
        changed.push(format!("private={v}"));
    }
    if let Some(v) = u.default_branch {
        if v.trim().is_empty() || v.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ApiError::Invalid(format!(
                "default_branch {v:?} is not a branch name"
            )));
        }
        changed.push(format!("default_branch={v}"));
        p.default_branch = v;
    }
    if let Some(v) = u.timeout_secs {
        if v == 0 {
            return Err(ApiError::Invalid("timeout_secs must be at least 1".into()));
        }
        p.timeout_secs = v;
        changed.push(format!("timeout_secs={v}"));
    }
    if let Some(v) = u.poll_interval_secs {
        p.poll_interval_secs = v;
        changed.push(format!("poll_interval_secs={v}"));
    }
    if let Some(v) = u.build_tags {
        p.build_tags = v;
        changed.push(format!("build_tags={v}"));
    }
    if let Some(v) = u.cancel_superseded {
        p.cancel_superseded = v;
        changed.push(format!("cancel_superseded={v}"));
    }
    if let Some(v) = u.share_secrets_with_forks {
        p.share_secrets_with_forks = v;
        changed.push(format!("share_secrets_with_forks={v}"));
    }
    let mut limits = p.job_limits;
    for (name, asked, field) in [
        ("job_memory_mib", u.job_memory_mib, &mut limits.memory_mib),
        ("job_pids", u.job_pids, &mut limits.pids),
        ("job_cpu_millis", u.job_cpu_millis, &mut limits.cpu_millis),
    ] {
        if let Some(v) = asked {
            *field = v;
            changed.push(format!("{name}={v}"));
        }
    }
    if let Some(v) = u.job_network {
        limits.network = v;
        changed.push(format!("job_network={v}"));
    }
    limits
        .check()
        .map_err(|e| ApiError::Invalid(format!("job_{e}")))?;
    p.job_limits = limits;
    if let Some(v) = u.max_running_jobs {
        p.max_running_jobs = v;
        changed.push(format!("max_running_jobs={v}"));
    }
    if let Some(v) = u.one_build_per_branch {
        p.one_build_per_branch = v;
        changed.push(format!("one_build_per_branch={v}"));
    }
    if let Some(v) = u.log_keep_builds {
        p.log_keep_builds = v;
        changed.push(format!("log_keep_builds={v}"));
    }
    if let Some(v) = u.log_max_age_days {
        p.log_max_age_days = v;
        changed.push(format!("log_max_age_days={v}"));
    }
    if let Some(NotifyChange { channel, value }) = u.notify {
        match value {
            Some(yaml) => {
                kha_core::travis::check_override(&channel, &yaml)
                    .map_err(|e| ApiError::Invalid(format!("notifications.{channel}: {e}")))?;
                p.notify.insert(channel.clone(), yaml.trim().to_string());
                // The value may hold a password: the audit log names the
                // channel only.
                changed.push(format!("notify.{channel}=set"));
            }
            None => {
                if p.notify.remove(&channel).is_none() {
                    return Err(ApiError::Invalid(format!(
                        "{name} has no notification setting for {channel}"
                    )));
                }
                changed.push(format!("notify.{channel}=cleared"));
            }
        }
    }
    if changed.is_empty() {
        return Err(ApiError::Invalid(
            "nothing to change: give a setting".into(),
        ));
    }
    app.store.put_project(&p)?;
    audit::record(app, who, "project.update", name, &changed.join(" "));
    app.store.durable().await?;
    app.sched
        .set_rules(name, crate::scheduler::ProjectRules::of(&p));
    Ok(views::project(p))
}

/// The project's notification channels set on the control node
/// (maintainers: values may hold passwords and webhook tokens).
pub fn notify_settings(
    app: &App,
    who: &Principal,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let p = record(app, name)?;
    who.require(
        &p,
        Role::Maintainer,
        &format!("reading the notification settings of {name}"),
    )?;
    Ok(p.notify)
}

/// Who has a role on a project (beyond what everyone has on a public one):
/// per-project roles, and global roles of viewer and up. `project` of each
/// entry names the user.
pub fn members(app: &App, who: &Principal, name: &str) -> Result<Vec<view::ProjectRole>, ApiError> {
    visible(app, who, name)?;
    let mut out: Vec<view::ProjectRole> = app
        .store
        .list_users()?
        .into_iter()
        .filter(|u| !u.disabled)
        .filter_map(|u| {
            let role = u.role.max(u.roles.get(name).copied().unwrap_or_default());
            (role >= Role::Viewer).then_some(view::ProjectRole {
                project: u.name,
                role,
            })
        })
        .collect();
    out.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.project.cmp(&b.project)));
    Ok(out)
}

/// The stored project, or a NotFound that says how to list them. No
/// permission check: callers check with [`visible`] or `Principal::require`.
pub(super) fn record(app: &App, name: &str) -> Result<records::Project, ApiError> {
    app.store.get_project(name)?.ok_or_else(|| not_found(name))
}

/// The project, if the caller may see it; otherwise NotFound, worded
/// exactly as for a project that does not exist.
pub(super) fn visible(
    app: &App,
    who: &Principal,
    name: &str,
) -> Result<records::Project, ApiError> {
    let p = record(app, name)?;
    who.require(&p, Role::Viewer, "reading it")?;
    Ok(p)
}

pub(super) fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no project {name:?} (see `kha project list`)"))
}

/// "owner/name" of a github.com URL (https, ssh or git form).
pub fn github_repo_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("git://github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    (rest.split('/').count() == 2).then(|| rest.to_string())
}
