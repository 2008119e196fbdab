//! `kha build …`: trigger (and wait for), list, show, restart and cancel a
//! project's builds, and the build table with one row per job.

use crate::output::{self, ago, duration, now_ms, print_json, short, table};
use crate::wire;
use crate::{Ctx, Failure};
use anyhow::anyhow;
use clap::{Args, Subcommand};
use kha_core::view::{self, Build, BuildPage};
use kha_core::BuildState;
use kha_proto::admin::{GetBuildRequest, ListBuildsRequest, TriggerBuildRequest};

#[derive(Args)]
pub struct Paging {
    #[arg(long, default_value_t = 1)]
    page: u32,
    #[arg(long, default_value_t = 25)]
    per_page: u32,
}

#[derive(Subcommand)]
pub enum BuildCmd {
    /// Build a branch's head (or a given commit).
    Trigger {
        project: String,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        commit: Option<String>,
        /// Build again even if this commit was built already.
        #[arg(long)]
        force: bool,
        /// Wait for the build to finish; exit 10 unless it passed.
        #[arg(long)]
        wait: bool,
    },
    /// A project's builds, newest first.
    List {
        project: String,
        /// Only this branch's builds.
        #[arg(long)]
        branch: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    Show {
        id: u64,
    },
    /// Run a finished build's jobs again.
    Restart {
        id: u64,
    },
    Cancel {
        id: u64,
    },
    /// Run a build's waiting jobs next: ahead of its project's other jobs
    /// and of the other projects' turns.
    Prioritize {
        id: u64,
    },
}

pub async fn run(ctx: &mut Ctx, c: BuildCmd) -> Result<u8, Failure> {
    match c {
        BuildCmd::Trigger {
            project,
            branch,
            commit,
            force,
            wait,
        } => {
            return trigger(
                ctx,
                TriggerBuildRequest {
                    project,
                    branch: branch.unwrap_or_default(),
                    commit: commit.unwrap_or_default(),
                    force,
                },
                wait,
            )
            .await
        }
        BuildCmd::List {
            project,
            branch,
            paging,
        } => {
            let r = ctx.req(ListBuildsRequest {
                project,
                page: paging.page,
                per_page: paging.per_page,
                branch: branch.unwrap_or_default(),
            });
            let l = ctx.client.list_builds(r).await?.into_inner();
            let l = BuildPage {
                builds: wire::builds(l.builds)?,
                total: l.total,
                page: paging.page,
                per_page: paging.per_page,
            };
            if ctx.json {
                print_json(&l);
            } else {
                table(
                    &[
                        "BUILD", "STATE", "BRANCH", "COMMIT", "JOBS", "CREATED", "MESSAGE",
                    ],
                    l.builds
                        .iter()
                        .map(|b| {
                            vec![
                                b.id.to_string(),
                                b.state.to_string(),
                                branch_column(b),
                                short(&b.commit),
                                b.jobs.len().to_string(),
                                ago(b.created_ms),
                                b.message.chars().take(50).collect(),
                            ]
                        })
                        .collect(),
                );
                let pages = l.total.div_ceil(paging.per_page.max(1) as u64).max(1);
                out!("page {} of {pages} ({} builds)", paging.page, l.total);
            }
        }
        BuildCmd::Show { id } => {
            let r = ctx.req(GetBuildRequest { build_id: id });
            let b = wire::build(ctx.client.get_build(r).await?.into_inner())?;
            if ctx.json {
                print_json(&b)
            } else {
                print_build(&b)
            }
        }
        BuildCmd::Restart { id } => {
            let r = ctx.req(GetBuildRequest { build_id: id });
            let b = wire::build(ctx.client.restart_build(r).await?.into_inner())?;
            if ctx.json {
                print_json(&b)
            } else {
                out!("build {} restarted: {}", b.id, b.state)
            }
        }
        BuildCmd::Prioritize { id } => {
            let r = ctx.req(GetBuildRequest { build_id: id });
            let b = wire::build(ctx.client.prioritize_build(r).await?.into_inner())?;
            if ctx.json {
                print_json(&b)
            } else {
                out!("build {} runs next ({})", b.id, b.state)
            }
        }
        BuildCmd::Cancel { id } => {
            let r = ctx.req(GetBuildRequest { build_id: id });
            let b = wire::build(ctx.client.cancel_build(r).await?.into_inner())?;
            if ctx.json {
                print_json(&b)
            } else {
                out!("build {}: cancel requested ({})", b.id, b.state)
            }
        }
    }
    Ok(0)
}

/// `build trigger`, and with `wait` waits on the event stream until the
/// build is final: exit 10 unless it passed.
async fn trigger(ctx: &mut Ctx, req: TriggerBuildRequest, wait: bool) -> Result<u8, Failure> {
    let r = ctx.req(req);
    let t = ctx.client.trigger_build(r).await?.into_inner();
    let mut b = wire::build(
        t.build
            .ok_or_else(|| anyhow!("the control node sent no build"))?,
    )?;
    if !ctx.json {
        if t.created {
            out!(
                "build {} created: {} job(s), {}",
                b.id,
                b.jobs.len(),
                b.state
            );
        } else {
            out!(
                "build {} already built this commit ({}); use --force to build it again",
                b.id,
                b.state
            );
        }
    }
    if wait && !b.state.is_final() {
        b = crate::events::wait_build(ctx, b.id).await?;
    }
    if ctx.json {
        print_json(&output::Triggered {
            build: &b,
            created: t.created,
        });
    } else if wait {
        print_build(&b);
    }
    if wait && b.state != BuildState::Passed {
        return Ok(10);
    }
    Ok(0)
}

/// A build's heading, message, error and warnings, then a table of its
/// jobs.
fn print_build(b: &Build) {
    out!(
        "build {}  {}  {}@{} ({})",
        b.id,
        b.state,
        b.project,
        branch_column(b),
        short(&b.commit)
    );
    if !b.message.is_empty() {
        out!("  {}", b.message);
    }
    if !b.author.is_empty() {
        out!("  by {}", b.author);
    }
    if !b.error.is_empty() {
        out!("  error: {}", b.error);
    }
    for w in &b.warnings {
        out!("  warning: {w}");
    }
    // Where its waiting jobs stand in the queue.
    if let Some(j) = b.jobs.iter().find(|j| j.state.is_pending()) {
        out!("  priority: {}", j.priority);
    }
    const HEAD: [&str; 7] = ["JOB", "ID", "STATE", "MATRIX", "BUILDER", "TIME", "DETAIL"];
    if b.stages.is_empty() {
        table(&HEAD, b.jobs.iter().map(|j| job_row(b, j)).collect());
    } else {
        // One table per stage, in the order they run, with the stage's state.
        for (name, jobs) in by_stage(b) {
            out!("");
            out!("stage {name}: {}", stage_state(b, &jobs));
            table(&HEAD, jobs.iter().map(|j| job_row(b, j)).collect());
        }
    }
    let earlier: Vec<String> = b
        .jobs
        .iter()
        .flat_map(|j| {
            j.earlier_logs.iter().map(move |a| {
                format!(
                    "  job {}.{} attempt {}: {} bytes (kha log {} --attempt {})",
                    b.id, j.number, a.attempt, a.bytes, j.id, a.attempt
                )
            })
        })
        .collect();
    if !earlier.is_empty() {
        out!("");
        out!("logs of earlier attempts:");
        for line in earlier {
            out!("{line}");
        }
    }
    if !b.deliveries.is_empty() {
        out!("");
        table(
            &["NOTIFY", "TO", "EVENT", "STATE", "TRIES", "ANSWER"],
            b.deliveries
                .iter()
                .map(|d| {
                    let mut answer = d.answer.lines().next().unwrap_or("").to_string();
                    if d.state == "retrying" && d.next_ms > 0 {
                        let secs = d.next_ms.saturating_sub(now_ms()).div_ceil(1000);
                        answer = format!("{answer} (again in {secs} s)");
                    }
                    vec![
                        d.channel.clone(),
                        d.target.clone(),
                        d.event.clone(),
                        d.state.clone(),
                        d.attempts.to_string(),
                        answer,
                    ]
                })
                .collect(),
        );
    }
}

/// A pull request build is shown as such, with the branch it targets.
fn branch_column(b: &kha_core::view::Build) -> String {
    if b.pr_number > 0 {
        format!("PR #{} ({})", b.pr_number, b.branch)
    } else {
        b.branch.clone()
    }
}

/// One line of a build's job table.
fn job_row(b: &Build, j: &view::Job) -> Vec<String> {
    let mut env = if j.matrix.is_empty() {
        j.env.join(" ")
    } else {
        j.matrix
            .iter()
            .map(view::MatrixValue::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !j.name.is_empty() {
        env = format!("{} {env}", j.name);
    }
    // Grouped by stage when the build lists its stages.
    if !j.stage.is_empty() && b.stages.is_empty() {
        env = format!("[{}] {env}", j.stage);
    }
    if j.allow_failure {
        env.push_str(" (allowed to fail)");
    }
    vec![
        format!("{}.{}", b.id, j.number),
        j.id.to_string(),
        j.state.to_string(),
        env.trim().to_string(),
        if j.builder.is_empty() {
            "-".into()
        } else {
            j.builder.clone()
        },
        duration(
            j.started_ms,
            if j.finished_ms > 0 {
                j.finished_ms
            } else {
                now_ms()
            },
        ),
        j.detail.clone(),
    ]
}

/// A build's jobs grouped by stage, in the build's stage order (a job of a
/// stage the build does not list, which kha never writes, comes last).
fn by_stage(b: &Build) -> Vec<(String, Vec<&view::Job>)> {
    let mut groups: Vec<(String, Vec<&view::Job>)> =
        b.stages.iter().map(|s| (s.clone(), vec![])).collect();
    for j in &b.jobs {
        let i = kha_core::stages::stage_index(&b.stages, &j.stage);
        match groups.get_mut(i) {
            Some(g) => g.1.push(j),
            None => groups.push((j.stage.clone(), vec![j])),
        }
    }
    groups.retain(|g| !g.1.is_empty());
    groups
}

/// A stage's state as people read it.
fn stage_state(b: &Build, jobs: &[&view::Job]) -> &'static str {
    let states: Vec<_> = jobs.iter().map(|j| (j.state, j.allow_failure)).collect();
    kha_core::stages::stage_state(&states, b.fast_finish)
}
