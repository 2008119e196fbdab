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
pub mod logs;
pub mod mask;
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
}
