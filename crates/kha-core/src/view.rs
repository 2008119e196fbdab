//! What kha shows of its state to people and programs: one plain serde type
//! per concept (project, build, job, branch, builder, enrolment token),
//! returned by the control node's service layer and printed as JSON by the
//! CLI, so every interface speaks of a thing in the same shape. The wire
//! carries them as protobuf (`kha-proto` converts both ways); the store keeps
//! its own records, which hold more (secrets, queue keys, specs) than a
//! reader may see.

use crate::{BuildId, BuildState, Epoch, JobId, JobState, Millis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The limits its jobs ask builders for (0s: the builders' defaults).
    #[serde(default)]
    pub job_limits: crate::limits::JobLimits,
    /// At most this many of its jobs run at once; 0: no limit.
    #[serde(default)]
    pub max_running_jobs: u32,
    /// A branch's later build waits until its earlier one is over.
    #[serde(default)]
    pub one_build_per_branch: bool,
    /// Keep the logs of its last N builds; 0: the server's policy.
    #[serde(default)]
    pub log_keep_builds: u32,
    /// Remove the logs of builds that ended longer ago; 0: the server's
    /// policy.
    #[serde(default)]
    pub log_max_age_days: u64,
    pub name: String,
    pub repo_url: String,
    pub default_branch: String,
    pub timeout_secs: u64,
    pub image: String,
    pub created_ms: Millis,
    /// How often the remote is polled; 0: never (webhooks and the CLI only).
    pub poll_interval_secs: u64,
    pub build_tags: bool,
    /// A newer push cancels the branch's still-queued builds.
    pub cancel_superseded: bool,
    /// "owner/name" on GitHub, to match webhook payloads.
    pub github_repo: String,
    /// Only right after the project is added: the secret that signs its
    /// webhooks. Empty everywhere else.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webhook_secret: String,
    pub has_credentials: bool,
    /// Private: to anyone without a role on it the project does not exist.
    #[serde(default)]
    pub private: bool,
    /// The version control system its code lives in.
    #[serde(default)]
    pub vcs: crate::spec::VcsKind,
    /// CVS: the module built; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Subversion: how branches and tags map to paths; empty: standard.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layout: String,
    /// Pull requests from forks get the encrypted variables too (Travis's
    /// `share_encrypted_env_with_forks`).
    #[serde(default)]
    pub share_secrets_with_forks: bool,
}

/// One value of a job's build matrix (`rust: nightly`, `env: A=1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixValue {
    pub key: String,
    pub value: String,
}

impl MatrixValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> MatrixValue {
        MatrixValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Display for MatrixValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub build_id: BuildId,
    /// Shown to people as `build_id.number`.
    pub number: u32,
    pub state: JobState,
    pub epoch: Epoch,
    pub attempts: u32,
    pub builder: String,
    pub started_ms: Millis,
    pub finished_ms: Millis,
    pub log_len: u64,
    pub env: Vec<String>,
    pub allow_failure: bool,
    /// Why it ended as it did, or why a queued job waits.
    pub detail: String,
    pub requires: Vec<String>,
    pub matrix: Vec<MatrixValue>,
    /// `name` from `jobs.include`.
    pub name: String,
    /// Its build stage; empty when the build has no stages.
    #[serde(default)]
    pub stage: String,
    /// The kept logs of its earlier attempts (a lost builder, an expired
    /// lease), oldest first.
    #[serde(default)]
    pub earlier_logs: Vec<AttemptLog>,
    /// Its place in its project's queue (`crate::priority::name`).
    #[serde(default)]
    pub priority: String,
}

/// The log an earlier attempt of a job left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLog {
    /// 1 for the first.
    pub attempt: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub id: BuildId,
    pub project: String,
    pub branch: String,
    pub commit: String,
    pub message: String,
    pub state: BuildState,
    pub created_ms: Millis,
    pub finished_ms: Millis,
    pub jobs: Vec<Job>,
    pub warnings: Vec<String>,
    /// Set when the build could not be set up.
    pub error: String,
    /// A pull request build: its number; else 0.
    pub pr_number: u64,
    /// What started it: "api", "poll", "push", "pull_request", "generic".
    pub event: String,
    pub fast_finish: bool,
    /// The commit's author (name).
    #[serde(default)]
    pub author: String,
    /// `branch` names a tag.
    #[serde(default)]
    pub tag: bool,
    /// When its first job started; 0 before.
    #[serde(default)]
    pub started_ms: Millis,
    /// Its notifications, commit statuses and hook runs, oldest first.
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
    /// Its build stages in the order they run; empty: no stages.
    #[serde(default)]
    pub stages: Vec<String>,
}

/// One notification of a build to one target, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    /// email, irc, xmpp, webhooks, github_status, plugin:NAME, hook:NAME
    pub channel: String,
    /// Who or what it goes to (no secrets).
    pub target: String,
    /// The build event it tells of (build_started, build_finished, …).
    pub event: String,
    /// pending, retrying, sent, failed
    pub state: String,
    pub attempts: u32,
    /// The server's last answer, or why it failed.
    pub answer: String,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    /// When the next attempt is due (pending, retrying).
    pub next_ms: Millis,
}

/// What came of a branch's newest head. Shown (and serialized) as one
/// word: the last build's state, "skipped", "filtered", "deleted" or "-".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum BranchStatus {
    /// Its last build is in this state.
    Built(BuildState),
    /// The head's message has a skip marker.
    Skipped,
    /// The branch filters of its `.travis.yml` exclude the branch.
    Filtered,
    /// Gone from the remote.
    Deleted,
    /// Seen, never built.
    None,
}

impl From<BranchStatus> for String {
    fn from(s: BranchStatus) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for BranchStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "skipped" => BranchStatus::Skipped,
            "filtered" => BranchStatus::Filtered,
            "deleted" => BranchStatus::Deleted,
            "-" => BranchStatus::None,
            other => BranchStatus::Built(
                BuildState::parse(other).ok_or_else(|| format!("no branch state {other:?}"))?,
            ),
        })
    }
}

impl std::fmt::Display for BranchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BranchStatus::Built(s) => s.as_str(),
            BranchStatus::Skipped => "skipped",
            BranchStatus::Filtered => "filtered",
            BranchStatus::Deleted => "deleted",
            BranchStatus::None => "-",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    pub head: String,
    pub tag: bool,
    pub last_build_id: BuildId,
    pub state: BranchStatus,
    /// Gone from the remote (then `state` says "deleted" too).
    pub deleted: bool,
    pub updated_ms: Millis,
}

/// A builder as the control node sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderState {
    /// Connected and taking jobs.
    Connected,
    /// Connected, finishing its jobs, taking no new ones.
    Draining,
    /// Not connected.
    Offline,
    /// Its credential was revoked: it cannot come back.
    Revoked,
}

impl BuilderState {
    pub fn as_str(self) -> &'static str {
        match self {
            BuilderState::Connected => "connected",
            BuilderState::Draining => "draining",
            BuilderState::Offline => "offline",
            BuilderState::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for BuilderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    pub name: String,
    pub state: BuilderState,
    pub labels: Vec<String>,
    pub slots: u32,
    pub running_jobs: Vec<JobId>,
    pub last_seen_ms: Millis,
    pub version: String,
    /// An admin trusts it with encrypted variables.
    #[serde(default)]
    pub trusted: bool,
}

/// A project's public key, in the shape of Travis's API (`GET
/// /repos/OWNER/REPO/key`): what `kha encrypt` and other tools encrypt with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectKey {
    /// PEM (`-----BEGIN PUBLIC KEY-----`), RSA 4096.
    pub key: String,
    /// MD5 of the DER public key, colon-separated hex.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    pub id: String,
    /// Only right after it is created: it is never shown again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    pub description: String,
    pub created_ms: Millis,
    pub revoked: bool,
}

/// One page of a project's builds, newest first, and how many there are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPage {
    pub builds: Vec<Build>,
    pub total: u64,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

/// A job waiting for a builder, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    pub job: Job,
    pub project: String,
    pub branch: String,
    pub build_id: BuildId,
    /// "no connected builder offers python=3.13", "all 6 matching slots
    /// are busy", "offered to NAME", or "" when it is about to be offered.
    pub reason: String,
}

/// A job a builder runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveJob {
    pub job: Job,
    pub project: String,
    pub branch: String,
    pub build_id: BuildId,
}

/// A project and the last build of its default branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub project: Project,
    pub last_build: Option<Build>,
    /// The caller follows it (starred projects come first).
    #[serde(default)]
    pub starred: bool,
}

/// The front page: every project, what runs and what waits now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub projects: Vec<ProjectSummary>,
    pub running: Vec<ActiveJob>,
    pub queued: Vec<QueuedJob>,
}

/// What a person may do, globally or on one project; the effective role
/// on a project is the higher of the two. Ordered: each includes the one
/// before. `Admin` is global only.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Public projects only.
    #[default]
    None,
    /// Reads the project even when it is private.
    Viewer,
    /// Triggers, cancels and restarts its builds, changes its settings.
    Maintainer,
    /// Everything: projects, users, builders, the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Viewer => "viewer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Role::None),
            "viewer" => Ok(Role::Viewer),
            "maintainer" => Ok(Role::Maintainer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "no role {other:?}: roles are none, viewer, maintainer and admin"
            )),
        }
    }
}

/// A role on one project (`project` names the user when a project lists
/// its members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRole {
    pub project: String,
    pub role: Role,
}

/// A person's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub email: String,
    /// Set once they signed in with GitHub.
    pub github_login: String,
    /// The global role.
    pub role: Role,
    /// Roles on single projects.
    pub roles: Vec<ProjectRole>,
    pub disabled: bool,
    pub created_ms: Millis,
    /// Their last request (sessions and tokens, to the minute).
    pub last_seen_ms: Millis,
    /// Projects they follow.
    pub stars: Vec<String>,
    pub has_password: bool,
}

/// Who the caller is, as the control node sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// Empty when not signed in.
    pub name: String,
    /// "user", "admin token", "builder" or "anonymous".
    pub kind: String,
    pub role: Role,
    pub roles: Vec<ProjectRole>,
    pub stars: Vec<String>,
    /// Where the web UI is (for `kha login --web`).
    pub web_url: String,
}

/// A user's API token, as listed (the token itself is shown only once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_ms: Millis,
    /// 0: never.
    pub expires_ms: Millis,
    /// 0: never used.
    pub last_used_ms: Millis,
}

/// One thing someone did, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: Millis,
    /// A user name, "admin token", or "github:LOGIN" for a sign-in.
    pub actor: String,
    /// "build.trigger", "project.update", "user.add", …
    pub action: String,
    /// What it was done to: "p#12", a project, a user.
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

/// A scheduled build of a project's branch (Travis's cron): how often, and
/// what its last run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: u64,
    pub project: String,
    pub branch: String,
    /// "daily", "weekly" or "monthly"; empty with a cron expression.
    pub interval: String,
    /// Five fields, UTC; empty with an interval.
    pub cron: String,
    pub dont_run_if_recent_build_exists: bool,
    pub created_ms: Millis,
    pub next_run_ms: Millis,
    /// 0: it has not run yet.
    pub last_run_ms: Millis,
    /// "started build 12", "skipped: …", "not built: …", "failed: …".
    pub last_outcome: String,
    /// The build its last run started; 0: none.
    pub last_build_id: u64,
}

impl Schedule {
    /// How often it runs, as the CLI, the web UI and the audit log say it:
    /// `daily`, or `cron 0 3 * * *`.
    pub fn cadence(&self) -> String {
        if self.cron.is_empty() {
            self.interval.clone()
        } else {
            format!("cron {}", self.cron)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_people_read() {
        let m = MatrixValue::new("env", "A=1");
        assert_eq!(m.to_string(), "env=A=1");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"key":"env","value":"A=1"}"#
        );
        assert_eq!(
            BranchStatus::Built(BuildState::Passed).to_string(),
            "passed"
        );
        for s in [
            BranchStatus::Built(BuildState::Failed),
            BranchStatus::Skipped,
            BranchStatus::Filtered,
            BranchStatus::Deleted,
            BranchStatus::None,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<BranchStatus>(&json).unwrap(), s);
        }
        assert_eq!(
            serde_json::to_string(&BuilderState::Draining).unwrap(),
            r#""draining""#
        );
        for r in [Role::None, Role::Viewer, Role::Maintainer, Role::Admin] {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!(Role::Viewer < Role::Maintainer && Role::Maintainer < Role::Admin);
        assert!("owner"
            .parse::<Role>()
            .unwrap_err()
            .contains("none, viewer"));
    }
}
