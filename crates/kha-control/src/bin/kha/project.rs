//! `kha project …`: add, list, show and remove the git repositories kha
//! builds; change their settings and visibility; star them; list who has
//! a role on one.

use crate::output::{ago, print_json, table, Member};
use crate::wire;
use crate::{Ctx, Failure};
use clap::{Args, Subcommand};
use kha_proto::admin::{
    AddProjectRequest, GetNotifyRequest, GetProjectRequest, ListMembersRequest,
    ListProjectsRequest, RemoveProjectRequest, StarRequest, UpdateProjectRequest,
};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ProjectCmd {
    /// Add a project: a name and its repository (a git or Subversion URL,
    /// or a CVSROOT with --module).
    Add {
        name: String,
        repo_url: String,
        /// Version control system: git, svn or cvs (default: from the URL;
        /// svn:// is svn, a CVSROOT such as :pserver:… is cvs, else git).
        #[arg(long)]
        vcs: Option<String>,
        /// CVS: the module to build.
        #[arg(long)]
        module: Option<String>,
        /// Subversion: how branches map to paths: standard (trunk,
        /// branches/X, tags/T), single (the whole repository is one
        /// branch), or trunk=PATH,branches=PATH,tags=PATH.
        #[arg(long)]
        layout: Option<String>,
        /// Branch built by default (default: master or main).
        #[arg(long)]
        branch: Option<String>,
        /// Job timeout in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Builder image the jobs run in.
        #[arg(long)]
        image: Option<String>,
        /// Seconds between polls of the repository for new commits.
        #[arg(long, default_value_t = 60)]
        poll: u64,
        /// Never poll: builds come from webhooks and the CLI.
        #[arg(long)]
        no_poll: bool,
        /// Build tags as well as branches.
        #[arg(long)]
        build_tags: bool,
        /// A newer push cancels the branch's builds that have not started.
        #[arg(long)]
        cancel_superseded: bool,
        /// GitHub "owner/name" for webhooks (default: from a github.com URL).
        #[arg(long)]
        github: Option<String>,
        /// User for a private repository over HTTPS.
        #[arg(long, requires = "password_file")]
        username: Option<String>,
        /// File holding the password or token for --username.
        #[arg(long, requires = "username")]
        password_file: Option<PathBuf>,
        /// Only people with a role on it see it (it does not exist for
        /// anyone else).
        #[arg(long)]
        private: bool,
    },
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Change a project's settings (maintainers of it); the others stay.
    Set(SetArgs),
    /// Follow a project: starred projects come first on the front page.
    Star {
        name: String,
    },
    Unstar {
        name: String,
    },
    /// Who has a role on a project (beyond what everyone has on a public
    /// one).
    Members {
        name: String,
    },
    /// Show or set the project's notification channels on the control node
    /// (maintainers). A channel set here replaces the `.travis.yml`'s
    /// `notifications:` entry of that name; the value is written as the
    /// file writes it, e.g.
    /// `kha project notify web email '{recipients: [ops@example.org], on_success: always}'`,
    /// `kha project notify web irc false`,
    /// `kha project notify web webhooks --clear`.
    Notify {
        name: String,
        /// email, irc, webhooks, jabber, or a notifier plugin's name.
        channel: Option<String>,
        /// The channel's value (YAML).
        #[arg(requires = "channel")]
        value: Option<String>,
        /// Remove the channel's setting: the `.travis.yml`'s applies again.
        #[arg(long, requires = "channel", conflicts_with = "value")]
        clear: bool,
    },
}

#[derive(Args)]
pub struct SetArgs {
    name: String,
    /// Only people with a role on it see it.
    #[arg(long, conflicts_with = "public")]
    private: bool,
    /// Everyone sees it.
    #[arg(long)]
    public: bool,
    #[arg(long)]
    default_branch: Option<String>,
    /// Job timeout in seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Seconds between polls of the repository (0: never).
    #[arg(long, conflicts_with = "no_poll")]
    poll: Option<u64>,
    /// Never poll: builds come from webhooks and the CLI.
    #[arg(long)]
    no_poll: bool,
    /// Build tags as well as branches.
    #[arg(long, conflicts_with = "no_build_tags")]
    build_tags: bool,
    #[arg(long)]
    no_build_tags: bool,
    /// A newer push cancels the branch's builds that have not started.
    #[arg(long, conflicts_with = "no_cancel_superseded")]
    cancel_superseded: bool,
    #[arg(long)]
    no_cancel_superseded: bool,
    /// Pull requests from forks get the encrypted variables too (Travis's
    /// share_encrypted_env_with_forks; off by default).
    #[arg(long, conflicts_with = "no_share_secrets_with_forks")]
    share_secrets_with_forks: bool,
    #[arg(long)]
    no_share_secrets_with_forks: bool,
    /// Memory limit of each job, in MiB (0: the builder's default; a
    /// builder gives at most its `max_memory_mib`).
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Limit on each job's processes and threads (0: the builder's default).
    #[arg(long)]
    pids: Option<u64>,
    /// CPU limit of each job, in CPUs, e.g. 0.5 (0: the builder's default).
    #[arg(long, value_parser = cpus)]
    cpus: Option<u64>,
    /// Its jobs get network: what their builder's host reaches, through
    /// NAT, never the host itself or the control node (off by default).
    #[arg(long, conflicts_with = "no_network")]
    network: bool,
    #[arg(long)]
    no_network: bool,
    /// At most this many of its jobs run at once (Travis's "limit
    /// concurrent jobs"); 0: no limit.
    #[arg(long, value_name = "N")]
    max_running_jobs: Option<u32>,
    /// A branch's later build waits until its earlier one is over.
    #[arg(long, conflicts_with = "no_one_build_per_branch")]
    one_build_per_branch: bool,
    #[arg(long)]
    no_one_build_per_branch: bool,
    /// Keep the logs of its last N builds (0: the server's policy).
    #[arg(long, value_name = "N")]
    keep_logs: Option<u32>,
    /// Remove the logs of its builds that ended more than DAYS ago (0: the
    /// server's policy).
    #[arg(long, value_name = "DAYS")]
    log_max_age_days: Option<u64>,
}

/// `--cpus 1.5` as thousandths of a CPU.
fn cpus(raw: &str) -> Result<u64, String> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok((v * 1000.0).round() as u64),
        _ => Err(format!("{raw:?} is not a number of CPUs (e.g. 0.5, 2)")),
    }
}

/// `Some(true)` for `--x`, `Some(false)` for `--no-x`, else unchanged.
fn flag(on: bool, off: bool) -> Option<bool> {
    (on || off).then_some(on)
}

impl SetArgs {
    fn request(self) -> UpdateProjectRequest {
        UpdateProjectRequest {
            private: flag(self.private, self.public),
            default_branch: self.default_branch,
            timeout_secs: self.timeout,
            poll_interval_secs: if self.no_poll { Some(0) } else { self.poll },
            build_tags: flag(self.build_tags, self.no_build_tags),
            cancel_superseded: flag(self.cancel_superseded, self.no_cancel_superseded),
            share_secrets_with_forks: flag(
                self.share_secrets_with_forks,
                self.no_share_secrets_with_forks,
            ),
            job_memory_mib: self.memory_mib,
            job_pids: self.pids,
            job_cpu_millis: self.cpus,
            job_network: flag(self.network, self.no_network),
            max_running_jobs: self.max_running_jobs,
            one_build_per_branch: flag(self.one_build_per_branch, self.no_one_build_per_branch),
            log_keep_builds: self.keep_logs,
            log_max_age_days: self.log_max_age_days,
            name: self.name,
            notify_channel: String::new(),
            notify_value: None,
        }
    }
}

pub async fn run(ctx: &mut Ctx, c: ProjectCmd) -> Result<u8, Failure> {
    match c {
        ProjectCmd::Add {
            name,
            repo_url,
            branch,
            timeout,
            image,
            poll,
            no_poll,
            build_tags,
            cancel_superseded,
            github,
            username,
            password_file,
            private,
            vcs,
            module,
            layout,
        } => {
            let password = match &password_file {
                Some(f) => std::fs::read_to_string(f)
                    .map_err(|e| Failure(2, format!("reading {}: {e}", f.display())))?
                    .trim()
                    .to_string(),
                None => String::new(),
            };
            let r = ctx.req(AddProjectRequest {
                name,
                repo_url,
                default_branch: branch.unwrap_or_default(),
                timeout_secs: timeout.unwrap_or(0),
                image: image.unwrap_or_default(),
                poll_interval_secs: poll.max(1),
                build_tags,
                cancel_superseded,
                github_repo: github.unwrap_or_default(),
                no_poll,
                credential_username: username.unwrap_or_default(),
                credential_password: password,
                private,
                vcs: vcs.unwrap_or_default(),
                module: module.unwrap_or_default(),
                layout: layout.unwrap_or_default(),
            });
            let p = wire::project(ctx.client.add_project(r).await?.into_inner());
            if ctx.json {
                print_json(&p);
            } else {
                out!(
                    "added project {} ({} {}{}, branch {}{})",
                    p.name,
                    p.vcs,
                    p.repo_url,
                    if p.module.is_empty() {
                        String::new()
                    } else {
                        format!(" module {}", p.module)
                    },
                    p.default_branch,
                    if p.private { ", private" } else { "" }
                );
                out!("webhook secret (shown once): {}", p.webhook_secret);
                out!("  GitHub: POST /hooks/github/{} (or /hooks/github) with this secret; generic: POST /hooks/generic/{} with `Authorization: Bearer <secret>`", p.name, p.name);
            }
        }
        ProjectCmd::List => {
            let r = ctx.req(ListProjectsRequest {});
            let ps: Vec<_> = (ctx.client.list_projects(r).await?.into_inner().projects)
                .into_iter()
                .map(wire::project)
                .collect();
            if ctx.json {
                print_json(&ps);
            } else {
                table(
                    &["NAME", "BRANCH", "IMAGE", "VISIBILITY", "REPOSITORY"],
                    ps.into_iter()
                        .map(|p| {
                            vec![
                                p.name,
                                p.default_branch,
                                p.image,
                                visibility(p.private).into(),
                                p.repo_url,
                            ]
                        })
                        .collect(),
                );
            }
        }
        ProjectCmd::Show { name } => {
            let r = ctx.req(GetProjectRequest { name });
            let p = wire::project(ctx.client.get_project(r).await?.into_inner());
            if ctx.json {
                print_json(&p);
            } else {
                show(&p);
            }
        }
        ProjectCmd::Remove { name } => {
            let r = ctx.req(RemoveProjectRequest { name: name.clone() });
            ctx.client.remove_project(r).await?;
            if !ctx.json {
                out!("removed project {name}");
            }
        }
        ProjectCmd::Set(a) => {
            let r = ctx.req(a.request());
            let p = wire::project(ctx.client.update_project(r).await?.into_inner());
            if ctx.json {
                print_json(&p);
            } else {
                show(&p);
            }
        }
        ProjectCmd::Star { name } => return star(ctx, name, true).await,
        ProjectCmd::Unstar { name } => return star(ctx, name, false).await,
        ProjectCmd::Notify {
            name,
            channel: Some(channel),
            value,
            clear,
        } => {
            if value.is_none() && !clear {
                return Err(Failure(
                    2,
                    format!("give the value of notifications.{channel} (YAML), or --clear"),
                ));
            }
            let r = ctx.req(UpdateProjectRequest {
                name: name.clone(),
                notify_channel: channel.clone(),
                notify_value: if clear { None } else { value },
                ..Default::default()
            });
            ctx.client.update_project(r).await?;
            if !ctx.json {
                if clear {
                    out!("{name}: notifications.{channel} comes from .travis.yml again");
                } else {
                    out!("{name}: notifications.{channel} set (it replaces .travis.yml's)");
                }
            }
        }
        ProjectCmd::Notify {
            name,
            channel: None,
            ..
        } => {
            let r = ctx.req(GetNotifyRequest { project: name });
            let chans = ctx.client.get_notify(r).await?.into_inner().channels;
            if ctx.json {
                print_json(
                    &chans
                        .into_iter()
                        .collect::<std::collections::BTreeMap<_, _>>(),
                );
            } else {
                let mut rows: Vec<Vec<String>> =
                    chans.into_iter().map(|(k, v)| vec![k, v]).collect();
                rows.sort();
                table(&["CHANNEL", "SETTING (replaces .travis.yml's)"], rows);
            }
        }
        ProjectCmd::Members { name } => {
            let r = ctx.req(ListMembersRequest { project: name });
            let ms = (ctx.client.list_members(r).await?.into_inner().members)
                .into_iter()
                .map(|m| {
                    kha_core::view::ProjectRole::try_from(m).map_err(|e| Failure(1, e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ctx.json {
                // A member list's ProjectRole names the user in `project`.
                let ms: Vec<Member> = ms
                    .iter()
                    .map(|m| Member {
                        user: &m.project,
                        role: m.role,
                    })
                    .collect();
                print_json(&ms);
            } else {
                table(
                    &["USER", "ROLE"],
                    ms.into_iter()
                        .map(|m| vec![m.project, m.role.to_string()])
                        .collect(),
                );
            }
        }
    }
    Ok(0)
}

fn visibility(private: bool) -> &'static str {
    if private {
        "private"
    } else {
        "public"
    }
}

async fn star(ctx: &mut Ctx, project: String, on: bool) -> Result<u8, Failure> {
    let r = ctx.req(StarRequest {
        project: project.clone(),
        on,
    });
    ctx.client.star(r).await?;
    if !ctx.json {
        out!("{} {project}", if on { "starred" } else { "unstarred" });
    }
    Ok(0)
}

fn show(p: &kha_core::view::Project) {
    let polling = if p.poll_interval_secs == 0 {
        "off".to_string()
    } else {
        format!("every {}s", p.poll_interval_secs)
    };
    let mut rows = vec![
        ("name", p.name.clone()),
        ("repository", p.repo_url.clone()),
        ("branch", p.default_branch.clone()),
        ("image", p.image.clone()),
        ("timeout", format!("{}s", p.timeout_secs)),
        ("job limits", p.job_limits.to_string()),
        (
            "running jobs",
            match p.max_running_jobs {
                0 => "no limit".to_string(),
                n => format!("at most {n} at a time"),
            },
        ),
        (
            "logs kept",
            match (p.log_keep_builds, p.log_max_age_days) {
                (0, 0) => "by the server's policy".to_string(),
                (n, 0) => format!("of the last {n} builds"),
                (0, d) => format!("for {d} days"),
                (n, d) => format!("of the last {n} builds, for {d} days"),
            },
        ),
        (
            "builds of a branch",
            if p.one_build_per_branch {
                "one at a time"
            } else {
                "side by side"
            }
            .into(),
        ),
        ("created", ago(p.created_ms)),
        ("polling", polling),
        (
            "tags",
            if p.build_tags { "built" } else { "not built" }.into(),
        ),
        (
            "supersede",
            if p.cancel_superseded {
                "a newer push cancels queued builds"
            } else {
                "off"
            }
            .into(),
        ),
        (
            "github",
            if p.github_repo.is_empty() {
                "-"
            } else {
                &p.github_repo
            }
            .into(),
        ),
        (
            "credentials",
            if p.has_credentials { "stored" } else { "none" }.into(),
        ),
        ("visibility", visibility(p.private).into()),
        (
            "secrets",
            if p.share_secrets_with_forks {
                "also for pull requests from forks"
            } else {
                "not for pull requests from forks"
            }
            .into(),
        ),
        ("vcs", p.vcs.to_string()),
    ];
    if !p.module.is_empty() {
        rows.push(("module", p.module.clone()));
    }
    if p.vcs == kha_core::spec::VcsKind::Svn {
        let layout = if p.layout.is_empty() {
            "standard"
        } else {
            &p.layout
        };
        rows.push(("layout", layout.to_string()));
    }
    for (k, v) in rows {
        out!("{:<13}{v}", format!("{k}:"));
    }
}
