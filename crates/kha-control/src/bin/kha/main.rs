//! `kha`: the admin CLI. It talks to a control node over gRPC only.
//!
//! This file holds the command line (`Cli`, `Cmd`), the connection context
//! every command gets (`Ctx`: server, token, `--json`) and the exit codes;
//! each command group lives in its own module, and everything printed goes
//! through `output`.
//!
//! The token sent is the first of: `--token`/`KHA_TOKEN`, the config file's
//! (`kha login` writes it), the control node's `admin.token` when readable
//! (`--data-dir`, or `/var/lib/kha` for a control node on this machine's
//! loopback: that token is never sent to another server). With none, calls are anonymous: public
//! projects can be read, and anything more is refused (exit 4) with the
//! role it needs.
//!
//! Exit codes: 0 success; 1 error; 2 bad usage; 3 not found; 4 not
//! authenticated or not allowed; 5 control node unreachable; 10 the
//! awaited build or job did not pass.

#[macro_use]
mod output;
mod audit;
mod branch;
mod build;
mod builder;
mod cache;
mod config;
mod cron;
mod encrypt;
mod events;
mod lint;
mod log;
mod login;
mod project;
mod prompt;
mod token;
mod user;
mod wire;

use clap::{Parser, Subcommand};
use kha_proto::admin::admin_service_client::AdminServiceClient;
use kha_proto::client::{AuthChannel, BearerAuth};
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::Code;

#[derive(Parser)]
#[command(
    name = "kha",
    version,
    about = "Drive a kha control node: projects, builds, logs, builders, users"
)]
struct Cli {
    /// Control node address.
    #[arg(long, global = true, env = "KHA_SERVER")]
    server: Option<String>,
    /// API token or admin token (default: the config file's, else the
    /// control node's admin.token when readable, else none: anonymous).
    #[arg(long, global = true, env = "KHA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Control node data dir, to find admin.token on the same machine.
    #[arg(long, global = true, env = "KHA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// CLI config file (TOML: server, token, token_id; default
    /// ~/.config/kha/cli.toml).
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
    Project(project::ProjectCmd),
    /// Builds of a project.
    #[command(subcommand)]
    Build(build::BuildCmd),
    /// Print a job's log (`--follow` to tail it while it runs).
    Log {
        job: u64,
        #[arg(long, short, conflicts_with = "attempt")]
        follow: bool,
        /// The kept log of this earlier attempt (1 for the first; `kha
        /// build show` lists them) instead of the job's own.
        #[arg(long)]
        attempt: Option<u32>,
    },
    /// Builders and their enrolment tokens.
    #[command(subcommand)]
    Builder(builder::BuilderCmd),
    /// A project's branches.
    #[command(subcommand)]
    Branch(branch::BranchCmd),
    /// A project's build cache: list or clear its archives.
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Scheduled builds of a branch (Travis's cron): add, list, remove.
    #[command(subcommand)]
    Cron(cron::CronCmd),
    /// The control node's event stream: every change, numbered, oldest
    /// first; `--follow` keeps printing new ones.
    Events(events::EventsArgs),
    /// Check a .travis.yml without a server: errors and warnings with line
    /// and column; `--expand` lists the jobs it makes for a context (a
    /// push to master unless told otherwise) and what its `if:` conditions
    /// drop. Exit 1 on errors.
    Lint {
        /// The file (default: ./.travis.yml; "-" for standard input).
        #[arg(default_value = ".travis.yml")]
        file: PathBuf,
        /// List the jobs, in the order Travis runs them.
        #[arg(long)]
        expand: bool,
        #[command(flatten)]
        context: lint::ContextArgs,
    },
    /// Sign in as a user: stores an API token (and the server) in the
    /// config file, 0600. The password is read without echo, or from
    /// standard input when it is not a terminal.
    Login(login::LoginArgs),
    /// Revoke the stored token and remove it from the config file.
    Logout,
    /// Who the control node takes you for.
    Whoami,
    /// Users and their roles (admins).
    #[command(subcommand)]
    User(user::UserCmd),
    /// Your API tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Encrypt `NAME=value` with a project's public key and print the
    /// `secure: "…"` line for its .travis.yml (the value stays here).
    Encrypt { project: String, value: String },
    /// Who did what, newest first (admins).
    Audit(audit::AuditArgs),
}

/// What every command that talks to the control node gets.
pub struct Ctx {
    /// Every call carries the token, if there is one (kha-proto's one
    /// interceptor, the builder's too).
    pub client: AdminServiceClient<AuthChannel>,
    /// `--json`: print JSON instead of tables.
    pub json: bool,
}

impl Ctx {
    /// A request (the interceptor adds the token).
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        tonic::Request::new(msg)
    }
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure(pub u8, pub String);

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
    if let Cmd::Lint {
        file,
        expand,
        context,
    } = &cli.cmd
    {
        return lint::run(file, *expand, context, cli.json);
    }
    let path = config::path(cli.config.as_deref());
    let file = config::load(path.as_deref())?;
    let mut server = server_of(&cli, &file);
    if let (Cmd::Logout, Some(s)) = (&cli.cmd, &file.server) {
        // The stored token goes back only to the server it came from.
        server = normal(s);
    }
    let token = match &cli.cmd {
        // Signing in needs no credential, and a stale one would only be
        // refused.
        Cmd::Login(_) => None,
        // What is signed out is the file's token.
        Cmd::Logout => file.token.clone(),
        _ => token_of(&cli, &file, &server),
    };
    let mut ctx = connect(&cli, &server, token.as_deref()).await?;
    match cli.cmd {
        Cmd::Project(c) => project::run(&mut ctx, c).await,
        Cmd::Build(c) => build::run(&mut ctx, c).await,
        Cmd::Log {
            job,
            follow,
            attempt,
        } => log::run(&mut ctx, job, follow, attempt.unwrap_or(0)).await,
        Cmd::Builder(c) => builder::run(&mut ctx, c).await,
        Cmd::Branch(c) => branch::run(&mut ctx, c).await,
        Cmd::Cache(c) => cache::run(&mut ctx, c).await,
        Cmd::Cron(c) => cron::run(&mut ctx, c).await,
        Cmd::Events(a) => events::run(&mut ctx, a).await,
        Cmd::Login(a) => {
            let to = login::Target {
                server,
                config: path,
            };
            login::login(&mut ctx, a, to).await
        }
        Cmd::Logout => login::logout(&mut ctx, &file, path.as_deref()).await,
        Cmd::Whoami => login::whoami(&mut ctx, &server).await,
        Cmd::User(c) => user::run(&mut ctx, c).await,
        Cmd::Token(c) => token::run(&mut ctx, c).await,
        Cmd::Encrypt { project, value } => encrypt::run(&mut ctx, project, value).await,
        Cmd::Audit(a) => audit::run(&mut ctx, a).await,
        Cmd::Lint { .. } => Ok(0),
    }
}

/// The control node's address: the flag (or `KHA_SERVER`), else the config
/// file's, else the local default.
fn server_of(cli: &Cli, file: &config::FileConfig) -> String {
    normal(
        &cli.server
            .clone()
            .or(file.server.clone())
            .unwrap_or_else(|| "127.0.0.1:7700".into()),
    )
}

/// An address with its scheme (`http://` when none is given).
fn normal(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

/// Whether `server` (`http://HOST:PORT`) names this machine.
fn on_loopback(server: &str) -> bool {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    // The authority ends at the path; user info ends at its last '@'.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let rest = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split([':', '/']).next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The token to send: the flag (or `KHA_TOKEN`), the config file's (only
/// to the server it was stored for: a token is never sent to another), or
/// the control node's admin token when this machine can read it; else none.
fn token_of(cli: &Cli, file: &config::FileConfig, server: &str) -> Option<String> {
    if let Some(t) = cli.token.clone() {
        return Some(t);
    }
    let for_here = file.server.as_deref().is_none_or(|s| normal(s) == server);
    if let Some(t) = file.token.clone().filter(|_| for_here) {
        return Some(t);
    }
    // The default data dir's admin token is this machine's control node's:
    // never sent elsewhere unless the data dir was named on purpose.
    let dir = match cli.data_dir.clone() {
        Some(d) => d,
        None if on_loopback(server) => PathBuf::from("/var/lib/kha"),
        None => return None,
    };
    std::fs::read_to_string(dir.join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A channel to the server whose calls carry `token` (or none).
async fn connect(cli: &Cli, server: &str, token: Option<&str>) -> Result<Ctx, Failure> {
    let channel = kha_proto::endpoint(server, cli.ca.as_deref())
        .map_err(|e| Failure(2, e))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Failure(5, format!("cannot reach the control node at {server}: {e}")))?;
    let auth = match token {
        Some(t) => {
            BearerAuth::new(t).map_err(|e| Failure(2, format!("the token cannot be sent: {e}")))?
        }
        None => BearerAuth::anonymous(),
    };
    let client = AdminServiceClient::new(auth.channel(channel))
        .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kha_proto::MAX_MESSAGE_BYTES);
    Ok(Ctx {
        client,
        json: cli.json,
    })
}

#[cfg(test)]
mod tests {
    use super::on_loopback;

    #[test]
    fn the_local_admin_token_goes_only_to_this_machine() {
        for s in [
            "http://127.0.0.1:7700",
            "http://localhost:7700",
            "https://[::1]:7700",
            "127.0.0.2:1",
        ] {
            assert!(on_loopback(s), "{s}");
        }
        for s in [
            "http://ci.example.org:7700",
            "https://10.0.0.5:7700",
            "http://[2001:db8::1]:7700",
            "http://localhost:7700@evil.example",
            "http://127.0.0.1@evil.example:7700",
        ] {
            assert!(!on_loopback(s), "{s}");
        }
    }
}
