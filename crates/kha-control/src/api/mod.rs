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
//! and why), `views` (records → views).

pub mod branches;
pub mod builders;
pub mod builds;
pub mod events;
pub mod logs;
pub mod overview;
pub mod projects;
pub mod queue;
mod views;

use crate::app::App;
use crate::auth::{hash, hash_eq};
use crate::scheduler::SchedError;
use crate::store::events::SubscribeError;
use crate::store::StoreError;
use crate::trigger::TriggerError;
use crate::vcs::VcsError;

/// Who is asking. Today the admin (the CLI with the admin token, or a
/// browser signed in with it), builders, and anyone (a browser or script
/// that gave no token); user accounts come with their own variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Builder(String),
    Anonymous,
}

impl Principal {
    /// May read projects, builds, logs, builders and events. Everyone may
    /// today: kha's state is public until user accounts and private
    /// projects exist.
    pub fn require_reader(&self) -> Result<(), ApiError> {
        Ok(())
    }

    /// Only the admin may do this.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Builder(id) => Err(ApiError::Denied(format!(
                "builder {id} may not do this: it needs the admin token"
            ))),
            Principal::Anonymous => Err(ApiError::Unauthenticated(
                "this needs the admin token: sign in with it, or send it as a bearer token".into(),
            )),
        }
    }
}

/// The admin, if `token` is the admin token.
pub fn admin_from_token(app: &App, token: Option<&str>) -> Result<Principal, ApiError> {
    match token {
        Some(t) if hash_eq(&hash(t), &app.admin_hash) => Ok(Principal::Admin),
        Some(_) => Err(ApiError::Unauthenticated("wrong admin token".into())),
        None => Err(ApiError::Unauthenticated(
            "no admin token: pass --token, set KHA_TOKEN, or run where the control node's admin.token is readable".into(),
        )),
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
            TriggerError::Vcs(e @ VcsError::Fetch { .. }) => ApiError::Unavailable(e.to_string()),
            TriggerError::Sched(e) => e.into(),
            TriggerError::Store(e) => e.into(),
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
mod tests;
