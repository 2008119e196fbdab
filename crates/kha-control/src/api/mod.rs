//! The service layer: every operation a person or a program can ask of the
//! control node, once, for every interface. Each function takes the
//! caller's [`Principal`], decides whether it may, does the work through
//! [`App`], and returns kha-core's plain serde views
//! ([`kha_core::view`]). gRPC (`grpc/admin.rs`) and HTTP are thin adapters:
//! they parse, call one function here, and encode; errors say what was
//! wrong and what to do, and each adapter maps [`ApiError`] to its own
//! codes in one place.
//!
//! Rooms: `projects`, `builds` (trigger, list, show, restart, cancel),
//! `logs` (read and follow), `branches`, `builders` (and enrolment tokens),
//! `events` (the stream), `overview` (the front page), `queue` (what waits
//! and why), `schedules` (scheduled builds, `kha cron`), `views` (records → views), `auth` (credentials: passwords,
//! sessions, API tokens, GitHub identities), `users` (accounts and roles),
//! `audit` (who did what).
//!
//! Permissions: [`Principal::require`] and [`Principal::require_admin`] are
//! the only gates; a private project the caller may not see is NotFound,
//! exactly like a missing one, everywhere (lists, events, logs, badges).

pub mod audit;
pub mod auth;
pub mod backup;
pub mod branches;
pub mod builders;
pub mod builds;
pub mod caches;
pub mod events;
pub mod logs;
pub mod overview;
pub mod projects;
pub mod queue;
pub mod schedules;
pub mod users;
mod views;

use crate::app::App;
use crate::scheduler::SchedError;
use crate::store::events::SubscribeError;
use crate::store::records;
use crate::store::StoreError;
use crate::trigger::TriggerError;
use crate::vcs::VcsError;
use kha_core::view::Role;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Who is asking: the break-glass admin token, a signed-in user (web
/// session or API token), a builder, or anyone (no credentials). Every
/// service function decides from this, once, for every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    User(Arc<UserCtx>),
    Builder(String),
    Anonymous,
}

/// A signed-in user as a request sees them (read from their record when
/// the credential was checked).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserCtx {
    pub name: String,
    /// The global role.
    pub role: Role,
    pub roles: BTreeMap<String, Role>,
    pub stars: BTreeSet<String>,
}

impl Principal {
    /// How the audit log and the control node's log name the caller.
    pub fn label(&self) -> String {
        match self {
            Principal::Admin => "admin token".into(),
            Principal::User(u) => u.name.clone(),
            Principal::Builder(id) => format!("builder {id}"),
            Principal::Anonymous => "anonymous".into(),
        }
    }

    pub fn user(&self) -> Option<&UserCtx> {
        match self {
            Principal::User(u) => Some(u),
            _ => None,
        }
    }

    /// The admin token, or a user whose global role is admin.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Admin => true,
            Principal::User(u) => u.role == Role::Admin,
            _ => false,
        }
    }

    /// The caller's effective role on a project: the higher of their global
    /// and project roles; everyone is at least a viewer of a public project.
    pub fn role_on(&self, p: &records::Project) -> Role {
        self.role_in(&p.name, p.private)
    }

    /// [`Principal::role_on`] for a project known by its view (the web UI
    /// hides the buttons a caller cannot use; the service layer decides).
    pub fn role_on_view(&self, p: &kha_core::view::Project) -> Role {
        self.role_in(&p.name, p.private)
    }

    fn role_in(&self, project: &str, private: bool) -> Role {
        let mine = match self {
            Principal::Admin => Role::Admin,
            Principal::User(u) => u
                .role
                .max(u.roles.get(project).copied().unwrap_or_default()),
            Principal::Builder(_) | Principal::Anonymous => Role::None,
        };
        if private {
            mine
        } else {
            mine.max(Role::Viewer)
        }
    }

    /// Whether the project exists for the caller at all.
    pub fn can_see(&self, p: &records::Project) -> bool {
        self.role_on(p) >= Role::Viewer
    }

    /// Only an admin may do this.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            return Ok(());
        }
        Err(self.refusal(Role::Admin, "this", None, Role::None))
    }

    /// Refuses unless the caller's role on `p` is at least `need`; `doing`
    /// names the operation ("triggering a build of p"). A project the
    /// caller cannot see is not found, exactly as a missing one.
    pub fn require(&self, p: &records::Project, need: Role, doing: &str) -> Result<(), ApiError> {
        if !self.can_see(p) {
            return Err(projects::not_found(&p.name));
        }
        let have = self.role_on(p);
        if have >= need {
            return Ok(());
        }
        Err(self.refusal(need, doing, Some(&p.name), have))
    }

    /// Why the caller may not do something that needs `need`.
    fn refusal(&self, need: Role, doing: &str, project: Option<&str>, have: Role) -> ApiError {
        let on = match (need, project) {
            (Role::Admin, _) | (_, None) => String::new(),
            (_, Some(p)) => format!(" on {p}"),
        };
        match self {
            Principal::User(u) => {
                let is = match (need, have) {
                    (Role::Admin, _) => format!("{} is not an admin", u.name),
                    (_, Role::None) => format!("{} has no role there", u.name),
                    (_, r) => format!("{} is a {r} there", u.name),
                };
                ApiError::Denied(format!("{doing} needs the {need} role{on}; {is}"))
            }
            Principal::Builder(id) => ApiError::Denied(format!(
                "builder {id} may not do this: {doing} needs the {need} role{on}"
            )),
            Principal::Admin | Principal::Anonymous => ApiError::Unauthenticated(format!(
                "{doing} needs the {need} role{on}: sign in (`kha login`, or the web UI), or send an API token"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    /// Bad input: the message says which field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Exists(String),
    /// Not now (a running build cannot be restarted, …).
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Denied(String),
    /// Too many attempts (sign-in): wait.
    #[error("{0}")]
    TooMany(String),
    /// Something the control node depends on is not reachable (a remote).
    #[error("{0}")]
    Unavailable(String),
    /// The events asked for were pruned.
    #[error("events before {first} were pruned; the stream starts at {first} now")]
    Pruned { first: u64 },
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(m) => ApiError::Precondition(m),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        match e {
            SchedError::Store(e) => e.into(),
            SchedError::Invalid(m) => ApiError::Invalid(m),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> Self {
        match e {
            TriggerError::Vcs(e @ (VcsError::NoBranch(_) | VcsError::NoCommit(_))) => {
                ApiError::NotFound(e.to_string())
            }
            TriggerError::Vcs(e @ (VcsError::Fetch { .. } | VcsError::Client { .. })) => {
                ApiError::Unavailable(e.to_string())
            }
            TriggerError::Sched(e) => e.into(),
            TriggerError::Store(e) => e.into(),
            TriggerError::Invalid(m) => ApiError::Invalid(m),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::Pruned { first } => ApiError::Pruned { first },
            SubscribeError::Store(e) => e.into(),
            SubscribeError::Closed => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Whether the caller may see each project a list touches, looked up
/// once per project per call.
pub(crate) struct Visibility<'a> {
    app: &'a App,
    who: &'a Principal,
    known: std::collections::HashMap<String, bool>,
}

impl<'a> Visibility<'a> {
    pub(crate) fn new(app: &'a App, who: &'a Principal) -> Self {
        Visibility {
            app,
            who,
            known: Default::default(),
        }
    }

    /// A project that no longer exists is visible to admins only.
    pub(crate) fn project(&mut self, name: &str) -> Result<bool, ApiError> {
        if let Some(&v) = self.known.get(name) {
            return Ok(v);
        }
        let v = match self.app.store.get_project(name)? {
            Some(p) => self.who.can_see(&p),
            None => self.who.is_admin(),
        };
        self.known.insert(name.to_string(), v);
        Ok(v)
    }
}

/// Page numbers are 1-based; `per_page` 0 means 25, and at most 100.
pub fn paging(page: u32, per_page: u32) -> Result<(u32, u32), ApiError> {
    let per_page = match per_page {
        0 => 25,
        n if n > 100 => return Err(ApiError::Invalid("per_page is at most 100".into())),
        n => n,
    };
    Ok((page.max(1), per_page))
}

#[cfg(test)]
pub(crate) mod permission_tests;
#[cfg(test)]
mod tests;
