//! Fuzzes the `.travis.yml` reader: any bytes, through parsing, expansion
//! (with and without knowledge of the repository) and linting, must give a
//! result or an error, never a panic, and never more jobs than the bound.

#![no_main]

use kha_core::travis::{self, ExpandOptions, RepoFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = travis::should_skip(text);
    let report = travis::lint(text);
    assert!(report.jobs.len() <= travis::DEFAULT_MAX_JOBS);
    if let Ok(cfg) = travis::parse(text) {
        let opts = ExpandOptions {
            max_jobs: 20,
            repo: RepoFacts::from_root_files(["rebar.config", "Makefile", "package.json"]),
            branch: Some("master".into()),
            ..ExpandOptions::default()
        };
        if let Ok(exp) = travis::expand_with(&cfg, &opts) {
            assert!(exp.jobs.len() <= 20);
        }
        let _ = travis::branch_allowed(&cfg, "gh-pages", false);
        let _ = travis::branch_allowed(&cfg, "v1.2.3", true);
    }
});
