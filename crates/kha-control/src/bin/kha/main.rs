//! `kha`: the admin CLI. It talks to a control node over gRPC only.
//!
//! This file holds the command line (`Cli`, `Cmd`), the connection context
//! every command gets (`Ctx`: server, admin token, `--json`) and the exit
//! codes; each command group lives in its own module, and everything
//! printed goes through `output`.
//!
//! Exit codes: 0 success; 1 error; 2 bad usage; 3 not found; 4 not
//! authenticated; 5 control node unreachable; 10 the awaited build or job
//! did not pass.

#[macro_use]
mod output;
mod branch;
mod build;
mod builder;
mod events;
mod lint;
mod log;
mod project;
mod wire;

use clap::{Parser, Subcommand};
use kha_proto::admin::admin_service_client::AdminServiceClient;
use kha_proto::client::{AuthChannel, BearerAuth};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tonic::Code;

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
    Project(project::ProjectCmd),
    /// Builds of a project.
    #[command(subcommand)]
    Build(build::BuildCmd),
    /// Print a job's log (`--follow` to tail it while it runs).
    Log {
        job: u64,
        #[arg(long, short)]
        follow: bool,
    },
    /// Builders and their enrolment tokens.
    #[command(subcommand)]
    Builder(builder::BuilderCmd),
    /// A project's branches.
    #[command(subcommand)]
    Branch(branch::BranchCmd),
    /// The control node's event stream: every change, numbered, oldest
    /// first; `--follow` keeps printing new ones.
    Events(events::EventsArgs),
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

/// The CLI config file (`~/.config/kha/cli.toml` or `--config`).
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    token: Option<String>,
}

/// What every command that talks to the control node gets.
pub struct Ctx {
    /// Every call carries the admin token (kha-proto's one interceptor,
    /// the builder's too).
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
    if let Cmd::Lint { file, expand } = &cli.cmd {
        return lint::run(file, *expand, cli.json);
    }
    let mut ctx = connect(&cli).await?;
    match cli.cmd {
        Cmd::Project(c) => project::run(&mut ctx, c).await,
        Cmd::Build(c) => build::run(&mut ctx, c).await,
        Cmd::Log { job, follow } => log::run(&mut ctx, job, follow).await,
        Cmd::Builder(c) => builder::run(&mut ctx, c).await,
        Cmd::Branch(c) => branch::run(&mut ctx, c).await,
        Cmd::Events(a) => events::run(&mut ctx, a).await,
        Cmd::Lint { .. } => Ok(0),
    }
}

/// The server and token from flags, environment, the config file or the
/// control node's data dir (in that order), and a channel to the server.
async fn connect(cli: &Cli) -> Result<Ctx, Failure> {
    let file = load_config(cli.config.as_deref())?;
    let server = cli
        .server
        .clone()
        .or(file.server)
        .unwrap_or_else(|| "http://127.0.0.1:7700".into());
    let server = if server.contains("://") {
        server
    } else {
        format!("http://{server}")
    };
    let token = match cli.token.clone().or(file.token) {
        Some(t) => t,
        None => {
            let dir = cli
                .data_dir
                .clone()
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
    let auth = BearerAuth::new(&token)
        .map_err(|e| Failure(2, format!("the admin token cannot be sent: {e}")))?;
    let client = AdminServiceClient::new(auth.channel(channel))
        .max_decoding_message_size(kha_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kha_proto::MAX_MESSAGE_BYTES);
    Ok(Ctx {
        client,
        json: cli.json,
    })
}

fn load_config(path: Option<&Path>) -> Result<FileConfig, Failure> {
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
