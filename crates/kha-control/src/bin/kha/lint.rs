//! `kha lint [FILE] [--expand] [context flags]`: checks a `.travis.yml`
//! with kha-core's reader, no control node needed, and evaluates its `if:`
//! conditions for the build the flags describe. Exit 1 when the file has
//! errors.

use crate::output::{self, print_json};
use crate::Failure;
use kha_core::travis::{BuildContext, EventType, ExpandOptions, PullRequest};
use std::io::Read;
use std::path::Path;

/// The build `if:` conditions are evaluated for.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ContextArgs {
    /// What started the build: push, pull_request, api or cron (default:
    /// push, or pull_request with --pr-branch or --fork).
    #[arg(long)]
    event: Option<EventType>,
    /// The branch (a pull request's base branch; default: master, or the
    /// tag with --tag).
    #[arg(long)]
    branch: Option<String>,
    /// A build of this tag.
    #[arg(long)]
    tag: Option<String>,
    /// A pull request from this branch (`head_branch`).
    #[arg(long)]
    pr_branch: Option<String>,
    /// The GitHub login that started the build (`sender`).
    #[arg(long)]
    sender: Option<String>,
    /// A pull request from a fork of the repository (`fork`).
    #[arg(long)]
    fork: bool,
    /// The repository, owner/name (`repo`).
    #[arg(long, default_value = "owner/repo")]
    repo: String,
    /// The commit message (`commit_message`).
    #[arg(long, default_value = "")]
    commit_message: String,
}

impl ContextArgs {
    pub fn context(&self) -> BuildContext {
        let is_pr = self.pr_branch.is_some() || self.fork;
        let event = self.event.unwrap_or(if is_pr {
            EventType::PullRequest
        } else {
            EventType::Push
        });
        let branch = self
            .branch
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| "master".into());
        let name = self.repo.rsplit('/').next().unwrap_or(&self.repo);
        BuildContext {
            event,
            repo: self.repo.clone(),
            branch,
            tag: self.tag.clone(),
            commit_message: self.commit_message.clone(),
            sender: self.sender.clone().unwrap_or_default(),
            pull_request: (event == EventType::PullRequest).then(|| PullRequest {
                number: 1,
                head_repo: if self.fork {
                    format!("fork/{name}")
                } else {
                    self.repo.clone()
                },
                head_branch: self.pr_branch.clone().unwrap_or_default(),
                fork: self.fork,
                ..PullRequest::default()
            }),
            ..BuildContext::default()
        }
    }
}

pub fn run(file: &Path, expand: bool, context: &ContextArgs, as_json: bool) -> Result<u8, Failure> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| Failure(2, format!("reading {}: {e}", file.display())))?;
    let context = context.context();
    let opts = ExpandOptions {
        branch: Some(context.branch.clone()),
        context,
        ..ExpandOptions::default()
    };
    let r = kha_core::travis::lint_with(&text, &opts);
    if as_json {
        print_json(&output::lint(&r));
    } else if expand {
        out!("{}", r.render().trim_end());
    } else {
        for e in &r.errors {
            out!("{}: error: {e}", file.display());
        }
        for w in &r.warnings {
            out!("{}: warning: {w}", file.display());
        }
        if let (true, Some(c)) = (r.is_ok(), &r.not_built) {
            out!(
                "{}: ok, but no build for this context: the root `if: {}` is false",
                file.display(),
                c.text.trim()
            );
        } else if r.is_ok() {
            let n = r.jobs.len();
            out!(
                "{}: ok, {n} job{} ({} warning{}); --expand lists them",
                file.display(),
                if n == 1 { "" } else { "s" },
                r.warnings.len(),
                if r.warnings.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if r.is_ok() { 0 } else { 1 })
}
