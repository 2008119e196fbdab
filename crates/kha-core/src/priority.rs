//! How soon a queued job runs, within its project's queue: the higher
//! priority first, and within one priority in the order they were queued.
//! A build's priority comes from what started it (its default branch before
//! other branches, branches before pull requests); a maintainer may move a
//! build to the front with "run next", which also puts it ahead of the
//! other projects' turns.

/// Pull requests.
pub const LOW: u8 = 0;
/// Branches other than the default one, tags, cron builds of them.
pub const NORMAL: u8 = 1;
/// The project's default branch.
pub const DEFAULT_BRANCH: u8 = 2;
/// A build a maintainer asked to run next (`kha build prioritize`).
pub const NEXT: u8 = 3;

/// The priority a new build gets.
pub fn for_build(pull_request: bool, default_branch: bool) -> u8 {
    match (pull_request, default_branch) {
        (true, _) => LOW,
        (false, true) => DEFAULT_BRANCH,
        (false, false) => NORMAL,
    }
}

/// Its name, as `kha build show` and the API give it.
pub fn name(p: u8) -> &'static str {
    match p {
        LOW => "low",
        NORMAL => "normal",
        DEFAULT_BRANCH => "default-branch",
        _ => "next",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_branch_before_other_branches_before_pull_requests() {
        assert!(for_build(false, true) > for_build(false, false));
        assert!(for_build(false, false) > for_build(true, false));
        // A pull request into the default branch is still a pull request.
        assert_eq!(for_build(true, true), LOW);
        const { assert!(NEXT > DEFAULT_BRANCH) };
        assert_eq!(name(NEXT), "next");
    }
}
