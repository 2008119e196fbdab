//! `kha audit`: who did what, newest first (admins).

use crate::output::{print_json, table, when};
use crate::{Ctx, Failure};
use clap::Args;
use kha_core::view;
use kha_proto::admin::ListAuditRequest;

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long, default_value_t = 1)]
    page: u32,
    #[arg(long, default_value_t = 25)]
    per_page: u32,
}

pub async fn run(ctx: &mut Ctx, a: AuditArgs) -> Result<u8, Failure> {
    let r = ctx.req(ListAuditRequest {
        page: a.page,
        per_page: a.per_page,
    });
    let page: view::AuditPage = ctx.client.list_audit(r).await?.into_inner().into();
    if ctx.json {
        print_json(&page);
        return Ok(0);
    }
    let pages = page.total.div_ceil(u64::from(page.per_page.max(1))).max(1);
    table(
        &["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"],
        page.entries
            .iter()
            .map(|e| {
                vec![
                    when(e.at_ms),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.detail.clone(),
                ]
            })
            .collect(),
    );
    out!(
        "page {} of {pages} ({} entries; --page N for more)",
        page.page,
        page.total
    );
    Ok(0)
}
