//! `kha`: the admin CLI. It talks to a control node over gRPC only.
//!
//! Exit codes: 0 success; 1 error; 2 bad usage; 3 not found; 4 not
//! authenticated; 5 control node unreachable; 10 the awaited build or job
//! did not pass.

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use kha_proto::admin::admin_service_client::AdminServiceClient;
use kha_proto::admin::*;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::transport::Channel;
use tonic::Code;

/// `println!` that ends quietly when stdout is closed (`kha … | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "kha",
    version,
    about = "Drive a kha control node: projects, builds, logs, builders"
)]
struct Cli {
    /// Control node address.
    #[arg(long, global = true, env = "KHA_SERVER")]
    server: Option<String>,
    /// Admin token (default: the control node's admin.token when readable).
    #[arg(long, global = true, env = "KHA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Control node data dir, to find admin.token on the same machine.
    #[arg(long, global = true, env = "KHA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// CLI config file (TOML: server, token).
    #[arg(long, global = true, env = "KHA_CLI_CONFIG")]
    config: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for an https:// control node.
    #[arg(long, global = true, env = "KHA_CA")]
    ca: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Projects: git repositories kha builds.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Builds of a project.
    #[command(subcommand)]
    Build(BuildCmd),
    /// Print a job's log (`--follow` to tail it while it runs).
    Log {
        job: u64,
        #[arg(long, short)]
        follow: bool,
    },
    /// Builders and their enrolment tokens.
    #[command(subcommand)]
    Builder(BuilderCmd),
    /// A project's branches.
    #[command(subcommand)]
    Branch(BranchCmd),
    /// Check a .travis.yml without a server: errors and warnings with line
    /// and column; `--expand` lists the jobs it makes. Exit 1 on errors.
    Lint {
        /// The file (default: ./.travis.yml; "-" for standard input).
        #[arg(default_value = ".travis.yml")]
        file: PathBuf,
        /// List the jobs, in the order Travis runs them.
        #[arg(long)]
        expand: bool,
    },
}

#[derive(Subcommand)]
enum BranchCmd {
    /// Every branch with its head, last build, state and age.
    List { project: String },
}

#[derive(Subcommand)]
enum ProjectCmd {
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

#[derive(Args)]
struct Paging {
    #[arg(long, default_value_t = 1)]
    page: u32,
    #[arg(long, default_value_t = 25)]
    per_page: u32,
}

#[derive(Subcommand)]
enum BuildCmd {
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
}

#[derive(Subcommand)]
enum BuilderCmd {
    List,
    /// Stop giving a builder new jobs.
    Drain {
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
enum TokenCmd {
    Create {
        #[arg(long, default_value = "")]
        description: String,
    },
    Revoke {
        id: String,
    },
    List,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    token: Option<String>,
}

struct Ctx {
    client: AdminServiceClient<Channel>,
    token: String,
    json: bool,
}

impl Ctx {
    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }
}

/// An error with the exit code it maps to.
struct Failure(u8, String);

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        let code = match s.code() {
            Code::NotFound => 3,
            Code::Unauthenticated | Code::PermissionDenied => 4,
            Code::Unavailable => 5,
            _ => 1,
        };
        Failure(code, s.message().to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure(1, format!("{e:#}"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, msg)) => {
            eprintln!("kha: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn real_main(cli: Cli) -> Result<u8, Failure> {
    if let Cmd::Lint { file, expand } = &cli.cmd {
        return lint(file, *expand, cli.json);
    }
    let file = load_config(cli.config.as_deref())?;
    let server = cli
        .server
        .or(file.server)
        .unwrap_or_else(|| "http://127.0.0.1:7700".into());
    let server = if server.contains("://") {
        server
    } else {
        format!("http://{server}")
    };
    let token = match cli.token.or(file.token) {
        Some(t) => t,
        None => {
            let dir = cli
                .data_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/kha"));
            std::fs::read_to_string(dir.join("admin.token"))
                .map(|t| t.trim().to_string())
                .map_err(|_| {
                    Failure(
                        4,
                        format!(
                        "no admin token: pass --token, set KHA_TOKEN, or run where {} is readable",
                        dir.join("admin.token").display()
                    ),
                    )
                })?
        }
    };
    let channel = kha_proto::endpoint(&server, cli.ca.as_deref())
        .map_err(|e| Failure(2, e))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Failure(5, format!("cannot reach the control node at {server}: {e}")))?;
    let client = AdminServiceClient::new(channel)
        .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kha_proto::MAX_MESSAGE_BYTES);
    let mut ctx = Ctx {
        client,
        token,
        json: cli.json,
    };
    match cli.cmd {
        Cmd::Project(c) => project(&mut ctx, c).await,
        Cmd::Build(c) => build(&mut ctx, c).await,
        Cmd::Log { job, follow } => log(&mut ctx, job, follow).await,
        Cmd::Builder(c) => builder(&mut ctx, c).await,
        Cmd::Branch(BranchCmd::List { project }) => branches(&mut ctx, project).await,
        Cmd::Lint { .. } => Ok(0),
    }
}

fn load_config(path: Option<&std::path::Path>) -> Result<FileConfig, Failure> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".config/kha/cli.toml"),
            None => return Ok(FileConfig::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => toml::from_str(&t).map_err(|e| Failure(2, format!("{}: {e}", path.display()))),
        Err(_) => Ok(FileConfig::default()),
    }
}

/// Prints rows as aligned columns.
fn table(head: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out!("{}", s.join("  ").trim_end());
    };
    line(head.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn ago(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(ms);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

fn duration(start: u64, end: u64) -> String {
    if start == 0 || end < start {
        return "-".into();
    }
    let ms = end - start;
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}s", ms / 1000)
    }
}

fn short(c: &str) -> &str {
    c.get(..10).unwrap_or(c)
}

fn project_json(p: &Project) -> serde_json::Value {
    json!({"name": p.name, "repo_url": p.repo_url, "default_branch": p.default_branch,
           "timeout_secs": p.timeout_secs, "image": p.image, "created_ms": p.created_ms,
           "poll_interval_secs": p.poll_interval_secs, "build_tags": p.build_tags,
           "cancel_superseded": p.cancel_superseded, "github_repo": p.github_repo,
           "has_credentials": p.has_credentials})
}

fn job_json(j: &Job) -> serde_json::Value {
    json!({"id": j.id, "build_id": j.build_id, "number": j.number, "state": j.state, "epoch": j.epoch,
           "attempts": j.attempts, "builder": j.builder, "started_ms": j.started_ms,
           "finished_ms": j.finished_ms, "log_len": j.log_len, "env": j.env,
           "allow_failure": j.allow_failure, "detail": j.detail, "requires": j.requires,
           "matrix": j.matrix, "name": j.name})
}

fn build_json(b: &Build) -> serde_json::Value {
    json!({"id": b.id, "project": b.project, "branch": b.branch, "commit": b.commit,
           "message": b.message, "state": b.state, "created_ms": b.created_ms,
           "finished_ms": b.finished_ms, "warnings": b.warnings, "error": b.error,
           "pr_number": b.pr_number, "event": b.event, "fast_finish": b.fast_finish,
           "jobs": b.jobs.iter().map(job_json).collect::<Vec<_>>()})
}

fn print_json(v: serde_json::Value) {
    out!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

async fn project(ctx: &mut Ctx, c: ProjectCmd) -> Result<u8, Failure> {
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
            });
            let p = ctx.client.add_project(r).await?.into_inner();
            if ctx.json {
                let mut v = project_json(&p);
                v["webhook_secret"] = json!(p.webhook_secret);
                print_json(v);
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
            let ps = ctx.client.list_projects(r).await?.into_inner().projects;
            if ctx.json {
                print_json(json!(ps.iter().map(project_json).collect::<Vec<_>>()));
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
            let p = ctx.client.get_project(r).await?.into_inner();
            if ctx.json {
                print_json(project_json(&p));
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

fn print_build(b: &Build) {
    out!(
        "build {}  {}  {}@{} ({})",
        b.id,
        b.state,
        b.project,
        b.branch,
        short(&b.commit)
    );
    if !b.message.is_empty() {
        out!("  {}", b.message);
    }
    if !b.error.is_empty() {
        out!("  error: {}", b.error);
    }
    for w in &b.warnings {
        out!("  warning: {w}");
    }
    table(
        &["JOB", "ID", "STATE", "MATRIX", "BUILDER", "TIME", "DETAIL"],
        b.jobs
            .iter()
            .map(|j| {
                let mut env = if j.matrix.is_empty() {
                    j.env.join(" ")
                } else {
                    j.matrix.join(" ")
                };
                if !j.name.is_empty() {
                    env = format!("{} {env}", j.name);
                }
                if j.allow_failure {
                    env.push_str(" (allowed to fail)");
                }
                vec![
                    format!("{}.{}", b.id, j.number),
                    j.id.to_string(),
                    j.state.clone(),
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
            })
            .collect(),
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn passed(state: &str) -> bool {
    state == "passed"
}

async fn build(ctx: &mut Ctx, c: BuildCmd) -> Result<u8, Failure> {
    match c {
        BuildCmd::Trigger {
            project,
            branch,
            commit,
            force,
            wait,
        } => {
            let r = ctx.req(TriggerBuildRequest {
                project,
                branch: branch.unwrap_or_default(),
                commit: commit.unwrap_or_default(),
                force,
            });
            let t = ctx.client.trigger_build(r).await?.into_inner();
            let mut b = t
                .build
                .ok_or_else(|| anyhow!("the control node sent no build"))?;
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
            if wait {
                let mut delay = 50;
                while !matches!(
                    b.state.as_str(),
                    "passed" | "failed" | "errored" | "canceled"
                ) {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    delay = (delay * 2).min(1000);
                    let r = ctx.req(GetBuildRequest { build_id: b.id });
                    b = ctx.client.get_build(r).await?.into_inner();
                }
            }
            if ctx.json {
                let mut v = build_json(&b);
                v["created"] = json!(t.created);
                print_json(v);
            } else if wait {
                print_build(&b);
            }
            if wait && !passed(&b.state) {
                return Ok(10);
            }
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
            if ctx.json {
                print_json(
                    json!({"total": l.total, "page": paging.page, "per_page": paging.per_page,
                                  "builds": l.builds.iter().map(build_json).collect::<Vec<_>>()}),
                );
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
                                b.state.clone(),
                                b.branch.clone(),
                                short(&b.commit).to_string(),
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
            let b = ctx.client.get_build(r).await?.into_inner();
            if ctx.json {
                print_json(build_json(&b))
            } else {
                print_build(&b)
            }
        }
        BuildCmd::Restart { id } => {
            let r = ctx.req(GetBuildRequest { build_id: id });
            let b = ctx.client.restart_build(r).await?.into_inner();
            if ctx.json {
                print_json(build_json(&b))
            } else {
                out!("build {} restarted: {}", b.id, b.state)
            }
        }
        BuildCmd::Cancel { id } => {
            let r = ctx.req(GetBuildRequest { build_id: id });
            let b = ctx.client.cancel_build(r).await?.into_inner();
            if ctx.json {
                print_json(build_json(&b))
            } else {
                out!("build {}: cancel requested ({})", b.id, b.state)
            }
        }
    }
    Ok(0)
}

async fn log(ctx: &mut Ctx, job: u64, follow: bool) -> Result<u8, Failure> {
    let r = ctx.req(FollowLogRequest {
        job_id: job,
        offset: 0,
        follow,
    });
    let mut s = ctx.client.follow_log(r).await?.into_inner();
    let mut out = std::io::stdout().lock();
    let mut state = String::new();
    while let Some(m) = s.message().await? {
        if !m.data.is_empty() {
            if out.write_all(&m.data).is_err() {
                return Ok(0);
            }
            out.flush().ok();
        }
        if m.done {
            state = m.state;
            break;
        }
    }
    if follow && !passed(&state) {
        eprintln!("kha: job {job} {state}");
        return Ok(10);
    }
    Ok(0)
}

async fn builder(ctx: &mut Ctx, c: BuilderCmd) -> Result<u8, Failure> {
    let builder_json = |b: &Builder| {
        json!({"id": b.id, "name": b.name, "connected": b.connected, "draining": b.draining,
               "revoked": b.revoked, "labels": b.labels, "slots": b.slots,
               "running_jobs": b.running_jobs, "last_seen_ms": b.last_seen_ms, "version": b.version})
    };
    match c {
        BuilderCmd::List => {
            let r = ctx.req(ListBuildersRequest {});
            let bs = ctx.client.list_builders(r).await?.into_inner().builders;
            if ctx.json {
                print_json(json!(bs.iter().map(builder_json).collect::<Vec<_>>()));
            } else {
                table(
                    &["ID", "NAME", "STATE", "SLOTS", "RUNNING", "SEEN", "LABELS"],
                    bs.iter()
                        .map(|b| {
                            let state = if b.revoked {
                                "revoked"
                            } else if !b.connected {
                                "offline"
                            } else if b.draining {
                                "draining"
                            } else {
                                "ready"
                            };
                            vec![
                                b.id.clone(),
                                b.name.clone(),
                                state.into(),
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
            let b = ctx.client.drain_builder(r).await?.into_inner();
            if ctx.json {
                print_json(builder_json(&b))
            } else {
                out!("builder {} is draining", b.id)
            }
        }
        BuilderCmd::Revoke { id } => {
            let r = ctx.req(BuilderRequest { builder_id: id });
            let b = ctx.client.revoke_builder(r).await?.into_inner();
            if ctx.json {
                print_json(builder_json(&b))
            } else {
                out!("builder {} revoked", b.id)
            }
        }
        BuilderCmd::Token(TokenCmd::Create { description }) => {
            let r = ctx.req(CreateEnrolmentTokenRequest { description });
            let t = ctx.client.create_enrolment_token(r).await?.into_inner();
            if ctx.json {
                print_json(json!({"id": t.id, "token": t.token, "description": t.description}));
            } else {
                out!("{}", t.token);
                eprintln!("enrolment token {} created; it is shown only this once.\njoin a builder with: kha-builder --control URL --token TOKEN", t.id);
            }
        }
        BuilderCmd::Token(TokenCmd::Revoke { id }) => {
            let r = ctx.req(RevokeEnrolmentTokenRequest { id });
            let t = ctx.client.revoke_enrolment_token(r).await?.into_inner();
            if !ctx.json {
                out!("enrolment token {} revoked", t.id);
            }
        }
        BuilderCmd::Token(TokenCmd::List) => {
            let r = ctx.req(ListEnrolmentTokensRequest {});
            let ts = ctx
                .client
                .list_enrolment_tokens(r)
                .await?
                .into_inner()
                .tokens;
            if ctx.json {
                print_json(json!(ts
                    .iter()
                    .map(|t| json!({"id": t.id, "description": t.description,
                    "created_ms": t.created_ms, "revoked": t.revoked}))
                    .collect::<Vec<_>>()));
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

async fn branches(ctx: &mut Ctx, project: String) -> Result<u8, Failure> {
    let r = ctx.req(ListBranchesRequest { project });
    let bs = ctx.client.list_branches(r).await?.into_inner().branches;
    if ctx.json {
        print_json(json!(bs
            .iter()
            .map(|b| json!({"name": b.name, "head": b.head, "last_build_id": b.last_build_id,
                            "state": b.state, "deleted": b.deleted, "updated_ms": b.updated_ms, "tag": b.tag}))
            .collect::<Vec<_>>()));
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
                        short(&b.head).to_string(),
                        if b.last_build_id == 0 {
                            "-".into()
                        } else {
                            b.last_build_id.to_string()
                        },
                        b.state,
                        ago(b.updated_ms),
                    ]
                })
                .collect(),
        );
    }
    Ok(0)
}

fn lint(file: &std::path::Path, expand: bool, as_json: bool) -> Result<u8, Failure> {
    use std::io::Read;
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| Failure(2, format!("reading {}: {e}", file.display())))?;
    let r = kha_core::travis::lint(&text);
    let diag = |d: &kha_core::travis::Diagnostic| json!({"line": d.line, "column": d.column, "message": d.message});
    if as_json {
        print_json(json!({
            "ok": r.is_ok(),
            "errors": r.errors.iter().map(diag).collect::<Vec<_>>(),
            "warnings": r.warnings.iter().map(diag).collect::<Vec<_>>(),
            "fast_finish": r.fast_finish,
            "stages": r.stages,
            "jobs": r.jobs.iter().map(|j| json!({
                "number": j.number,
                "name": j.name,
                "stage": j.stage,
                "language": j.language,
                "matrix": j.matrix.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "env": j.env,
                "allow_failure": j.allow_failure,
                "requires": j.requires.to_vec(),
                "install": j.phases.install,
                "script": j.phases.script,
            })).collect::<Vec<_>>(),
        }));
    } else if expand {
        out!("{}", r.render().trim_end());
    } else {
        for e in &r.errors {
            out!("{}: error: {e}", file.display());
        }
        for w in &r.warnings {
            out!("{}: warning: {w}", file.display());
        }
        if r.is_ok() {
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
