//! Tests' git: a command in a repository of the test's own, as a fixed
//! author, failing the test when git fails.

use std::path::Path;
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "kha")
        .env("GIT_AUTHOR_EMAIL", "kha@example.org")
        .env("GIT_COMMITTER_NAME", "kha")
        .env("GIT_COMMITTER_EMAIL", "kha@example.org")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}
