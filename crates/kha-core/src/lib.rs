//! kha-core owns kha's domain: ids, the job and build state machines, leases
//! with fencing epochs, builder label matching, log-offset arithmetic, the
//! protocol limits and the `.travis.yml` model. It does no I/O and knows
//! nothing of tokio, tonic, prost or sled, so everything here is tested by
//! tables and a fake clock.

pub mod cache;
pub mod clock;
pub mod cvs;
pub mod event;
pub mod labels;
pub mod lease;
pub mod limits;
#[cfg(feature = "logging")]
pub mod logging;
pub mod logs;
pub mod mask;
pub mod priority;
pub mod schedule;
pub mod secret;
pub mod shell;
pub mod spec;
pub mod stages;
pub mod state;
pub mod term;
pub mod time;
pub mod travis;
pub mod view;

pub use clock::{Clock, FakeClock, Millis, SystemClock};
pub use event::{Event, EventFilter, EventKind};
pub use labels::Labels;
pub use lease::{Lease, LeaseTable};
pub use secret::Secret;
pub use spec::JobSpec;
pub use state::{BuildState, JobOutcome, JobState, TransitionError};

/// Identifies a build; builds are numbered globally, in creation order.
pub type BuildId = u64;
/// Identifies a job; shown to people as `build.number` (e.g. `12.1`).
pub type JobId = u64;
/// Fencing epoch of a job's lease: bumped every time the job is handed out.
pub type Epoch = u64;

/// The protocol's major version. A builder with another major is refused.
pub const PROTOCOL_MAJOR: u32 = 1;
/// Minor version; minors of one major are compatible. 1.1 added typed
/// reject reasons and FinishJob refusals (1.0 peers are still understood).
pub const PROTOCOL_MINOR: u32 = 1;

/// Checks a project name: it appears in paths, keys and URLs, so it is kept
/// to a small, unambiguous alphabet.
pub fn validate_project_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err("project name must be 1 to 100 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(format!(
            "project name {name:?} may hold only letters, digits, '-', '_' and '.', and must not start with '.'"
        ));
    }
    Ok(())
}

/// Checks a branch or tag name (for Subversion, a branch's path such as
/// `branches/x`) before it is built. Such names reach the store's keys,
/// the version-control clients' arguments, the job's environment, the
/// daemons' logs and the web UI, and come from webhooks and API callers
/// as much as from repositories. The rules are git's (`git
/// check-ref-format`), so every name a git repository can hold passes;
/// they also keep out what could be read as a path upward (`..`), an
/// option (`-x`), a new log line or the end of a C string (control
/// characters).
pub fn validate_ref_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("branch or tag name {name:?} {why}"));
    if name.is_empty() || name.len() > 255 {
        return bad("must be 1 to 255 bytes");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return bad(&format!("may not hold {c:?}"));
    }
    if name.contains("..") || name.contains("@{") || name == "@" {
        return bad("may not hold \"..\" or \"@{\", or be \"@\"");
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') || name.ends_with('.')
    {
        return bad("may not start with '-' or '/', or end with '/' or '.'");
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.') || part.ends_with(".lock"))
    {
        return bad(
            "may not have an empty part, a part starting with '.', or one ending in \".lock\"",
        );
    }
    Ok(())
}

/// Checks a commit a caller asked for (a full or abbreviated id, a
/// Subversion revision, a CVS date): short, one line, not an option.
pub fn validate_commit_name(commit: &str) -> Result<(), String> {
    if commit.is_empty()
        || commit.len() > 100
        || commit.starts_with('-')
        || commit.chars().any(char::is_control)
    {
        return Err(format!(
            "commit {commit:?} must be 1 to 100 characters on one line, not starting with '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        for (name, ok) in [
            ("kha", true),
            ("my-proj_1.x", true),
            ("", false),
            (".hidden", false),
            ("a/b", false),
            ("a b", false),
            ("ü", false),
        ] {
            assert_eq!(validate_project_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn ref_names() {
        for name in [
            "master",
            "feature/x-1",
            "v1.2.3",
            "branches/1.x",
            "pull/12",
            "$(touch${IFS}pwned)",
            "<b>bold</b>",
            "a;b|c&d'e\"f`g",
            "ünïcode",
        ] {
            assert_eq!(validate_ref_name(name), Ok(()), "{name:?}");
        }
        for name in [
            "",
            "../../etc/passwd",
            "a/../b",
            "a\nb",
            "a\0b",
            "a\rb",
            "a\x1b[31mb",
            "-rf",
            "/abs",
            "trail/",
            "a//b",
            ".hidden",
            "a/.hidden",
            "x.lock",
            "dot.",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[1]",
            "a\\b",
            "@",
            "a@{1}",
        ] {
            assert!(validate_ref_name(name).is_err(), "{name:?}");
        }
        assert!(validate_ref_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn commit_names() {
        for c in ["4b825dc", "r12", "12", "2024-01-02 03:04:05"] {
            assert_eq!(validate_commit_name(c), Ok(()), "{c:?}");
        }
        for c in ["", "-x", "a\nb", "a\0"] {
            assert!(validate_commit_name(c).is_err(), "{c:?}");
        }
        assert!(validate_commit_name(&"0".repeat(101)).is_err());
    }
}
