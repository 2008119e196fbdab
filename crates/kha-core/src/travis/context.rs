//! What a build was started by: the facts Travis's conditions (`if:`) are
//! evaluated against and its `TRAVIS_*` variables are computed from. The
//! control node fills one in per build from the trigger (a push, a pull
//! request, the API, a schedule); `kha lint --expand` builds one from its
//! flags.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Travis's event types (`TRAVIS_EVENT_TYPE`, the `type` of conditions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A push to a branch or a tag; kha's polling counts as a push.
    #[default]
    Push,
    PullRequest,
    /// Started by a person or a program through the CLI or API.
    Api,
    /// Started by a schedule.
    Cron,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Push => "push",
            EventType::PullRequest => "pull_request",
            EventType::Api => "api",
            EventType::Cron => "cron",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<EventType, String> {
        Ok(match s {
            "push" => EventType::Push,
            "pull_request" | "pr" => EventType::PullRequest,
            "api" => EventType::Api,
            "cron" => EventType::Cron,
            other => {
                return Err(format!(
                    "unknown event type {other:?}: use push, pull_request, api or cron"
                ))
            }
        })
    }
}

/// The pull request a build is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    /// The repository the change comes from (`owner/name`).
    pub head_repo: String,
    pub head_branch: String,
    /// The commit at the head of the pull request (not the merge commit).
    pub head_sha: String,
    pub draft: bool,
    /// From another repository than the build's ([`is_fork`], decided once
    /// from the webhook, which names both): Travis's `fork`, and what keeps
    /// encrypted variables from the build.
    #[serde(default)]
    pub fork: bool,
}

/// Is a pull request whose head is in `head_repo` (None: the repository is
/// gone, a deleted fork) a fork of `base_repo`? GitHub's names compare
/// without case, as GitHub's repository names do.
pub fn is_fork(base_repo: &str, head_repo: Option<&str>) -> bool {
    match head_repo {
        Some(head) => base_repo.is_empty() || !head.eq_ignore_ascii_case(base_repo),
        None => true,
    }
}

/// The facts of one build, as Travis's conditions and variables see them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildContext {
    pub event: EventType,
    /// The repository slug (`owner/name`); kha's project name when the
    /// project has no GitHub repository.
    pub repo: String,
    /// The branch: for a pull request its base branch, for a tag build the
    /// tag's name (as on Travis).
    pub branch: String,
    /// The tag, for a build of a tag.
    pub tag: Option<String>,
    pub commit: String,
    pub commit_message: String,
    /// `first...last` of a push (Travis's `TRAVIS_COMMIT_RANGE`), empty
    /// when unknown.
    pub commit_range: String,
    /// Who started it (the GitHub login of a push's or a pull request's
    /// sender, the kha user of an API build); empty when unknown.
    pub sender: String,
    pub pull_request: Option<PullRequest>,
}

impl BuildContext {
    /// A pull request from another repository (Travis's `fork`), as the
    /// trigger decided it ([`is_fork`]).
    pub fn fork(&self) -> bool {
        self.pull_request.as_ref().is_some_and(|pr| pr.fork)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for e in [
            EventType::Push,
            EventType::PullRequest,
            EventType::Api,
            EventType::Cron,
        ] {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
        }
        assert!("tag".parse::<EventType>().is_err());
    }

    #[test]
    fn fork_is_a_pull_request_from_elsewhere() {
        // (base, head, fork)
        let table = [
            ("o/r", Some("o/r"), false),
            ("Octo/Repo", Some("octo/repo"), false),
            ("o/r", Some("other/r"), true),
            ("o/r", None, true),
            ("", Some("o/r"), true),
        ];
        for (base, head, want) in table {
            assert_eq!(is_fork(base, head), want, "{base} {head:?}");
        }
        let mut c = BuildContext {
            repo: "o/r".into(),
            ..BuildContext::default()
        };
        assert!(!c.fork());
        c.pull_request = Some(PullRequest {
            head_repo: "other/r".into(),
            fork: true,
            ..PullRequest::default()
        });
        assert!(c.fork());
    }
}
