//! `kha token …`: a signed-in user's own API tokens (for scripts and other
//! machines): create (shown once), list, revoke. An admin's list shows
//! everyone's.

use crate::output::{ago, expiry, now_ms, print_json, table};
use crate::{Ctx, Failure};
use clap::Subcommand;
use kha_core::view;
use kha_proto::admin::{CreateTokenRequest, ListTokensRequest, RevokeTokenRequest};
use serde::Serialize;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make a token; it is printed once.
    Create {
        name: String,
        /// When it stops working: a span (30d, 12h, 45m) or a UTC date
        /// (2026-12-31, from the start of that day). Default: never.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Your tokens (an admin: everyone's), newest first.
    List,
    /// Revoke a token by its id (see `list`).
    Revoke { id: String },
}

#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    info: &'a view::ApiToken,
    token: &'a str,
}

pub async fn run(ctx: &mut Ctx, c: TokenCmd) -> Result<u8, Failure> {
    match c {
        TokenCmd::Create { name, expires } => {
            let expires_ms = match expires {
                Some(e) => kha_core::time::parse_expiry(&e, now_ms()).map_err(|m| Failure(2, m))?,
                None => 0,
            };
            let r = ctx.req(CreateTokenRequest { name, expires_ms });
            let t = ctx.client.create_token(r).await?.into_inner();
            let info: view::ApiToken = t
                .info
                .ok_or_else(|| Failure(1, "the control node answered no token".into()))?
                .into();
            if ctx.json {
                print_json(&Created {
                    info: &info,
                    token: &t.token,
                });
            } else {
                out!(
                    "created token {} ({:?}, expires {})",
                    info.id,
                    info.name,
                    expiry(info.expires_ms)
                );
                out!("token (shown once): {}", t.token);
            }
        }
        TokenCmd::List => {
            let ts: Vec<view::ApiToken> = ctx
                .client
                .list_tokens(ctx.req(ListTokensRequest {}))
                .await?
                .into_inner()
                .tokens
                .into_iter()
                .map(Into::into)
                .collect();
            if ctx.json {
                print_json(&ts);
            } else {
                table(
                    &["ID", "NAME", "USER", "CREATED", "EXPIRES", "LAST USED"],
                    ts.into_iter()
                        .map(|t| {
                            vec![
                                t.id,
                                t.name,
                                t.user,
                                ago(t.created_ms),
                                expiry(t.expires_ms),
                                ago(t.last_used_ms),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TokenCmd::Revoke { id } => {
            ctx.client
                .revoke_token(ctx.req(RevokeTokenRequest { id: id.clone() }))
                .await?;
            if !ctx.json {
                out!("revoked token {id}");
            }
        }
    }
    Ok(0)
}
