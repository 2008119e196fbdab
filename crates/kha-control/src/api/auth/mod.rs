//! Credentials, for every interface: the break-glass admin token, users'
//! passwords (argon2id), web sessions, API tokens, the one-time codes of
//! `kha login --web`, the first-run setup link, and GitHub identities.
//!
//! What is stored: argon2id PHC strings for passwords; SHA-256 for
//! sessions and API tokens (256-bit random, so a plain hash suffices) — a
//! copy of the database holds nothing that signs anyone in. Secrets travel
//! as [`Secret`], which never prints.
//!
//! Sign-in is rate-limited per account and per client address: after
//! [`MAX_FAILURES_ACCOUNT`] failures in [`FAILURE_WINDOW_MS`], the next try
//! is refused with [`ApiError::TooMany`] before the password is checked
//! (`password.rs`: hashing, checking and that limit).

mod password;

pub use password::{
    check_password, hash_password, AuthState, FAILURE_WINDOW_MS, MAX_FAILURES_ACCOUNT,
    MAX_FAILURES_ADDR,
};

use super::{audit, users, ApiError, Principal, UserCtx};
use crate::app::App;
use crate::auth::{hash, hash_eq, new_token};
use crate::store::records::{self, Session};
use kha_core::view::{self, Role};
use kha_core::{Millis, Secret};
use rand::Rng;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::info;

/// A `kha login --web` code lives this long.
const CODE_MS: u64 = 10 * 60 * 1000;
/// Last-seen times are written at most this often per session or token.
const TOUCH_MS: u64 = 60 * 1000;
/// User API tokens start with this, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "khau_";

/// Who a bearer token is: none → anyone; the admin token; a user's API
/// token. Anything else is refused with what to do.
pub fn from_bearer(app: &App, token: Option<&str>) -> Result<Principal, ApiError> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Principal::Anonymous);
    };
    let h = hash(token);
    if hash_eq(&h, &app.admin_hash) {
        return Ok(Principal::Admin);
    }
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(ApiError::Unauthenticated(
            "this is neither the admin token nor an API token: sign in with `kha login`, or create a token on your account page".into(),
        ));
    }
    let Some(t) = app.store.get_api_token(&h)? else {
        return Err(ApiError::Unauthenticated(
            "unknown or revoked API token: sign in again with `kha login`, or create a new token"
                .into(),
        ));
    };
    let now = app.clock.now();
    if t.expires_ms > 0 && t.expires_ms <= now {
        return Err(ApiError::Unauthenticated(format!(
            "API token {:?} expired {}: create a new one (`kha token create`) or sign in again (`kha login`)",
            t.name,
            kha_core::time::iso8601(t.expires_ms)
        )));
    }
    let user = active_user(app, &t.user)?;
    if now.saturating_sub(t.last_used_ms) >= TOUCH_MS {
        let mut t = t;
        t.last_used_ms = now;
        app.store.put_api_token(&h, &t)?;
        touch_user(app, &t.user, now);
    }
    Ok(principal_of(user))
}

/// The user, unless gone or disabled (then the credential is dead).
fn active_user(app: &App, name: &str) -> Result<records::User, ApiError> {
    match app.store.get_user(name)? {
        Some(u) if !u.disabled => Ok(u),
        Some(_) => Err(ApiError::Unauthenticated(format!(
            "user {name} is disabled: ask an admin"
        ))),
        None => Err(ApiError::Unauthenticated(format!(
            "user {name} no longer exists"
        ))),
    }
}

pub(super) fn principal_of(u: records::User) -> Principal {
    Principal::User(Arc::new(UserCtx {
        name: u.name,
        role: u.role,
        roles: u.roles,
        stars: u.stars,
    }))
}

fn touch_user(app: &App, name: &str, now: Millis) {
    // Best effort: last-seen is informational.
    let _ = app.store.update_user(name, |mut u| {
        (now.saturating_sub(u.last_seen_ms) >= TOUCH_MS).then(|| {
            u.last_seen_ms = now;
            u
        })
    });
}

/// What a session cookie stands for.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub principal: Principal,
    /// The CSRF token this session's forms must carry.
    pub csrf: String,
}

/// Starts a session for `user` (None: the break-glass admin token, whose
/// sessions end when the token changes). Returns the session id, for the
/// cookie only, and its CSRF token.
pub async fn start_session(app: &App, user: Option<&str>) -> Result<(Secret, String), ApiError> {
    let now = app.clock.now();
    if let Some(name) = user {
        active_user(app, name)?;
    }
    let sid = new_token("khas_");
    let csrf = hex::encode(rand::rng().random::<[u8; 16]>());
    let s = Session {
        user: user.unwrap_or_default().to_string(),
        csrf: csrf.clone(),
        created_ms: now,
        last_seen_ms: now,
        admin_mark: if user.is_none() {
            admin_mark(app)
        } else {
            String::new()
        },
    };
    app.store.put_session(&hash(sid.expose()), &s)?;
    if let Some(name) = user {
        touch_user(app, name, now);
    }
    app.store.durable().await?;
    Ok((sid, csrf))
}

/// A web sign-in with a password: the check (rate-limited as
/// [`check_password`]), its audit entry, and a new session. Returns the
/// user's name, the session id (for the cookie only) and its CSRF token.
pub async fn password_session(
    app: &App,
    name: &str,
    password: &str,
    addr: IpAddr,
) -> Result<(String, Secret, String), ApiError> {
    let user = check_password(app, name, password, addr).await?;
    let (sid, csrf) = start_session(app, Some(&user)).await?;
    let who = principal_of(active_user(app, &user)?);
    audit::record(app, &who, "signin", &user, "password (web)");
    app.store.durable().await?;
    Ok((user, sid, csrf))
}

/// The break-glass sign-in: the admin token starts an admin session.
pub async fn admin_session(app: &App, token: &str) -> Result<(Secret, String), ApiError> {
    if !hash_eq(&hash(token.trim()), &app.admin_hash) {
        return Err(ApiError::Unauthenticated(
            "wrong admin token: it is in the control node's admin.token file".into(),
        ));
    }
    let (sid, csrf) = start_session(app, None).await?;
    info!("signed in with the admin token (web)");
    audit::record(app, &Principal::Admin, "signin", "admin token", "web");
    app.store.durable().await?;
    Ok((sid, csrf))
}

/// Ties an admin-token session to the token it was started with.
fn admin_mark(app: &App) -> String {
    hash(&format!("session:{}", app.admin_hash))
}

/// The session behind a cookie, if it is still good: known, not idle past
/// `session_idle_secs`, younger than `session_max_secs`, its user active.
pub fn session(app: &App, sid: &str) -> Option<SessionInfo> {
    let key = hash(sid);
    let s = app.store.get_session(&key).ok()??;
    let now = app.clock.now();
    let idle = app.cfg.session_idle_secs.saturating_mul(1000);
    let max = app.cfg.session_max_secs.saturating_mul(1000);
    if now.saturating_sub(s.last_seen_ms) > idle || now.saturating_sub(s.created_ms) > max {
        let _ = app.store.remove_session(&key);
        return None;
    }
    let principal = if s.user.is_empty() {
        if !hash_eq(&s.admin_mark, &admin_mark(app)) {
            return None;
        }
        Principal::Admin
    } else {
        principal_of(active_user(app, &s.user).ok()?)
    };
    if now.saturating_sub(s.last_seen_ms) >= TOUCH_MS {
        let mut t = s.clone();
        t.last_seen_ms = now;
        let _ = app.store.put_session(&key, &t);
        if !s.user.is_empty() {
            touch_user(app, &s.user, now);
        }
    }
    Some(SessionInfo {
        principal,
        csrf: s.csrf,
    })
}

/// Ends a session: the cookie stops working at once, wherever it was copied.
pub async fn end_session(app: &App, sid: &str) {
    if app.store.remove_session(&hash(sid)).is_ok() {
        let _ = app.store.durable().await;
    }
}

/// Ends every session and API token of a user (disabled or removed).
pub(super) fn end_everything_of(app: &App, name: &str) -> Result<(), ApiError> {
    app.store.remove_sessions(|s| s.user == name)?;
    for (key, t) in app.store.list_api_tokens()? {
        if t.user == name {
            app.store.remove_api_token(&key)?;
        }
    }
    Ok(())
}

/// The CLI's sign-in with a password: a new API token for the user.
pub async fn login(
    app: &App,
    name: &str,
    password: &str,
    addr: IpAddr,
    token_name: &str,
) -> Result<(view::ApiToken, Secret), ApiError> {
    let user = check_password(app, name, password, addr).await?;
    let u = principal_of(active_user(app, &user)?);
    audit::record(app, &u, "signin", &user, "password (CLI)");
    create_token(app, &u, token_name, None).await
}

/// A one-time code a signed-in user reads on their account page and gives
/// `kha login --web` (how a GitHub-only user signs the CLI in).
pub fn cli_code(app: &App, who: &Principal) -> Result<String, ApiError> {
    let Some(u) = who.user() else {
        return Err(ApiError::Unauthenticated(
            "sign in as a user first: the code signs the CLI in as you".into(),
        ));
    };
    // No 0/O, 1/I/L: read from a screen and typed.
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let mut code: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    code.insert(4, '-');
    let now = app.clock.now();
    let mut codes = app.auth.codes.lock().unwrap_or_else(|e| e.into_inner());
    // One live code per user: a new one replaces the last.
    codes.retain(|_, (who, exp)| *exp > now && *who != u.name);
    codes.insert(code.clone(), (u.name.clone(), now + CODE_MS));
    Ok(code)
}

/// Exchanges a `cli_code` (once, within ten minutes) for an API token.
pub async fn redeem_cli_code(
    app: &App,
    code: &str,
    token_name: &str,
) -> Result<(view::ApiToken, Secret), ApiError> {
    let code = code.trim().to_ascii_uppercase();
    let now = app.clock.now();
    let found = {
        let mut codes = app.auth.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.remove(&code)
    };
    let name = match found {
        Some((name, exp)) if exp > now => name,
        _ => {
            return Err(ApiError::Unauthenticated(
                "unknown or expired code: make a new one on your account page (codes last 10 minutes and work once)".into(),
            ))
        }
    };
    let u = principal_of(active_user(app, &name)?);
    audit::record(app, &u, "signin", &name, "code from the web UI (CLI)");
    create_token(app, &u, token_name, None).await
}

/// A new API token for the caller (a user); shown once.
pub async fn create_token(
    app: &App,
    who: &Principal,
    name: &str,
    expires_ms: Option<Millis>,
) -> Result<(view::ApiToken, Secret), ApiError> {
    let Some(u) = who.user() else {
        return Err(match who {
            Principal::Admin => ApiError::Invalid(
                "the admin token cannot make API tokens: sign in as a user".into(),
            ),
            _ => ApiError::Unauthenticated("sign in to create an API token".into()),
        });
    };
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "a token needs a name of 1 to 100 printable characters".into(),
        ));
    }
    let now = app.clock.now();
    if let Some(e) = expires_ms.filter(|&e| e > 0 && e <= now) {
        return Err(ApiError::Invalid(format!(
            "the expiry {} is in the past",
            kha_core::time::iso8601(e)
        )));
    }
    let token = new_token(TOKEN_PREFIX);
    let t = records::ApiToken {
        id: crate::auth::new_id("tok_"),
        user: u.name.clone(),
        name: name.to_string(),
        created_ms: now,
        expires_ms: expires_ms.unwrap_or(0),
        last_used_ms: 0,
    };
    app.store.put_api_token(&hash(token.expose()), &t)?;
    audit::record(app, who, "token.create", &t.id, name);
    app.store.durable().await?;
    Ok((token_view(t), token))
}

fn token_view(t: records::ApiToken) -> view::ApiToken {
    view::ApiToken {
        id: t.id,
        user: t.user,
        name: t.name,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        last_used_ms: t.last_used_ms,
    }
}

/// The caller's tokens (an admin's list has everyone's), newest first.
pub fn list_tokens(app: &App, who: &Principal) -> Result<Vec<view::ApiToken>, ApiError> {
    let mine = who.user().map(|u| u.name.clone());
    if mine.is_none() && !who.is_admin() {
        return Err(ApiError::Unauthenticated(
            "sign in to list your API tokens".into(),
        ));
    }
    let all = who.is_admin();
    let mut out: Vec<view::ApiToken> = app
        .store
        .list_api_tokens()?
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| all || Some(&t.user) == mine.as_ref())
        .map(token_view)
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.created_ms));
    Ok(out)
}

/// Revokes a token: one's own, or anyone's for an admin.
pub async fn revoke_token(app: &App, who: &Principal, id: &str) -> Result<(), ApiError> {
    let mine = who.user().map(|u| u.name.as_str());
    let found = app
        .store
        .list_api_tokens()?
        .into_iter()
        .find(|(_, t)| t.id == id && (who.is_admin() || Some(t.user.as_str()) == mine));
    let Some((key, t)) = found else {
        return Err(ApiError::NotFound(format!(
            "no API token {id} of yours (see `kha token list`)"
        )));
    };
    app.store.remove_api_token(&key)?;
    audit::record(
        app,
        who,
        "token.revoke",
        &t.id,
        &format!("{} of {}", t.name, t.user),
    );
    app.store.durable().await?;
    Ok(())
}

/// While nobody has an account: a one-time link's token that creates the
/// first admin (a new one each call; only the newest works).
pub fn setup_token(app: &App) -> Result<Option<Secret>, ApiError> {
    if app.store.has_users()? {
        return Ok(None);
    }
    let t = new_token("khasetup_");
    app.store.meta_set(SETUP_KEY, hash(t.expose()).as_bytes())?;
    Ok(Some(t))
}

const SETUP_KEY: &str = "setup_token_sha256";

/// Whether `token` is the current setup token (and nobody has an account).
pub fn setup_valid(app: &App, token: &str) -> Result<bool, ApiError> {
    if app.store.has_users()? {
        return Ok(false);
    }
    let stored = app.store.meta_get(SETUP_KEY)?.unwrap_or_default();
    Ok(!stored.is_empty() && hash_eq(&hash(token), &String::from_utf8_lossy(&stored)))
}

/// Creates the first admin with the setup token; the token dies with it.
pub async fn setup(app: &App, token: &str, name: &str, password: &str) -> Result<String, ApiError> {
    if !setup_valid(app, token)? {
        return Err(ApiError::NotFound(
            "this setup link is used or out of date: restart kha-control for a new one, or sign in"
                .into(),
        ));
    }
    let new = users::NewUser {
        name: name.to_string(),
        password: password.to_string(),
        role: Role::Admin,
        email: String::new(),
    };
    if password.is_empty() {
        return Err(ApiError::Invalid("choose a password".into()));
    }
    let (u, _) = users::create(app, &Principal::Admin, new, "setup link").await?;
    app.store.meta_set(SETUP_KEY, b"")?;
    app.store.durable().await?;
    Ok(u.name)
}

/// Who GitHub says signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubIdentity {
    pub id: u64,
    pub login: String,
    pub name: String,
    /// The primary address if GitHub verified it, else the first verified
    /// one ("" if none).
    pub email: String,
    /// Organisation logins (read only when `github.orgs` is configured).
    pub orgs: Vec<String>,
}

/// The kha user of a GitHub identity: found by GitHub's numeric id (logins
/// can be renamed), else created with `github.default_role` — when
/// `github.orgs` is set, only for members of one of them.
pub async fn github_user(app: &App, gh: &GithubIdentity) -> Result<String, ApiError> {
    let Some(cfg) = app.cfg.github.as_ref() else {
        return Err(ApiError::NotFound(
            "GitHub sign-in is not configured".into(),
        ));
    };
    if gh.id == 0 || gh.login.is_empty() {
        return Err(ApiError::Invalid("GitHub did not say who signed in".into()));
    }
    // Checked at every sign-in, not only the first: leaving the
    // organisation ends access.
    if !cfg.orgs.is_empty()
        && !gh
            .orgs
            .iter()
            .any(|o| cfg.orgs.iter().any(|c| c.eq_ignore_ascii_case(o)))
    {
        return Err(ApiError::Denied(format!(
            "GitHub sign-in here is for members of {}; {} is not a member of any (or has not granted this server read:org)",
            cfg.orgs.join(", "),
            gh.login
        )));
    }
    if let Some(u) = app.store.user_by_github_id(gh.id)? {
        if u.disabled {
            return Err(ApiError::Denied(format!(
                "user {} is disabled: ask an admin",
                u.name
            )));
        }
        app.store.update_user(&u.name, |mut r| {
            (r.github_login != gh.login).then(|| {
                r.github_login = gh.login.clone();
                r
            })
        })?;
        audit::record(
            app,
            &principal_of(u.clone()),
            "signin",
            &u.name,
            &format!("github:{}", gh.login),
        );
        info!(user = %u.name, github = %gh.login, "signed in with GitHub");
        app.store.durable().await?;
        return Ok(u.name);
    }
    // The GitHub login if free, else login-github, login-github2, …
    let base = users::sanitize_name(&gh.login);
    let mut name = base.clone();
    let mut n = 1;
    while app.store.get_user(&name)?.is_some() {
        n += 1;
        name = if n == 2 {
            format!("{base}-github")
        } else {
            format!("{base}-github{}", n - 1)
        };
    }
    let rec = records::User {
        name: name.clone(),
        email: gh.email.clone(),
        password_hash: String::new(),
        github_id: gh.id,
        github_login: gh.login.clone(),
        role: cfg.default_role,
        roles: Default::default(),
        stars: Default::default(),
        disabled: false,
        created_ms: app.clock.now(),
        last_seen_ms: 0,
    };
    if !app.store.add_user(&rec)? {
        return Err(ApiError::Exists(format!(
            "user {name} was created at the same moment; sign in again"
        )));
    }
    info!(user = %name, github = %gh.login, "first sign-in with GitHub: user created");
    let who = principal_of(rec);
    audit::record(
        app,
        &who,
        "user.add",
        &name,
        &format!(
            "first GitHub sign-in as {}, role {}",
            gh.login, cfg.default_role
        ),
    );
    app.store.durable().await?;
    Ok(name)
}
