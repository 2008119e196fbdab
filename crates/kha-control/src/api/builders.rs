//! Builders (enrol, authenticate, list, drain, revoke) and the enrolment
//! tokens that let new ones join.

use super::{audit, views, ApiError, Principal, Visibility};
use crate::app::App;
use crate::auth::{self, hash, hash_eq};
use crate::store::records;
use kha_core::event::EventKind;
use kha_core::{view, Secret};
use std::net::IpAddr;

/// Every builder (anyone may see who gives capacity); the jobs each runs
/// only where the caller may see their project.
pub fn list(app: &App, who: &Principal) -> Result<Vec<view::Builder>, ApiError> {
    let mut seen = Visibility::new(app, who);
    let mut out = Vec::new();
    for b in app.store.list_builders()? {
        let mut v = views::builder(app, b);
        let mut keep = Vec::with_capacity(v.running_jobs.len());
        for id in v.running_jobs {
            if let Some(j) = app.store.get_job(id)? {
                if seen.project(&j.project)? {
                    keep.push(id);
                }
            }
        }
        v.running_jobs = keep;
        out.push(v);
    }
    Ok(out)
}

/// No new jobs for the builder; it finishes what it runs.
pub async fn drain(app: &App, who: &Principal, id: &str) -> Result<view::Builder, ApiError> {
    who.require_admin()?;
    audit::record(app, who, "builder.drain", id, "");
    let b = update(app, id, EventKind::BuilderDraining, |b| b.draining = true).await?;
    app.sched.set_draining(id, true);
    Ok(views::builder(app, b))
}

/// Revokes the builder's credential: its session ends, its jobs run
/// elsewhere, and it cannot come back.
pub async fn revoke(app: &App, who: &Principal, id: &str) -> Result<view::Builder, ApiError> {
    who.require_admin()?;
    audit::record(app, who, "builder.revoke", id, "");
    let b = update(app, id, EventKind::BuilderRevoked, |b| b.revoked = true).await?;
    app.sched.evict(id, "this builder was revoked by an admin");
    Ok(views::builder(app, b))
}

/// Trusts the builder with encrypted variables (`secure:`), or no longer:
/// only trusted builders are offered jobs that have them.
pub async fn set_trusted(
    app: &App,
    who: &Principal,
    id: &str,
    trusted: bool,
) -> Result<view::Builder, ApiError> {
    who.require_admin()?;
    let doing = if trusted {
        "builder.trust"
    } else {
        "builder.untrust"
    };
    audit::record(app, who, doing, id, "");
    let mut b = app
        .store
        .get_builder(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no builder {id} (see `kha builder list`)")))?;
    b.trusted = trusted;
    app.store.put_builder(&b)?;
    app.store.durable().await?;
    app.sched.set_trusted(id, trusted);
    Ok(views::builder(app, b))
}

/// Changes a builder's record, with its event, and makes both durable.
async fn update(
    app: &App,
    id: &str,
    kind: EventKind,
    f: impl FnOnce(&mut records::Builder),
) -> Result<records::Builder, ApiError> {
    let mut b = app
        .store
        .get_builder(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no builder {id} (see `kha builder list`)")))?;
    f(&mut b);
    app.store
        .put_builder_with_event(&b, kind, app.clock.now())?;
    app.store.durable().await?;
    Ok(b)
}

/// A new enrolment token; the answer is the only place it is ever shown.
pub async fn create_token(
    app: &App,
    who: &Principal,
    description: &str,
) -> Result<view::EnrolmentToken, ApiError> {
    who.require_admin()?;
    let token = auth::new_token("khaet_");
    let rec = records::EnrolmentToken {
        id: auth::new_id("t-"),
        token_sha256: auth::hash(token.expose()),
        description: description.to_string(),
        created_ms: app.clock.now(),
        revoked: false,
    };
    app.store.put_token(&rec)?;
    audit::record(app, who, "builder.token.create", &rec.id, description);
    app.store.durable().await?;
    let mut v = views::token(rec);
    v.token = token.into_inner();
    Ok(v)
}

pub async fn revoke_token(
    app: &App,
    who: &Principal,
    id: &str,
) -> Result<view::EnrolmentToken, ApiError> {
    who.require_admin()?;
    let mut t = app
        .store
        .list_tokens()?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no enrolment token {id} (see `kha builder token list`)"
            ))
        })?;
    t.revoked = true;
    app.store.put_token(&t)?;
    audit::record(app, who, "builder.token.revoke", &t.id, "");
    app.store.durable().await?;
    Ok(views::token(t))
}

pub fn list_tokens(app: &App, who: &Principal) -> Result<Vec<view::EnrolmentToken>, ApiError> {
    who.require_admin()?;
    Ok(app
        .store
        .list_tokens()?
        .into_iter()
        .map(views::token)
        .collect())
}

/// Wrong or revoked enrolment tokens from one address in the sign-in
/// window (15 minutes) after which its next tries are refused before any
/// token is compared. Builders elsewhere, and enrolled builders anywhere
/// (they authenticate with their own secret), are not held up by a flood.
pub const MAX_ENROL_FAILURES_ADDR: usize = 10;

/// Exchanges an enrolment token for a new builder's id and secret (the
/// secret is kept only as a hash). `addr` is the caller's address, which
/// failed tries are counted against.
pub async fn enrol(
    app: &App,
    token: &str,
    name: &str,
    addr: Option<IpAddr>,
) -> Result<(String, Secret), ApiError> {
    let now = app.clock.now();
    let from = addr.map(|a| format!("enrol:{a}"));
    if let (Some(from), Some(addr)) = (&from, addr) {
        app.auth.limited(from, MAX_ENROL_FAILURES_ADDR, now, || {
            format!("too many failed enrolments from {addr}")
        })?;
    }
    let refuse = |why: String| {
        if let Some(from) = &from {
            app.auth.failed(from, now);
        }
        tracing::info!(addr = ?addr, reason = %why, "enrolment refused");
        Err(ApiError::Unauthenticated(why))
    };
    let h = hash(token);
    let tokens = app.store.list_tokens()?;
    let Some(tok) = tokens.iter().find(|t| hash_eq(&t.token_sha256, &h)) else {
        return refuse(
            "unknown enrolment token: ask an admin for one (`kha builder token create`)".into(),
        );
    };
    if tok.revoked {
        return refuse(format!("enrolment token {} was revoked", tok.id));
    }
    let name = match name.trim() {
        "" => "builder",
        n => n,
    };
    let id = auth::new_id("b-");
    let secret = auth::new_token("khab_");
    app.store.put_builder(&records::Builder {
        id: id.clone(),
        name: name.to_string(),
        secret_sha256: hash(secret.expose()),
        revoked: false,
        draining: false,
        labels: vec![],
        slots: 0,
        version: String::new(),
        created_ms: now,
        last_seen_ms: now,
        trusted: false,
    })?;
    app.store.durable().await?;
    tracing::info!(builder_id = %id, token = %tok.id, "builder enrolled");
    Ok((id, secret))
}

/// The builder whose credential (`<id>:<secret>`) this is, unless it is
/// unknown, wrong or revoked.
pub fn authenticate(app: &App, credential: Option<&str>) -> Result<records::Builder, ApiError> {
    let unauthenticated = |m: String| ApiError::Unauthenticated(m);
    let tok = credential.ok_or_else(|| {
        unauthenticated("no builder credential: enrol with `kha-builder --token`".into())
    })?;
    let (id, secret) = tok
        .split_once(':')
        .ok_or_else(|| unauthenticated("malformed builder credential".into()))?;
    let b = app.store.get_builder(id)?.ok_or_else(|| {
        unauthenticated(format!(
            "unknown builder {id}: enrol it again with a new token"
        ))
    })?;
    if !hash_eq(&b.secret_sha256, &hash(secret)) {
        return Err(unauthenticated(format!("wrong secret for builder {id}")));
    }
    if b.revoked {
        return Err(unauthenticated(format!(
            "builder {id} was revoked by an admin: enrol it again with a new token"
        )));
    }
    Ok(b)
}
