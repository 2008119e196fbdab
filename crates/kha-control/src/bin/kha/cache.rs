//! `kha cache list PROJECT` and `kha cache clear PROJECT [--branch B]`: a
//! project's build-cache archives, and removing them (Travis's `travis
//! cache` and `travis cache --delete`).

use crate::output::{ago, print_json, table};
use crate::{Ctx, Failure};
use clap::Subcommand;
use kha_proto::admin::{ClearCachesRequest, ListCachesRequest};
use serde::Serialize;

#[derive(Subcommand)]
pub enum CacheCmd {
    /// Every archive: the branch it was stored by, the jobs it is for,
    /// its size, when it was last used.
    List { project: String },
    /// Remove the project's archives (maintainers).
    Clear {
        project: String,
        /// Only this branch's ("PR.N" for a pull request's).
        #[arg(long)]
        branch: Option<String>,
    },
}

#[derive(Serialize)]
struct Entry {
    branch: String,
    slug: String,
    size: u64,
    created_ms: u64,
    used_ms: u64,
}

/// Bytes for people: `512 B`, `3.4 MiB`.
fn size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub async fn run(ctx: &mut Ctx, c: CacheCmd) -> Result<u8, Failure> {
    match c {
        CacheCmd::List { project } => {
            let r = ctx.req(ListCachesRequest { project });
            let caches = ctx.client.list_caches(r).await?.into_inner().caches;
            let entries: Vec<Entry> = caches
                .into_iter()
                .map(|c| Entry {
                    branch: c.branch,
                    slug: c.slug,
                    size: c.size,
                    created_ms: c.created_ms,
                    used_ms: c.used_ms,
                })
                .collect();
            if ctx.json {
                print_json(&entries);
            } else {
                table(
                    &["BRANCH", "SLUG", "SIZE", "LAST USED"],
                    entries
                        .into_iter()
                        .map(|e| vec![e.branch, e.slug, size(e.size), ago(e.used_ms)])
                        .collect(),
                );
            }
        }
        CacheCmd::Clear { project, branch } => {
            let r = ctx.req(ClearCachesRequest {
                project: project.clone(),
                branch: branch.clone().unwrap_or_default(),
            });
            let done = ctx.client.clear_caches(r).await?.into_inner();
            if ctx.json {
                print_json(&serde_json::json!({"removed": done.removed, "bytes": done.bytes}));
            } else {
                let whose = branch.map_or(String::new(), |b| format!(" of branch {b}"));
                println!(
                    "removed {} cache archive(s){whose} of {project} ({})",
                    done.removed,
                    size(done.bytes)
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (5 << 20, "5.0 MiB"),
        ] {
            assert_eq!(super::size(n), want);
        }
    }
}
