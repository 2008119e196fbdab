//! `kha cron add PROJECT BRANCH (--interval I | --cron EXPR)`, `kha cron
//! list [PROJECT]`, `kha cron remove ID`: scheduled builds (Travis's cron).

use crate::output::{print_json, table, when};
use crate::{Ctx, Failure};
use clap::{ArgGroup, Subcommand};
use kha_core::view::Schedule;
use kha_proto::admin::{AddScheduleRequest, ListSchedulesRequest, RemoveScheduleRequest};

#[derive(Subcommand)]
pub enum CronCmd {
    /// Build a branch on a schedule (maintainers): daily, weekly or
    /// monthly (first a minute from now, then one interval after each
    /// run), or at the times of a cron expression (UTC). The build is of
    /// the branch's head, with TRAVIS_EVENT_TYPE=cron, even if that commit
    /// was built already or its message has a skip marker.
    #[command(group(ArgGroup::new("when").required(true).args(["interval", "cron"])))]
    Add {
        project: String,
        branch: String,
        /// daily, weekly or monthly.
        #[arg(long, value_parser = ["daily", "weekly", "monthly"])]
        interval: Option<String>,
        /// Five fields, UTC: minute hour day-of-month month day-of-week
        /// (e.g. "0 3 * * 1-5": 03:00 on weekdays).
        #[arg(long)]
        cron: Option<String>,
        /// Skip a run when the branch had a build other than a cron
        /// build in the last 24 hours.
        #[arg(long)]
        dont_run_if_recent_build_exists: bool,
    },
    /// The schedules of a project, or of every project you see: when each
    /// runs next and what its last run did.
    List { project: Option<String> },
    /// Remove a schedule (maintainers).
    Remove { id: u64 },
}

/// How often: the interval, or the expression.
pub async fn run(ctx: &mut Ctx, c: CronCmd) -> Result<u8, Failure> {
    match c {
        CronCmd::Add {
            project,
            branch,
            interval,
            cron,
            dont_run_if_recent_build_exists,
        } => {
            let r = ctx.req(AddScheduleRequest {
                project,
                branch,
                interval: interval.unwrap_or_default(),
                cron: cron.unwrap_or_default(),
                dont_run_if_recent_build_exists,
            });
            let s: Schedule = ctx.client.add_schedule(r).await?.into_inner().into();
            if ctx.json {
                print_json(&s);
            } else {
                println!(
                    "schedule {}: {} of {}, {}; first run {}",
                    s.id,
                    s.branch,
                    s.project,
                    s.cadence(),
                    when(s.next_run_ms)
                );
            }
        }
        CronCmd::List { project } => {
            let r = ctx.req(ListSchedulesRequest {
                project: project.unwrap_or_default(),
            });
            let all: Vec<Schedule> = ctx
                .client
                .list_schedules(r)
                .await?
                .into_inner()
                .schedules
                .into_iter()
                .map(Into::into)
                .collect();
            if ctx.json {
                print_json(&all);
            } else {
                table(
                    &[
                        "ID", "PROJECT", "BRANCH", "WHEN", "NEXT RUN", "LAST RUN", "OUTCOME",
                    ],
                    all.iter()
                        .map(|s| {
                            let mut how = s.cadence();
                            if s.dont_run_if_recent_build_exists {
                                how.push_str(" (unless built in 24 h)");
                            }
                            vec![
                                s.id.to_string(),
                                s.project.clone(),
                                s.branch.clone(),
                                how,
                                when(s.next_run_ms),
                                when(s.last_run_ms),
                                s.last_outcome.clone(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        CronCmd::Remove { id } => {
            let r = ctx.req(RemoveScheduleRequest { id });
            let s: Schedule = ctx.client.remove_schedule(r).await?.into_inner().into();
            if ctx.json {
                print_json(&s);
            } else {
                println!(
                    "removed schedule {}: {} of {}, {}",
                    s.id,
                    s.branch,
                    s.project,
                    s.cadence()
                );
            }
        }
    }
    Ok(0)
}
