//! `kha branch list PROJECT`: a project's branches (and tags) with their
//! head, last build, its state and when they last changed.

use crate::output::{ago, print_json, short, table};
use crate::wire;
use crate::{Ctx, Failure};
use clap::Subcommand;
use kha_proto::admin::ListBranchesRequest;

#[derive(Subcommand)]
pub enum BranchCmd {
    /// Every branch with its head, last build, state and age.
    List { project: String },
}

pub async fn run(ctx: &mut Ctx, c: BranchCmd) -> Result<u8, Failure> {
    let BranchCmd::List { project } = c;
    let r = ctx.req(ListBranchesRequest { project });
    let bs = (ctx.client.list_branches(r).await?.into_inner().branches)
        .into_iter()
        .map(wire::branch)
        .collect::<Result<Vec<_>, _>>()?;
    if ctx.json {
        print_json(&bs);
    } else {
        table(
            &["BRANCH", "HEAD", "LAST BUILD", "STATE", "UPDATED"],
            bs.into_iter()
                .map(|b| {
                    vec![
                        if b.tag {
                            format!("{} (tag)", b.name)
                        } else {
                            b.name
                        },
                        short(&b.head),
                        if b.last_build_id == 0 {
                            "-".into()
                        } else {
                            b.last_build_id.to_string()
                        },
                        b.state.to_string(),
                        ago(b.updated_ms),
                    ]
                })
                .collect(),
        );
    }
    Ok(0)
}
