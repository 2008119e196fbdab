//! Conversions for people: roles, users, "who am I", API tokens, project
//! members and the audit log, between the admin API's wire types and
//! kha-core's views, both ways (the control node encodes, the CLI decodes).
//! An unspecified role or caller kind is an error, never a default.

use crate::admin as w;
use crate::views::WireError;
use kha_core::view::{self, Role};

impl From<Role> for w::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::None => w::Role::None,
            Role::Viewer => w::Role::Viewer,
            Role::Maintainer => w::Role::Maintainer,
            Role::Admin => w::Role::Admin,
        }
    }
}

impl TryFrom<w::Role> for Role {
    type Error = WireError;
    fn try_from(r: w::Role) -> Result<Self, WireError> {
        match r {
            w::Role::None => Ok(Role::None),
            w::Role::Viewer => Ok(Role::Viewer),
            w::Role::Maintainer => Ok(Role::Maintainer),
            w::Role::Admin => Ok(Role::Admin),
            w::Role::Unspecified => Err(WireError("an unspecified role".into())),
        }
    }
}

/// A role as a request carries it: unspecified is refused with `field`
/// named (the control node's side of [`Role::try_from`]).
pub fn role_arg(r: i32, field: &str) -> Result<Role, String> {
    w::Role::try_from(r)
        .ok()
        .and_then(|r| Role::try_from(r).ok())
        .ok_or_else(|| format!("{field}: give a role (none, viewer, maintainer or admin)"))
}

impl From<view::ProjectRole> for w::ProjectRole {
    fn from(r: view::ProjectRole) -> Self {
        let mut out = w::ProjectRole {
            project: r.project,
            role: 0,
        };
        out.set_role(r.role.into());
        out
    }
}

impl TryFrom<w::ProjectRole> for view::ProjectRole {
    type Error = WireError;
    fn try_from(r: w::ProjectRole) -> Result<Self, WireError> {
        Ok(view::ProjectRole {
            role: r.role().try_into()?,
            project: r.project,
        })
    }
}

fn roles_from(rs: Vec<w::ProjectRole>) -> Result<Vec<view::ProjectRole>, WireError> {
    rs.into_iter().map(TryInto::try_into).collect()
}

/// A member of a project: the service layer lists them as
/// [`view::ProjectRole`]s whose `project` names the user.
impl From<view::ProjectRole> for w::Member {
    fn from(r: view::ProjectRole) -> Self {
        let mut out = w::Member {
            user: r.project,
            role: 0,
        };
        out.set_role(r.role.into());
        out
    }
}

impl TryFrom<w::Member> for view::ProjectRole {
    type Error = WireError;
    fn try_from(m: w::Member) -> Result<Self, WireError> {
        Ok(view::ProjectRole {
            role: m.role().try_into()?,
            project: m.user,
        })
    }
}

impl From<view::User> for w::User {
    fn from(u: view::User) -> Self {
        let mut out = w::User {
            name: u.name,
            email: u.email,
            github_login: u.github_login,
            role: 0,
            roles: u.roles.into_iter().map(Into::into).collect(),
            disabled: u.disabled,
            created_ms: u.created_ms,
            last_seen_ms: u.last_seen_ms,
            stars: u.stars,
            has_password: u.has_password,
        };
        out.set_role(u.role.into());
        out
    }
}

impl TryFrom<w::User> for view::User {
    type Error = WireError;
    fn try_from(u: w::User) -> Result<Self, WireError> {
        Ok(view::User {
            role: u.role().try_into()?,
            roles: roles_from(u.roles)?,
            name: u.name,
            email: u.email,
            github_login: u.github_login,
            disabled: u.disabled,
            created_ms: u.created_ms,
            last_seen_ms: u.last_seen_ms,
            stars: u.stars,
            has_password: u.has_password,
        })
    }
}

/// `view::Whoami::kind`'s words and the wire's enum.
const KINDS: [(&str, w::CallerKind); 4] = [
    ("user", w::CallerKind::User),
    ("admin token", w::CallerKind::AdminToken),
    ("anonymous", w::CallerKind::Anonymous),
    ("builder", w::CallerKind::Builder),
];

impl From<view::Whoami> for w::Whoami {
    fn from(v: view::Whoami) -> Self {
        let kind = KINDS
            .iter()
            .find(|(k, _)| *k == v.kind)
            .map_or(w::CallerKind::Unspecified, |(_, k)| *k);
        let mut out = w::Whoami {
            name: v.name,
            kind: 0,
            role: 0,
            roles: v.roles.into_iter().map(Into::into).collect(),
            stars: v.stars,
            web_url: v.web_url,
        };
        out.set_kind(kind);
        out.set_role(v.role.into());
        out
    }
}

impl TryFrom<w::Whoami> for view::Whoami {
    type Error = WireError;
    fn try_from(v: w::Whoami) -> Result<Self, WireError> {
        let kind = KINDS
            .iter()
            .find(|(_, k)| *k == v.kind())
            .map(|(k, _)| k.to_string())
            .ok_or_else(|| WireError("an unspecified caller kind".into()))?;
        Ok(view::Whoami {
            kind,
            role: v.role().try_into()?,
            roles: roles_from(v.roles)?,
            name: v.name,
            stars: v.stars,
            web_url: v.web_url,
        })
    }
}

impl From<view::ApiToken> for w::ApiToken {
    fn from(t: view::ApiToken) -> Self {
        w::ApiToken {
            id: t.id,
            user: t.user,
            name: t.name,
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            last_used_ms: t.last_used_ms,
        }
    }
}

impl From<w::ApiToken> for view::ApiToken {
    fn from(t: w::ApiToken) -> Self {
        view::ApiToken {
            id: t.id,
            user: t.user,
            name: t.name,
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            last_used_ms: t.last_used_ms,
        }
    }
}

impl From<view::AuditEntry> for w::AuditEntry {
    fn from(e: view::AuditEntry) -> Self {
        w::AuditEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        }
    }
}

impl From<w::AuditEntry> for view::AuditEntry {
    fn from(e: w::AuditEntry) -> Self {
        view::AuditEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        }
    }
}

impl From<view::AuditPage> for w::AuditPage {
    fn from(p: view::AuditPage) -> Self {
        w::AuditPage {
            entries: p.entries.into_iter().map(Into::into).collect(),
            total: p.total,
            page: p.page,
            per_page: p.per_page,
        }
    }
}

impl From<w::AuditPage> for view::AuditPage {
    fn from(p: w::AuditPage) -> Self {
        view::AuditPage {
            entries: p.entries.into_iter().map(Into::into).collect(),
            total: p.total,
            page: p.page,
            per_page: p.per_page,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<view::ProjectRole> {
        vec![
            view::ProjectRole {
                project: "p".into(),
                role: Role::Maintainer,
            },
            view::ProjectRole {
                project: "q".into(),
                role: Role::None,
            },
        ]
    }

    #[test]
    fn people_round_trip() {
        let u = view::User {
            name: "alice".into(),
            email: "a@example.com".into(),
            github_login: "Alice".into(),
            role: Role::Viewer,
            roles: roles(),
            disabled: true,
            created_ms: 1,
            last_seen_ms: 2,
            stars: vec!["p".into()],
            has_password: true,
        };
        assert_eq!(view::User::try_from(w::User::from(u.clone())), Ok(u));
        for kind in ["user", "admin token", "anonymous", "builder"] {
            let v = view::Whoami {
                name: "alice".into(),
                kind: kind.into(),
                role: Role::Admin,
                roles: roles(),
                stars: vec!["q".into()],
                web_url: "http://ci.example".into(),
            };
            assert_eq!(view::Whoami::try_from(w::Whoami::from(v.clone())), Ok(v));
        }
        let t = view::ApiToken {
            id: "tok_1".into(),
            user: "alice".into(),
            name: "laptop".into(),
            created_ms: 1,
            expires_ms: 0,
            last_used_ms: 3,
        };
        assert_eq!(view::ApiToken::from(w::ApiToken::from(t.clone())), t);
        let page = view::AuditPage {
            entries: vec![view::AuditEntry {
                seq: 7,
                at_ms: 8,
                actor: "alice".into(),
                action: "build.trigger".into(),
                target: "p#1".into(),
                detail: "master".into(),
            }],
            total: 1,
            page: 1,
            per_page: 25,
        };
        assert_eq!(
            view::AuditPage::from(w::AuditPage::from(page.clone())),
            page
        );
        let m = roles().remove(0);
        let wire = w::Member::from(m.clone());
        assert_eq!(wire.user, "p");
        assert_eq!(view::ProjectRole::try_from(wire), Ok(m));
    }

    #[test]
    fn unspecified_is_refused() {
        let u = w::User::default();
        assert!(view::User::try_from(u).is_err());
        let mut v = w::Whoami::default();
        v.set_role(w::Role::Viewer);
        assert!(view::Whoami::try_from(v).is_err());
        // A kind the CLI does not know is sent as unspecified, never as a guess.
        let v = view::Whoami {
            name: String::new(),
            kind: "robot".into(),
            role: Role::None,
            roles: vec![],
            stars: vec![],
            web_url: String::new(),
        };
        assert_eq!(w::Whoami::from(v).kind(), w::CallerKind::Unspecified);
        assert_eq!(
            role_arg(0, "role").unwrap_err(),
            "role: give a role (none, viewer, maintainer or admin)"
        );
        assert_eq!(role_arg(3, "role"), Ok(Role::Maintainer));
    }
}
