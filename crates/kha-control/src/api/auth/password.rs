//! Passwords: argon2id hashing and checking, and the sign-in rate limit
//! (per account and per client address: after [`MAX_FAILURES_ACCOUNT`]
//! failures in [`FAILURE_WINDOW_MS`], the next try is refused with
//! [`ApiError::TooMany`] before the password is checked).

use crate::api::users;
use crate::api::ApiError;
use crate::app::App;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use kha_core::Millis;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use tracing::info;

/// Failed sign-ins are counted over this window…
pub const FAILURE_WINDOW_MS: u64 = 15 * 60 * 1000;
/// …and after this many for one account, the next try waits…
pub const MAX_FAILURES_ACCOUNT: usize = 9;
/// …or this many from one address (many accounts tried from one place).
pub const MAX_FAILURES_ADDR: usize = 30;
/// What the control node remembers of sign-ins in memory (a restart
/// forgets failures and unused codes, which is harmless).
pub struct AuthState {
    pub(super) failures: Mutex<HashMap<String, VecDeque<Millis>>>,
    pub(super) codes: Mutex<HashMap<String, (String, Millis)>>,
    /// Password hashes computed at once.
    pub(super) hashing: tokio::sync::Semaphore,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            failures: Default::default(),
            codes: Default::default(),
            hashing: tokio::sync::Semaphore::new(2),
        }
    }
}

/// Hashes a password with argon2id and the crate's default parameters
/// (RFC 9106's second recommendation as OWASP gives it: m = 19 MiB,
/// t = 2, p = 1), as a PHC string that carries them.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("cannot hash the password: {e}")))
}

fn password_matches(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the account does not exist, so a wrong
/// name costs the same time as a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("kha decoy password").unwrap_or_default())
}

/// Checks a password, rate-limited per account and per address. The
/// answer never says whether the account exists.
pub async fn check_password(
    app: &App,
    name: &str,
    password: &str,
    addr: IpAddr,
) -> Result<String, ApiError> {
    let wrong = || ApiError::Unauthenticated("wrong user name or password".into());
    let name = name.trim().to_ascii_lowercase();
    let now = app.clock.now();
    let from = format!("addr:{addr}");
    app.auth.limited(&from, MAX_FAILURES_ADDR, now, || {
        format!("too many failed sign-ins from {addr}")
    })?;
    // What cannot be a user name is neither remembered nor logged (it may
    // be huge, or a password typed into the wrong field).
    if users::validate_name(&name).is_err() || password.len() > 1024 {
        app.auth.failed(&from, now);
        info!(%addr, "failed sign-in (not a user name)");
        return Err(wrong());
    }
    let acct = format!("user:{name}");
    app.auth.limited(&acct, MAX_FAILURES_ACCOUNT, now, || {
        format!("too many failed sign-ins for {name}")
    })?;
    // Counted as failed until proven right, so concurrent guesses cannot
    // all slip under the limit while the hashes are computed.
    app.auth.failed(&acct, now);
    app.auth.failed(&from, now);
    let user = app.store.get_user(&name)?;
    let phc = match &user {
        Some(u) if !u.password_hash.is_empty() => u.password_hash.clone(),
        _ => decoy().to_string(),
    };
    // argon2 takes tens of milliseconds of CPU: off the async threads, and
    // at most two at a time, so sign-in attempts cannot starve builders.
    let ok = {
        let _permit = app
            .auth
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("the control node is stopping".into()))?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || password_matches(&phc, &password))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let ok = ok && user.as_ref().is_some_and(|u| !u.password_hash.is_empty());
    match user {
        Some(u) if ok && u.disabled => Err(ApiError::Denied(format!(
            "user {name} is disabled: ask an admin"
        ))),
        Some(u) if ok => {
            app.auth.clear(&acct);
            app.auth.forgive(&from, now);
            info!(user = %u.name, %addr, "signed in with a password");
            Ok(u.name)
        }
        _ => {
            info!(user = %name, %addr, "failed sign-in");
            Err(wrong())
        }
    }
}

impl AuthState {
    /// Refuses when `key` has `max` failures in the window.
    pub(crate) fn limited(
        &self,
        key: &str,
        max: usize,
        now: Millis,
        what: impl Fn() -> String,
    ) -> Result<(), ApiError> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = f.get_mut(key) else {
            return Ok(());
        };
        while q.front().is_some_and(|&t| t + FAILURE_WINDOW_MS <= now) {
            q.pop_front();
        }
        if q.len() < max {
            return Ok(());
        }
        let wait = q
            .front()
            .map_or(0, |&t| (t + FAILURE_WINDOW_MS).saturating_sub(now));
        let mins = wait.div_ceil(60_000).max(1);
        Err(ApiError::TooMany(format!(
            "{} ({} in the last 15 minutes); try again in {mins} minute{}",
            what(),
            q.len(),
            if mins == 1 { "" } else { "s" }
        )))
    }

    /// Counts a failure for `key` now.
    pub(crate) fn failed(&self, key: &str, now: Millis) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: an attacker cycling names cannot grow this forever.
        if f.len() > 100_000 {
            f.retain(|_, q| q.back().is_some_and(|&t| t + FAILURE_WINDOW_MS > now));
        }
        let q = f.entry(key.to_string()).or_default();
        q.push_back(now);
        if q.len() > 64 {
            q.pop_front();
        }
    }

    /// Takes back the failure counted in advance for a right password.
    fn forgive(&self, key: &str, at: Millis) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = f.get_mut(key) {
            if let Some(i) = q.iter().rposition(|&t| t == at) {
                q.remove(i);
            }
        }
    }

    fn clear(&self, key: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(key);
    }
}
