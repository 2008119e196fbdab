//! `kha builder …`: list, drain and revoke builders, and create, list and
//! revoke the enrolment tokens that let new ones join.

use crate::output::{ago, print_json, table};
use crate::wire;
use crate::{Ctx, Failure};
use clap::Subcommand;
use kha_proto::admin::{
    BuilderRequest, CreateEnrolmentTokenRequest, ListBuildersRequest, ListEnrolmentTokensRequest,
    RevokeEnrolmentTokenRequest, SetBuilderTrustedRequest,
};

#[derive(Subcommand)]
pub enum BuilderCmd {
    List,
    /// Stop giving a builder new jobs.
    Drain {
        id: String,
    },
    /// Trust a builder with encrypted variables (`secure:`): jobs that
    /// have them run only on trusted builders.
    Trust {
        id: String,
    },
    /// No longer trust a builder with encrypted variables.
    Untrust {
        id: String,
    },
    /// Revoke a builder's credential; its jobs run elsewhere.
    Revoke {
        id: String,
    },
    /// Enrolment tokens that let builders join.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
pub enum TokenCmd {
    Create {
        #[arg(long, default_value = "")]
        description: String,
    },
    Revoke {
        id: String,
    },
    List,
}

pub async fn run(ctx: &mut Ctx, c: BuilderCmd) -> Result<u8, Failure> {
    match c {
        BuilderCmd::List => {
            let r = ctx.req(ListBuildersRequest {});
            let bs = (ctx.client.list_builders(r).await?.into_inner().builders)
                .into_iter()
                .map(wire::builder)
                .collect::<Result<Vec<_>, _>>()?;
            if ctx.json {
                print_json(&bs);
            } else {
                table(
                    &[
                        "ID", "NAME", "STATE", "TRUSTED", "SLOTS", "RUNNING", "SEEN", "LABELS",
                    ],
                    bs.iter()
                        .map(|b| {
                            vec![
                                b.id.clone(),
                                b.name.clone(),
                                b.state.to_string(),
                                if b.trusted { "yes" } else { "no" }.to_string(),
                                b.slots.to_string(),
                                b.running_jobs
                                    .iter()
                                    .map(|j| j.to_string())
                                    .collect::<Vec<_>>()
                                    .join(","),
                                ago(b.last_seen_ms),
                                b.labels.join(","),
                            ]
                        })
                        .collect(),
                );
            }
        }
        BuilderCmd::Drain { id } => {
            let r = ctx.req(BuilderRequest { builder_id: id });
            let b = wire::builder(ctx.client.drain_builder(r).await?.into_inner())?;
            if ctx.json {
                print_json(&b)
            } else {
                out!("builder {} is draining", b.id)
            }
        }
        BuilderCmd::Trust { id } => return trust(ctx, id, true).await,
        BuilderCmd::Untrust { id } => return trust(ctx, id, false).await,
        BuilderCmd::Revoke { id } => {
            let r = ctx.req(BuilderRequest { builder_id: id });
            let b = wire::builder(ctx.client.revoke_builder(r).await?.into_inner())?;
            if ctx.json {
                print_json(&b)
            } else {
                out!("builder {} revoked", b.id)
            }
        }
        BuilderCmd::Token(c) => return token(ctx, c).await,
    }
    Ok(0)
}

async fn token(ctx: &mut Ctx, c: TokenCmd) -> Result<u8, Failure> {
    match c {
        TokenCmd::Create { description } => {
            let r = ctx.req(CreateEnrolmentTokenRequest { description });
            let t = wire::token(ctx.client.create_enrolment_token(r).await?.into_inner());
            if ctx.json {
                print_json(&t);
            } else {
                out!("{}", t.token);
                eprintln!("enrolment token {} created; it is shown only this once.\njoin a builder with: kha-builder --control URL --token TOKEN", t.id);
            }
        }
        TokenCmd::Revoke { id } => {
            let r = ctx.req(RevokeEnrolmentTokenRequest { id });
            let t = ctx.client.revoke_enrolment_token(r).await?.into_inner();
            if !ctx.json {
                out!("enrolment token {} revoked", t.id);
            }
        }
        TokenCmd::List => {
            let r = ctx.req(ListEnrolmentTokensRequest {});
            let ts: Vec<_> = (ctx
                .client
                .list_enrolment_tokens(r)
                .await?
                .into_inner()
                .tokens)
                .into_iter()
                .map(wire::token)
                .collect();
            if ctx.json {
                print_json(&ts);
            } else {
                table(
                    &["ID", "STATE", "CREATED", "DESCRIPTION"],
                    ts.into_iter()
                        .map(|t| {
                            vec![
                                t.id,
                                if t.revoked { "revoked" } else { "active" }.into(),
                                ago(t.created_ms),
                                t.description,
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(0)
}

/// `kha builder trust|untrust ID`.
async fn trust(ctx: &mut Ctx, id: String, trusted: bool) -> Result<u8, Failure> {
    let r = ctx.req(SetBuilderTrustedRequest {
        builder_id: id,
        trusted,
    });
    let b = wire::builder(ctx.client.set_builder_trusted(r).await?.into_inner())?;
    if ctx.json {
        print_json(&b)
    } else if trusted {
        out!("builder {} is trusted with encrypted variables", b.id)
    } else {
        out!(
            "builder {} is no longer trusted with encrypted variables",
            b.id
        )
    }
    Ok(0)
}
