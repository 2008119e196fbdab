//! `kha project …`: add, list, show and remove the git repositories kha
//! builds.

use crate::output::{ago, print_json, table};
use crate::wire;
use crate::{Ctx, Failure};
use clap::Subcommand;
use kha_proto::admin::{
    AddProjectRequest, GetProjectRequest, ListProjectsRequest, RemoveProjectRequest,
};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ProjectCmd {
    /// Add a project: a name and a git URL.
    Add {
        name: String,
        repo_url: String,
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
    },
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
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
                private: false,
            });
            let p = wire::project(ctx.client.add_project(r).await?.into_inner());
            if ctx.json {
                print_json(&p);
            } else {
                out!(
                    "added project {} ({}, branch {})",
                    p.name,
                    p.repo_url,
                    p.default_branch
                );
                out!("webhook secret (shown once): {}", p.webhook_secret);
                out!("  GitHub: POST /hooks/github with this secret; generic: POST /hooks/generic/{} with `Authorization: Bearer <secret>`", p.name);
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
                    &["NAME", "BRANCH", "IMAGE", "REPOSITORY"],
                    ps.into_iter()
                        .map(|p| vec![p.name, p.default_branch, p.image, p.repo_url])
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
                out!("name:       {}\nrepository: {}\nbranch:     {}\nimage:      {}\ntimeout:    {}s\ncreated:    {}",
                    p.name, p.repo_url, p.default_branch, p.image, p.timeout_secs, ago(p.created_ms));
                out!("polling:    {}\ntags:       {}\nsupersede:  {}\ngithub:     {}\nprivate:    {}",
                    if p.poll_interval_secs == 0 { "off".to_string() } else { format!("every {}s", p.poll_interval_secs) },
                    if p.build_tags { "built" } else { "not built" },
                    if p.cancel_superseded { "a newer push cancels queued builds" } else { "off" },
                    if p.github_repo.is_empty() { "-" } else { &p.github_repo },
                    if p.has_credentials { "yes (credentials stored)" } else { "no" });
            }
        }
        ProjectCmd::Remove { name } => {
            let r = ctx.req(RemoveProjectRequest { name: name.clone() });
            ctx.client.remove_project(r).await?;
            if !ctx.json {
                out!("removed project {name}");
            }
        }
    }
    Ok(0)
}
