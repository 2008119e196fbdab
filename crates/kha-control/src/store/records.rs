//! The records kept in sled, one tree per kind. Values are JSON behind a
//! format version byte, so the schema can evolve record by record.

use kha_core::view::Role;
use kha_core::{BuildId, BuildState, Epoch, JobId, JobState, Labels, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub repo_url: String,
    pub default_branch: String,
    pub timeout_secs: u64,
    pub image: String,
    pub created_ms: Millis,
    /// Seconds between polls of the remote; 0: never.
    #[serde(default)]
    pub poll_interval_secs: u64,
    #[serde(default)]
    pub build_tags: bool,
    /// A newer push cancels the branch's still-queued builds.
    #[serde(default)]
    pub cancel_superseded: bool,
    /// "owner/name" on GitHub, to match webhook payloads.
    #[serde(default)]
    pub github_repo: String,
    /// Verifies webhook signatures (and is the generic hook's token).
    #[serde(default)]
    pub webhook_secret: Secret,
    /// For a private repository.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Only people with a role on it see it.
    #[serde(default)]
    pub private: bool,
    /// Channels of `notifications:` set on the control node, replacing the
    /// `.travis.yml`'s: channel key → its value as YAML (`kha project notify`).
    #[serde(default)]
    pub notify: BTreeMap<String, String>,
    /// The version control system `repo_url` names.
    #[serde(default)]
    pub vcs: kha_core::spec::VcsKind,
    /// CVS: the module built.
    #[serde(default)]
    pub module: String,
    /// Subversion: how branches and tags map to paths (`vcs::svn::Layout`);
    /// empty: the standard trunk, branches, tags.
    #[serde(default)]
    pub layout: String,
    /// Pull requests from forks get the encrypted variables too (Travis's
    /// `share_encrypted_env_with_forks`); off by default.
    #[serde(default)]
    pub share_secrets_with_forks: bool,
    /// The limits its jobs ask builders for (0s: the builders' defaults).
    #[serde(default)]
    pub job_limits: kha_core::limits::JobLimits,
    /// At most this many of its jobs run at once (Travis's "limit
    /// concurrent jobs"); 0: no limit.
    #[serde(default)]
    pub max_running_jobs: u32,
    /// One build of a branch at a time: a later build's jobs wait until
    /// the earlier build is over.
    #[serde(default)]
    pub one_build_per_branch: bool,
    /// Keep the logs of its last N builds; 0: the server's policy.
    #[serde(default)]
    pub log_keep_builds: u32,
    /// Remove logs of its builds that ended more than this many days ago;
    /// 0: the server's policy.
    #[serde(default)]
    pub log_max_age_days: u64,
}

#[cfg(test)]
impl Project {
    /// A public git project with the defaults, for tests to change the
    /// fields they are about.
    pub fn for_test(name: &str) -> Project {
        Project {
            name: name.into(),
            repo_url: format!("https://example.com/{name}.git"),
            default_branch: "master".into(),
            timeout_secs: 60,
            image: "default".into(),
            created_ms: 0,
            poll_interval_secs: 0,
            build_tags: false,
            cancel_superseded: false,
            github_repo: String::new(),
            webhook_secret: Default::default(),
            credentials: None,
            private: false,
            notify: Default::default(),
            vcs: Default::default(),
            module: String::new(),
            layout: String::new(),
            share_secrets_with_forks: false,
            job_limits: Default::default(),
            max_running_jobs: 0,
            one_build_per_branch: false,
            log_keep_builds: 0,
            log_max_age_days: 0,
        }
    }
}

pub use kha_core::Secret;

/// HTTPS credentials for a private repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// What kha knows of one branch (or tag) of a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    pub head: String,
    pub tag: bool,
    pub last_build: BuildId,
    /// Set when the head was not built: "skipped" or "filtered".
    pub not_built: String,
    pub deleted: bool,
    pub updated_ms: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    pub id: BuildId,
    pub project: String,
    pub branch: String,
    pub commit: String,
    pub message: String,
    pub state: BuildState,
    pub created_ms: Millis,
    pub finished_ms: Millis,
    pub jobs: Vec<JobId>,
    pub warnings: Vec<String>,
    pub error: String,
    #[serde(default)]
    pub pr_number: u64,
    /// What started it: "api", "poll", "push", "pull_request", "generic".
    #[serde(default)]
    pub event: String,
    /// `jobs.fast_finish`.
    #[serde(default)]
    pub fast_finish: bool,
    /// The commit's author.
    #[serde(default)]
    pub author: String,
    /// `branch` names a tag.
    #[serde(default)]
    pub tag: bool,
    #[serde(default)]
    pub author_email: String,
    #[serde(default)]
    pub committer: String,
    #[serde(default)]
    pub committer_email: String,
    /// The state of the last finished push or API build on the branch when
    /// this one was created (Travis's `previous_state`: what "change" in
    /// `notifications:` compares with).
    #[serde(default)]
    pub previous_state: Option<BuildState>,
    /// `notifications:` of the `.travis.yml` it was built from; None: the
    /// file could not be read (Travis's defaults apply).
    #[serde(default)]
    pub notifications: Option<kha_core::travis::Notifications>,
    /// What started it, as Travis's conditions and `TRAVIS_*` variables
    /// see it (event type, pull request, tag, sender, commit range).
    #[serde(default)]
    pub context: Option<kha_core::travis::BuildContext>,
    /// Its build stages in the order they run (the expansion's); empty:
    /// no stages, every job runs at once.
    #[serde(default)]
    pub stages: Vec<String>,
}

/// The name a build is de-duplicated under (with its project and
/// commit): the branch, or for a pull request `:pr/N` (`:` cannot be in a
/// git ref, so no branch has it). A pull request build and a branch build
/// of one commit are different builds: their environments differ.
pub fn dedup_name(branch: &str, pr_number: u64) -> String {
    if pr_number > 0 {
        format!(":pr/{pr_number}")
    } else {
        branch.to_string()
    }
}

#[cfg(test)]
impl Build {
    /// A queued API build of `jobs` at a made-up commit, for tests to
    /// change the fields they are about.
    pub fn for_test(id: BuildId, project: &str, branch: &str, jobs: Vec<JobId>) -> Build {
        Build {
            id,
            project: project.into(),
            branch: branch.into(),
            commit: format!("{id:040}"),
            message: String::new(),
            state: BuildState::Queued,
            created_ms: 0,
            finished_ms: 0,
            jobs,
            warnings: vec![],
            error: String::new(),
            pr_number: 0,
            event: "api".into(),
            fast_finish: false,
            author: String::new(),
            tag: false,
            author_email: String::new(),
            committer: String::new(),
            committer_email: String::new(),
            previous_state: None,
            notifications: None,
            context: None,
            stages: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub build: BuildId,
    pub number: u32,
    pub project: String,
    pub state: JobState,
    /// Epoch of the current (or last) lease; 0 before the first.
    pub epoch: Epoch,
    /// How many times the job was handed out since it was last (re)queued
    /// by a person.
    pub attempts: u32,
    pub builder: String,
    pub started_ms: Millis,
    pub finished_ms: Millis,
    pub cancel_requested: bool,
    pub allow_failure: bool,
    pub requires: Labels,
    pub detail: String,
    pub log_len: u64,
    pub log_sha256: String,
    /// The matrix values that set this job apart.
    #[serde(default)]
    pub matrix: Vec<(String, String)>,
    /// `name` from `jobs.include`.
    #[serde(default)]
    pub name: String,
    /// Its build stage; empty when the build has no stages.
    #[serde(default)]
    pub stage: String,
    /// Key of the job's queue entry while it is queued; while it waits for
    /// its stage, the key it will be queued under; else 0.
    #[serde(default)]
    pub queue_key: u64,
    /// Where it goes in its project's queue (`kha_core::priority`).
    #[serde(default = "normal_priority")]
    pub priority: u8,
    pub spec: JobSpec,
}

fn normal_priority() -> u8 {
    kha_core::priority::NORMAL
}

#[cfg(test)]
impl Job {
    /// Job `number` of build `build`, queued, with an empty spec, for tests
    /// to change the fields they are about.
    pub fn for_test(id: JobId, build: BuildId, number: u32, project: &str) -> Job {
        Job {
            id,
            build,
            number,
            project: project.into(),
            state: JobState::Queued,
            epoch: 0,
            attempts: 0,
            builder: String::new(),
            started_ms: 0,
            finished_ms: 0,
            cancel_requested: false,
            allow_failure: false,
            requires: Labels::default(),
            detail: String::new(),
            log_len: 0,
            log_sha256: String::new(),
            matrix: vec![],
            name: String::new(),
            stage: String::new(),
            queue_key: 0,
            priority: kha_core::priority::NORMAL,
            spec: JobSpec::default(),
        }
    }
}

/// The fields of a job record its build's state is derived from.
/// Decoding only these skips the rest of the record (spec, labels, strings)
/// without allocating it: deriving a build's state reads every job of the
/// build, so a 200-job build paid 200 full decodes per transition.
#[derive(Debug, Clone, Deserialize)]
pub struct JobStateOnly {
    pub state: JobState,
    pub allow_failure: bool,
    /// Empty (no allocation) in a build without stages.
    #[serde(default)]
    pub stage: String,
}

/// The field of a build record its jobs' offers read: decoding only it
/// skips the rest of the record without allocating it.
#[derive(Debug, Clone, Deserialize)]
pub struct BuildContextOnly {
    #[serde(default)]
    pub context: Option<kha_core::travis::BuildContext>,
}

/// What a builder needs to run the job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobSpec {
    pub repo_url: String,
    pub branch: String,
    pub commit: String,
    pub phases: Vec<(String, Vec<String>)>,
    pub env: Vec<String>,
    pub timeout_secs: u64,
    pub image: String,
    #[serde(default)]
    pub vcs: kha_core::spec::VcsKind,
    /// CVS: the module.
    #[serde(default)]
    pub module: String,
    /// What the job caches (`cache:`).
    #[serde(default)]
    pub cache: Option<kha_core::cache::CacheSpec>,
    /// Travis's variables that come from the build (`TRAVIS_EVENT_TYPE`,
    /// `TRAVIS_PULL_REQUEST`, …), names and literal values, as records
    /// written before they were computed at offer time kept them. Empty in
    /// a new record: the offer computes them from the build's context
    /// ([`Build::context`]) and the job's fields, so a build's commit
    /// message (up to 32 KiB) and the rest are stored once per build, not
    /// once per job.
    #[serde(default)]
    pub vars: Vec<(String, String)>,
    /// The job's language (`TRAVIS_LANGUAGE`).
    #[serde(default)]
    pub language: String,
    /// Whether the job may see encrypted variables; their entries stay in
    /// `env`, encrypted (`travis::secure`), until a grant decrypts them.
    #[serde(default)]
    pub secure_env: kha_core::spec::SecureEnv,
    /// What the project asked of the builders' limits when the build was
    /// made.
    #[serde(default)]
    pub limits: kha_core::limits::JobLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRec {
    pub job: JobId,
    pub epoch: Epoch,
    pub builder: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the builder's secret; the secret itself is never kept.
    pub secret_sha256: String,
    pub revoked: bool,
    pub draining: bool,
    pub labels: Vec<String>,
    pub slots: u32,
    pub version: String,
    pub created_ms: Millis,
    pub last_seen_ms: Millis,
    /// An admin trusts it with encrypted variables (`kha builder trust`).
    #[serde(default)]
    pub trusted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolmentToken {
    pub id: String,
    pub token_sha256: String,
    pub description: String,
    pub created_ms: Millis,
    pub revoked: bool,
}

const FORMAT_V1: u8 = 1;

/// A person's account (tree `users`, keyed by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub email: String,
    /// argon2id in PHC form; empty: no password (GitHub sign-in only).
    #[serde(default)]
    pub password_hash: String,
    #[serde(default)]
    pub github_id: u64,
    #[serde(default)]
    pub github_login: String,
    #[serde(default)]
    pub role: Role,
    /// Roles on single projects.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    #[serde(default)]
    pub stars: BTreeSet<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created_ms: Millis,
    #[serde(default)]
    pub last_seen_ms: Millis,
}

/// A web session (tree `sessions`, keyed by the SHA-256 of its id, so the
/// database never holds a usable cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Empty: the break-glass admin token.
    pub user: String,
    pub csrf: String,
    pub created_ms: Millis,
    pub last_seen_ms: Millis,
    /// For the admin token's sessions: ties them to the token they were
    /// started with, so a new admin token ends them.
    #[serde(default)]
    pub admin_mark: String,
}

/// A user's API token (tree `api_tokens`, keyed by the SHA-256 of the token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_ms: Millis,
    /// 0: never.
    pub expires_ms: Millis,
    pub last_used_ms: Millis,
}

/// A scheduled build (Travis's cron) of a project's branch
/// (`trigger::cron` runs it; `kha_core::schedule` says when).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: u64,
    pub project: String,
    pub branch: String,
    /// "daily", "weekly" or "monthly"; empty with a cron expression.
    #[serde(default)]
    pub interval: String,
    /// Five fields, UTC; empty with an interval.
    #[serde(default)]
    pub cron: String,
    /// Travis's `dont_run_if_recent_build_exists`: skip a run when the
    /// branch had a build other than a cron build in the last 24 hours.
    #[serde(default)]
    pub dont_run_if_recent_build_exists: bool,
    pub created_ms: Millis,
    /// When it runs next; due once the clock reaches it.
    pub next_run_ms: Millis,
    /// When it last ran (or was skipped); 0: never.
    #[serde(default)]
    pub last_run_ms: Millis,
    /// What its last run did: "started build 12", "skipped: …", "failed: …".
    #[serde(default)]
    pub last_outcome: String,
    /// The build its last run started; 0: none.
    #[serde(default)]
    pub last_build: BuildId,
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing these plain structs cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => serde_json::from_slice(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown record format {v}")),
        None => Err("empty record".into()),
    }
}
