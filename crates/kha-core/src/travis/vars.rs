//! The variables Travis sets for every job that come from the build
//! (Travis docs: Environment Variables, "Default Environment Variables";
//! travis-build `lib/travis/build/env/builtin.rb`): computed on the control
//! node from the [`BuildContext`] and the job, sent to the builder as names
//! and literal values. What only the builder knows (`TRAVIS_BUILD_DIR`,
//! `TRAVIS_TEST_RESULT`, `TRAVIS_CPU_ARCH`, `TRAVIS_SUDO`, `USER`, the
//! locale) it sets itself.

use super::BuildContext;

/// Travis cuts `TRAVIS_COMMIT_MESSAGE` at 32 KiB (`head -c 32768`).
pub const COMMIT_MESSAGE_MAX: usize = 32768;

/// The job's side of the variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFacts {
    pub build_id: u64,
    /// The job's number in its build (`3` of `12.3`).
    pub number: u32,
    pub job_id: u64,
    pub name: String,
    pub stage: String,
    pub language: String,
    /// The node's public URL (`https://ci.example.org`); empty when the
    /// control node does not know it: the web URLs are then not set.
    pub base_url: String,
}

/// The variables, in the order they are exported. Every name is a valid
/// shell name; values are literal (the builder quotes them).
pub fn job_vars(ctx: &BuildContext, job: &JobFacts) -> Vec<(String, String)> {
    let pr = ctx.pull_request.as_ref();
    let pr_field = |f: fn(&super::PullRequest) -> String| pr.map(f).unwrap_or_default();
    let mut v: Vec<(&str, String)> = vec![
        ("CI", "true".into()),
        ("TRAVIS", "true".into()),
        ("CONTINUOUS_INTEGRATION", "true".into()),
        ("HAS_JOSH_K_SEAL_OF_APPROVAL", "true".into()),
        ("PAGER", "cat".into()),
        ("DEBIAN_FRONTEND", "noninteractive".into()),
        ("RAILS_ENV", "test".into()),
        ("RACK_ENV", "test".into()),
        ("MERB_ENV", "test".into()),
        (
            "JRUBY_OPTS",
            "--server -Dcext.enabled=false -Xcompile.invokedynamic=false".into(),
        ),
        ("TRAVIS_EVENT_TYPE", ctx.event.as_str().into()),
        (
            "TRAVIS_PULL_REQUEST",
            pr.map_or("false".into(), |p| p.number.to_string()),
        ),
        (
            "TRAVIS_PULL_REQUEST_BRANCH",
            pr_field(|p| p.head_branch.clone()),
        ),
        ("TRAVIS_PULL_REQUEST_SHA", pr_field(|p| p.head_sha.clone())),
        (
            "TRAVIS_PULL_REQUEST_SLUG",
            pr_field(|p| p.head_repo.clone()),
        ),
        ("TRAVIS_BUILD_ID", job.build_id.to_string()),
        ("TRAVIS_BUILD_NUMBER", job.build_id.to_string()),
        ("TRAVIS_JOB_ID", job.job_id.to_string()),
        (
            "TRAVIS_JOB_NUMBER",
            format!("{}.{}", job.build_id, job.number),
        ),
        ("TRAVIS_JOB_NAME", job.name.clone()),
        ("TRAVIS_BUILD_STAGE_NAME", job.stage.clone()),
        ("TRAVIS_BRANCH", ctx.branch.clone()),
        ("TRAVIS_COMMIT", ctx.commit.clone()),
        // Travis reads it with `$(git log --format=%B -n 1)`: without
        // the trailing newlines.
        (
            "TRAVIS_COMMIT_MESSAGE",
            cut(ctx.commit_message.trim_end_matches('\n')).into(),
        ),
        ("TRAVIS_COMMIT_RANGE", ctx.commit_range.clone()),
        ("TRAVIS_REPO_SLUG", ctx.repo.clone()),
        ("TRAVIS_TAG", ctx.tag.clone().unwrap_or_default()),
        ("TRAVIS_LANGUAGE", job.language.clone()),
    ];
    if !job.base_url.is_empty() {
        let base = job.base_url.trim_end_matches('/');
        v.push((
            "TRAVIS_BUILD_WEB_URL",
            format!("{base}/builds/{}", job.build_id),
        ));
        v.push(("TRAVIS_JOB_WEB_URL", format!("{base}/jobs/{}", job.job_id)));
    }
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The first [`COMMIT_MESSAGE_MAX`] bytes, cut at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= COMMIT_MESSAGE_MAX {
        return s;
    }
    let mut end = COMMIT_MESSAGE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Travis's `TRAVIS_COMMIT_RANGE` of a push from `before` to `after`:
/// `before...after`, empty when the branch is new (`before` is GitHub's
/// all-zero id or unknown).
pub fn commit_range(before: &str, after: &str) -> String {
    if before.is_empty() || after.is_empty() || before.bytes().all(|b| b == b'0') {
        return String::new();
    }
    format!("{before}...{after}")
}

/// A valid shell variable name: what a builder accepts from the wire.
pub fn is_var_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// The `owner/name` of a GitHub repository URL (`https://github.com/o/n.git`,
/// `git@github.com:o/n`), for `TRAVIS_REPO_SLUG` when a project names no
/// GitHub repository.
pub fn github_slug(url: &str) -> Option<String> {
    let rest = url
        .split_once("github.com/")
        .or_else(|| url.split_once("github.com:"))?
        .1;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let (owner, name) = rest.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| format!("{owner}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::travis::{EventType, PullRequest};

    fn get<'a>(v: &'a [(String, String)], k: &str) -> Option<&'a str> {
        v.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn push_and_pull_request() {
        let job = JobFacts {
            build_id: 12,
            number: 3,
            job_id: 40,
            language: "rust".into(),
            ..JobFacts::default()
        };
        let push = BuildContext {
            event: EventType::Push,
            repo: "o/r".into(),
            branch: "main".into(),
            commit: "c1".into(),
            commit_message: "subject\n\nbody\n".into(),
            commit_range: commit_range("b0", "c1"),
            ..BuildContext::default()
        };
        let mut pr = push.clone();
        pr.event = EventType::PullRequest;
        pr.pull_request = Some(PullRequest {
            number: 2,
            head_repo: "fork/r".into(),
            head_branch: "feature".into(),
            head_sha: "h1".into(),
            draft: false,
            fork: true,
        });
        let mut tag = push.clone();
        tag.tag = Some("v1".into());
        tag.branch = "v1".into();
        // (context, variable, value)
        let table: &[(&BuildContext, &str, Option<&str>)] = &[
            (&push, "TRAVIS_PULL_REQUEST", Some("false")),
            (&push, "TRAVIS_PULL_REQUEST_BRANCH", Some("")),
            (&push, "TRAVIS_PULL_REQUEST_SHA", Some("")),
            (&push, "TRAVIS_PULL_REQUEST_SLUG", Some("")),
            (&push, "TRAVIS_EVENT_TYPE", Some("push")),
            (&push, "TRAVIS_TAG", Some("")),
            (&push, "TRAVIS_BRANCH", Some("main")),
            (&push, "TRAVIS_COMMIT_RANGE", Some("b0...c1")),
            (&push, "TRAVIS_COMMIT_MESSAGE", Some("subject\n\nbody")),
            (&push, "TRAVIS_BUILD_NUMBER", Some("12")),
            (&push, "TRAVIS_JOB_NUMBER", Some("12.3")),
            (&push, "TRAVIS_JOB_ID", Some("40")),
            (&push, "TRAVIS_REPO_SLUG", Some("o/r")),
            (&push, "TRAVIS_LANGUAGE", Some("rust")),
            (&push, "TRAVIS_BUILD_WEB_URL", None),
            (&push, "CONTINUOUS_INTEGRATION", Some("true")),
            (&pr, "TRAVIS_PULL_REQUEST", Some("2")),
            (&pr, "TRAVIS_PULL_REQUEST_BRANCH", Some("feature")),
            (&pr, "TRAVIS_PULL_REQUEST_SHA", Some("h1")),
            (&pr, "TRAVIS_PULL_REQUEST_SLUG", Some("fork/r")),
            (&pr, "TRAVIS_EVENT_TYPE", Some("pull_request")),
            (&pr, "TRAVIS_BRANCH", Some("main")),
            (&tag, "TRAVIS_TAG", Some("v1")),
            (&tag, "TRAVIS_BRANCH", Some("v1")),
        ];
        for (ctx, k, want) in table {
            assert_eq!(get(&job_vars(ctx, &job), k), *want, "{k} of {ctx:?}");
        }
        let web = JobFacts {
            base_url: "https://ci.example.org/".into(),
            ..job.clone()
        };
        let v = job_vars(&push, &web);
        assert_eq!(
            get(&v, "TRAVIS_BUILD_WEB_URL"),
            Some("https://ci.example.org/builds/12")
        );
        assert_eq!(
            get(&v, "TRAVIS_JOB_WEB_URL"),
            Some("https://ci.example.org/jobs/40")
        );
        assert!(v.iter().all(|(k, _)| is_var_name(k)));
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let ctx = BuildContext {
            commit_message: "é".repeat(COMMIT_MESSAGE_MAX),
            ..BuildContext::default()
        };
        let v = job_vars(&ctx, &JobFacts::default());
        let m = get(&v, "TRAVIS_COMMIT_MESSAGE").unwrap();
        assert_eq!(m.len(), COMMIT_MESSAGE_MAX);
    }

    #[test]
    fn ranges_names_and_slugs() {
        assert_eq!(commit_range("a", "b"), "a...b");
        assert_eq!(commit_range(&"0".repeat(40), "b"), "");
        assert_eq!(commit_range("", "b"), "");
        for (name, ok) in [
            ("A", true),
            ("_x1", true),
            ("1A", false),
            ("A-B", false),
            ("", false),
            ("A;B", false),
        ] {
            assert_eq!(is_var_name(name), ok, "{name}");
        }
        for (url, want) in [
            ("https://github.com/o/n.git", Some("o/n")),
            ("git@github.com:o/n", Some("o/n")),
            ("https://github.com/o/n/", Some("o/n")),
            ("https://example.org/o/n", None),
            ("https://github.com/o", None),
        ] {
            assert_eq!(github_slug(url).as_deref(), want, "{url}");
        }
    }
}
