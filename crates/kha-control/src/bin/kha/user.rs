//! `kha user …`: accounts (admins), and one's own password. A password
//! is never an argument (it would show in `ps` and shell history): it comes
//! from the terminal without echo or from standard input, or is generated
//! and shown once.

use crate::output::{ago, print_json, table};
use crate::prompt;
use crate::{Ctx, Failure};
use clap::Subcommand;
use kha_core::view::{self, Role};
use kha_proto::admin::{
    AddUserRequest, GetUserRequest, ListUsersRequest, RemoveUserRequest, SetPasswordRequest,
    SetRoleRequest, SetUserDisabledRequest, WhoamiRequest,
};
use serde::Serialize;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user; without --password-stdin a password is generated and
    /// printed once.
    Add {
        name: String,
        /// Global role: none (public projects only), viewer, maintainer or
        /// admin. Give roles on single projects with `set-role --project`.
        #[arg(long, default_value = "none")]
        role: Role,
        #[arg(long, default_value = "")]
        email: String,
        /// Read the password from standard input (asked twice without echo
        /// on a terminal).
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    Show {
        name: String,
    },
    /// Remove a user; their sessions and tokens stop working at once.
    Remove {
        name: String,
    },
    /// Set a user's global role, or with --project their role on one
    /// project (`none` removes it).
    SetRole {
        name: String,
        role: Role,
        #[arg(long)]
        project: Option<String>,
    },
    /// Stop a user from signing in; their sessions and tokens end.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    /// Change a password (your own without NAME); read like --password-stdin.
    Passwd {
        name: Option<String>,
    },
}

/// `user add`'s answer for `--json`: the password only when generated.
#[derive(Serialize)]
struct Added<'a> {
    #[serde(flatten)]
    user: &'a view::User,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<&'a str>,
}

fn decode(u: Option<kha_proto::admin::User>) -> Result<view::User, Failure> {
    u.ok_or_else(|| Failure(1, "the control node answered no user".into()))?
        .try_into()
        .map_err(|e: kha_proto::views::WireError| Failure(1, e.to_string()))
}

fn roles_text(u: &view::User) -> String {
    if u.roles.is_empty() {
        return "-".into();
    }
    u.roles
        .iter()
        .map(|r| format!("{}:{}", r.project, r.role))
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn run(ctx: &mut Ctx, c: UserCmd) -> Result<u8, Failure> {
    match c {
        UserCmd::Add {
            name,
            role,
            email,
            password_stdin,
        } => {
            let password = if password_stdin {
                prompt::secret(&format!("password for {name}: "), "password", true).await?
            } else {
                String::new()
            };
            let mut r = AddUserRequest {
                name,
                password,
                role: 0,
                email,
            };
            r.set_role(role.into());
            let a = ctx.client.add_user(ctx.req(r)).await?.into_inner();
            let u = decode(a.user)?;
            let generated = (!a.generated_password.is_empty()).then_some(a.generated_password);
            if ctx.json {
                print_json(&Added {
                    user: &u,
                    generated_password: generated.as_deref(),
                });
            } else {
                out!("added user {} (global role {})", u.name, u.role);
                if let Some(p) = generated {
                    out!("password (shown once): {p}");
                }
            }
        }
        UserCmd::List => {
            let us = ctx
                .client
                .list_users(ctx.req(ListUsersRequest {}))
                .await?
                .into_inner()
                .users
                .into_iter()
                .map(Some)
                .map(decode)
                .collect::<Result<Vec<_>, _>>()?;
            if ctx.json {
                print_json(&us);
            } else {
                table(
                    &["NAME", "ROLE", "PROJECT ROLES", "STATE", "SEEN", "EMAIL"],
                    us.iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                u.role.to_string(),
                                roles_text(u),
                                if u.disabled { "disabled" } else { "active" }.into(),
                                ago(u.last_seen_ms),
                                u.email.clone(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        UserCmd::Show { name } => {
            let u = ctx
                .client
                .get_user(ctx.req(GetUserRequest { name }))
                .await?;
            let u = decode(Some(u.into_inner()))?;
            if ctx.json {
                print_json(&u);
            } else {
                out!("name:      {}\nemail:     {}\nrole:      {}\nprojects:  {}\nstate:     {}\nsign-in:   {}\ncreated:   {}\nseen:      {}\nstarred:   {}",
                    u.name,
                    if u.email.is_empty() { "-" } else { &u.email },
                    u.role,
                    roles_text(&u),
                    if u.disabled { "disabled" } else { "active" },
                    match (u.has_password, u.github_login.as_str()) {
                        (true, "") => "password".to_string(),
                        (false, gh) => format!("GitHub ({gh})"),
                        (true, gh) => format!("password, GitHub ({gh})"),
                    },
                    ago(u.created_ms),
                    ago(u.last_seen_ms),
                    if u.stars.is_empty() { "-".to_string() } else { u.stars.join(", ") });
            }
        }
        UserCmd::Remove { name } => {
            let r = ctx.req(RemoveUserRequest { name: name.clone() });
            ctx.client.remove_user(r).await?;
            if !ctx.json {
                out!("removed user {name}");
            }
        }
        UserCmd::SetRole {
            name,
            role,
            project,
        } => {
            let mut r = SetRoleRequest {
                user: name,
                project: project.clone().unwrap_or_default(),
                role: 0,
            };
            r.set_role(role.into());
            let u = decode(Some(ctx.client.set_role(ctx.req(r)).await?.into_inner()))?;
            if ctx.json {
                print_json(&u);
            } else {
                match project {
                    Some(p) if role == Role::None => out!("{} has no role on {p} now", u.name),
                    Some(p) => out!("{} is {} on {p}", u.name, role),
                    None => out!("{}'s global role is {}", u.name, u.role),
                }
            }
        }
        UserCmd::Disable { name } => return set_disabled(ctx, name, true).await,
        UserCmd::Enable { name } => return set_disabled(ctx, name, false).await,
        UserCmd::Passwd { name } => {
            let name = match name {
                Some(n) => n,
                None => {
                    let w = ctx
                        .client
                        .whoami(ctx.req(WhoamiRequest {}))
                        .await?
                        .into_inner();
                    if w.name.is_empty() || w.kind() != kha_proto::admin::CallerKind::User {
                        return Err(Failure(
                            2,
                            "give the user's name: this CLI is not signed in as a user".into(),
                        ));
                    }
                    w.name
                }
            };
            let password =
                prompt::secret(&format!("new password for {name}: "), "password", true).await?;
            let r = ctx.req(SetPasswordRequest {
                user: name.clone(),
                password,
            });
            ctx.client.set_password(r).await?;
            if !ctx.json {
                out!("changed the password of {name}");
            }
        }
    }
    Ok(0)
}

async fn set_disabled(ctx: &mut Ctx, name: String, disabled: bool) -> Result<u8, Failure> {
    let r = ctx.req(SetUserDisabledRequest {
        user: name,
        disabled,
    });
    let u = decode(Some(ctx.client.set_user_disabled(r).await?.into_inner()))?;
    if ctx.json {
        print_json(&u);
    } else if disabled {
        out!("disabled {}: their sessions and tokens have ended", u.name);
    } else {
        out!("enabled {}", u.name);
    }
    Ok(0)
}
