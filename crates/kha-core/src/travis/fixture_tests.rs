//! The real `.travis.yml` files in `testdata/` (copied from
//! `shared/fixtures/travis/`, see `testdata/README.md` for where each comes
//! from) all parse, and each expands to the jobs derived by hand from
//! Travis's rules, in Travis's order.

use super::*;
use std::path::Path;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/travis/testdata");

fn read(name: &str) -> String {
    let path = Path::new(DIR).join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

/// `k=v …` of the job's matrix values, then `!` if allowed to fail, then
/// `[stage]`.
fn summary(j: &JobPlan) -> String {
    let mut s: Vec<String> = j.matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if j.allow_failure {
        s.push("!".into());
    }
    if let Some(st) = &j.stage {
        s.push(format!("[{st}]"));
    }
    s.join(" ")
}

fn expand_file(name: &str) -> (Config, Vec<JobPlan>) {
    let cfg = parse(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let jobs = expand(&cfg, DEFAULT_MAX_JOBS).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.number as usize, i + 1, "{name}: numbering");
    }
    (cfg, jobs)
}

fn versions(key: &str, values: &[&str], prefix: &str) -> Vec<String> {
    values
        .iter()
        .map(|v| format!("{prefix}{key}={v}"))
        .collect()
}

/// Every fixture, with the summaries of its jobs in order.
fn expected() -> Vec<(&'static str, Vec<String>)> {
    let ripgrep =
        |os: &str, rust: &str, env: &str| format!("os={os} dist=xenial rust={rust} env={env}");
    let flask = |py: &str, env: &str| format!("os=linux dist=xenial python={py} env=TOXENV={env}");
    vec![
        (
            "AntidoteDB__antidote.travis.yml",
            versions("otp_release", &["21.3", "22.3", "23.0"], "dist=trusty "),
        ),
        (
            "BurntSushi__ripgrep.travis.yml",
            vec![
                ripgrep("linux", "nightly", "TARGET=i686-unknown-linux-musl"),
                ripgrep("linux", "nightly", "TARGET=x86_64-unknown-linux-musl"),
                ripgrep(
                    "osx",
                    "nightly",
                    "TARGET=x86_64-apple-darwin XML_CATALOG_FILES=/usr/local/etc/xml/catalog",
                ),
                ripgrep(
                    "linux",
                    "nightly",
                    "TARGET=arm-unknown-linux-gnueabihf GCC_VERSION=4.8",
                ),
                ripgrep("linux", "beta", "TARGET=x86_64-unknown-linux-musl"),
                ripgrep("linux", "beta", "TARGET=x86_64-unknown-linux-gnu"),
                ripgrep("linux", "1.41.0", "TARGET=x86_64-unknown-linux-gnu"),
                ripgrep("linux", "1.41.0", "TARGET=x86_64-unknown-linux-musl"),
                ripgrep(
                    "linux",
                    "1.41.0",
                    "TARGET=arm-unknown-linux-gnueabihf GCC_VERSION=4.8",
                ),
            ],
        ),
        (
            "basho__riak_core.travis.yml",
            versions("otp_release", &["20.3.8", "21.3", "22.3"], ""),
        ),
        (
            "davisp__jiffy.travis.yml",
            versions(
                "otp_release",
                &[
                    "23.0",
                    "22.2.4",
                    "21.3.8.1",
                    "20.3.8.22",
                    "19.3",
                    "18.3",
                    "17.5",
                    "R16B03-1",
                ],
                "",
            ),
        ),
        (
            "devinus__poolboy.travis.yml",
            versions(
                "otp_release",
                &["21.0.4", "20.3.8.2", "19.3", "18.3", "17.4"],
                "",
            ),
        ),
        ("expressjs__express.travis.yml", {
            let mut v = versions(
                "node_js",
                &[
                    "0.10", "0.12", "1.8", "2.5", "3.3", "4.9", "5.12", "6.17", "7.10", "8.17",
                    "9.11", "10.23", "11.15", "12.18",
                ],
                "",
            );
            // The include, allowed to fail by `env` alone.
            v.push(
                "node_js=13 env=NVM_NODEJS_ORG_MIRROR=https://nodejs.org/download/nightly !".into(),
            );
            v
        }),
        (
            "ferd__recon.travis.yml",
            versions(
                "otp_release",
                &["23.0", "22.0", "21.0", "20.0", "19.3", "18.3"],
                "",
            ),
        ),
        (
            "inaka__elvis.travis.yml",
            versions(
                "otp_release",
                &["19.2", "20.3", "21.3", "22.0"],
                "dist=trusty ",
            ),
        ),
        (
            "lfe__lfe.travis.yml",
            [
                "22.0", "21.0", "20.0", "19.3", "19.0", "18.2", "18.0", "17.5", "17.1", "R16B03-1",
            ]
            .iter()
            .map(|v| format!("otp_release={v} env=PATH=$PATH:."))
            .collect(),
        ),
        // No matrix key at all: one job.
        ("libuv__libuv.travis.yml", vec![String::new()]),
        // Include-only matrix: no extra default job.
        (
            "mochi__mochiweb.travis.yml",
            versions(
                "otp_release",
                &["17.5", "R16B03-1", "R15B03"],
                "dist=trusty ",
            ),
        ),
        (
            "ninenines__cowboy.travis.yml",
            versions("otp_release", &["R15B", "R14B04", "R14B03", "R14B02"], ""),
        ),
        (
            "pallets__flask.travis.yml",
            vec![
                flask("3.7", "py,codecov"),
                flask("3.6", "py,codecov"),
                flask("3.5", "py,codecov"),
                flask("3.4", "py,codecov"),
                flask("2.7", "py,codecov"),
                // Allowed failures keep their place in the matrix.
                flask("nightly", "py,codecov") + " !",
                flask("pypy3.5-6.0", "py,codecov") + " !",
                // Includes inherit the first python value.
                flask("3.7", "docs-html"),
                flask("3.7", "devel,lowest,codecov"),
            ],
        ),
        (
            "psf__requests.travis.yml",
            vec![
                "python=2.7 [test]".into(),
                "python=3.5 [test]".into(),
                "python=3.6 [test]".into(),
                "python=3.7 [test]".into(),
                "dist=xenial python=pypy3 [test]".into(),
                "python=3.8 [test]".into(),
                "python=3.6 [coverage]".into(),
            ],
        ),
        (
            "rack__rack.travis.yml",
            // Allowed failures keep their number (travis-core).
            vec![
                "rvm=rbx-2 !".into(),
                "rvm=jruby-9.0.4.0".into(),
                "rvm=jruby-head !".into(),
            ],
        ),
        ("serde-rs__serde.travis.yml", {
            let mut v = versions(
                "rust",
                &[
                    "stable", "beta", "nightly", "1.13.0", "1.19.0", "1.20.0", "1.21.0", "1.25.0",
                    "1.26.0", "1.27.0", "1.28.0", "1.31.0", "1.34.0", "1.36.0",
                ],
                "",
            );
            v.push("name=Clippy !".into());
            v.push("rust=nightly name=Emscripten !".into());
            v
        }),
        ("sinatra__sinatra.travis.yml", {
            let mut v = versions(
                "rvm",
                &["2.3.8", "2.4.10", "2.5.8", "2.6.6", "2.7.1", "3.0.0"],
                "dist=xenial ",
            );
            v.push("dist=xenial rvm=jruby-9.2.16.0 !".into());
            v
        }),
        (
            "spf13__cobra.travis.yml",
            vec![
                "go=1.14.x env=GO111MODULE=on [test]".into(),
                "go=1.15.x env=GO111MODULE=on [test]".into(),
                "go=tip env=GO111MODULE=on ! [test]".into(),
                // The include inherits the first env entry.
                "go=1.14.x env=GO111MODULE=on [build]".into(),
            ],
        ),
        (
            "talentdeficit__jsx.travis.yml",
            versions(
                "otp_release",
                &[
                    "22.0.7", "21.3.3", "20.3", "19.3", "18.3", "17.5", "R16B03-1",
                ],
                "",
            ),
        ),
        (
            "uwiger__gproc.travis.yml",
            versions("otp_release", &["23.0.3", "22.3", "21.3", "20.3.8.22"], ""),
        ),
    ]
}

#[test]
fn every_fixture_expands_as_travis_would() {
    let table = expected();
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap_or_else(|e| panic!("{DIR}: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    names.sort();
    let listed: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed, "every fixture needs an expectation");
    for (name, want) in table {
        let (_, jobs) = expand_file(name);
        let got: Vec<String> = jobs.iter().map(summary).collect();
        assert_eq!(got, want, "{name}");
    }
}

/// The copies match `shared/fixtures/travis` when it is beside the repo
/// (`<repo>/../shared`); the copies alone keep the tests self-contained.
#[test]
fn copies_match_the_shared_fixtures() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/travis");
    let Ok(dir) = std::fs::read_dir(&shared) else {
        return;
    };
    for e in dir.filter_map(Result::ok) {
        let name = e.file_name().into_string().unwrap_or_default();
        if !name.ends_with(".yml") {
            continue;
        }
        let theirs = std::fs::read(e.path()).unwrap();
        let ours = std::fs::read(Path::new(DIR).join(&name))
            .unwrap_or_else(|_| panic!("{name} is in shared/fixtures/travis but not in testdata/"));
        assert_eq!(ours, theirs, "{name} differs from shared/fixtures/travis");
    }
}

#[test]
fn ripgrep_details() {
    let (cfg, jobs) = expand_file("BurntSushi__ripgrep.travis.yml");
    assert!(cfg.fast_finish);
    // env.global (given as mappings) first, then the job's own.
    assert_eq!(
        jobs[0].env,
        [
            "PROJECT_NAME=ripgrep",
            "RUST_BACKTRACE=full",
            "TARGET=i686-unknown-linux-musl"
        ]
    );
    assert_eq!(jobs[0].phases.install, ["ci/install.sh"]);
    assert_eq!(jobs[0].phases.script, ["ci/script.sh"]);
    assert_eq!(jobs[2].requires.get("os"), Some("osx"));
    assert_eq!(jobs[6].requires.get("rust"), Some("1.41.0"));
    // branches.only: master and a tag regex.
    assert!(branch_allowed(&cfg, "master", false));
    assert!(branch_allowed(&cfg, "11.0.2", true));
    assert!(!branch_allowed(&cfg, "ag/feature", false));
    assert!(!branch_allowed(&cfg, "nightly-tag", true));
    // notifications.email.on_success: never; failures still mail.
    assert_eq!(cfg.notifications.email[0].on_success, Frequency::Never);
    assert!(cfg.notifications.email[0].wants(Outcome::Failed, Some(true)));
    assert!(!cfg.notifications.email[0].wants(Outcome::Passed, Some(false)));
    // addons (root and two includes), before_deploy, deploy.
    let kept: Vec<&str> = cfg.kept.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kept, ["addons", "before_deploy", "deploy"]);
}

#[test]
fn erlang_defaults_and_given_phases() {
    let (_, jobs) = expand_file("basho__riak_core.travis.yml");
    // No install given: the rebar default, decided on the builder.
    assert_eq!(jobs[0].phases.install.len(), 1);
    assert!(
        jobs[0].phases.install[0].starts_with("if "),
        "{:?}",
        jobs[0].phases.install
    );
    assert_eq!(jobs[0].phases.script.len(), 2);
    assert!(jobs[0]
        .builtin_env
        .contains(&("TRAVIS_OTP_RELEASE".into(), "20.3.8".into())));

    // The same with the repository known: rebar3 from its lock file.
    let cfg = parse(&read("mochi__mochiweb.travis.yml")).unwrap();
    let opts = ExpandOptions {
        repo: RepoFacts::from_root_files(["rebar.config", "rebar.lock", "Makefile"]),
        ..ExpandOptions::default()
    };
    let jobs = expand_with(&cfg, &opts).unwrap().jobs;
    assert_eq!(jobs[0].phases.install, ["rebar3 get-deps"]);
    assert_eq!(jobs[0].phases.script, ["rebar3 eunit"]);
    let opts = ExpandOptions {
        repo: RepoFacts::from_root_files(["Makefile"]),
        ..ExpandOptions::default()
    };
    let jobs = expand_with(&cfg, &opts).unwrap().jobs;
    assert!(jobs[0].phases.install.is_empty());
    assert_eq!(jobs[0].phases.script, ["make test"]);

    // `install: true` skips the default.
    let (cfg, jobs) = expand_file("lfe__lfe.travis.yml");
    assert_eq!(jobs[0].phases.install, ["true"]);
    assert_eq!(jobs[0].phases.before_script.len(), 2);
    assert_eq!(jobs[0].env, ["PATH=$PATH:."]);
    assert!(!cfg.notifications.email[0].enabled);

    let (_, jobs) = expand_file("AntidoteDB__antidote.travis.yml");
    assert_eq!(jobs[1].phases.install, ["make", "./rebar3 update"]);
    assert_eq!(jobs[1].phases.script.len(), 7);
    assert_eq!(jobs[1].phases.after_failure.len(), 1);
}

#[test]
fn include_overrides_and_allowed_failures() {
    let (_, jobs) = expand_file("serde-rs__serde.travis.yml");
    // Job-level script replaces the root's; the others keep the root's.
    assert_eq!(jobs[0].phases.script.len(), 6);
    assert_eq!(
        jobs[4].phases.script,
        [
            "cd \"${TRAVIS_BUILD_DIR}/serde\"",
            "cargo build --no-default-features",
            "cargo build"
        ]
    );
    assert_eq!(
        jobs[9].phases.before_script,
        ["sed -i /test_suite/d Cargo.toml"]
    );
    // No install given: Rust's default.
    assert_eq!(jobs[0].phases.install, ["cargo build --verbose"]);
    let clippy = &jobs[14];
    assert_eq!(clippy.name.as_deref(), Some("Clippy"));
    assert_eq!(clippy.phases.install.len(), 5);
    assert_eq!(clippy.requires.get("rust"), Some("stable"));
    assert!(clippy.allow_failure);

    let (cfg, jobs) = expand_file("expressjs__express.travis.yml");
    assert!(cfg.env_global.is_empty());
    assert_eq!(
        jobs[14].env,
        ["NVM_NODEJS_ORG_MIRROR=https://nodejs.org/download/nightly"]
    );
    assert!(jobs[..14]
        .iter()
        .all(|j| !j.allow_failure && j.env.is_empty()));
    assert_eq!(jobs[0].phases.before_install.len(), 5);
    assert_eq!(jobs[0].phases.script, ["npm run test-ci", "npm run lint"]);
}

#[test]
fn stages_and_notifications() {
    let (_, jobs) = expand_file("psf__requests.travis.yml");
    assert!(jobs[..6]
        .iter()
        .all(|j| j.phases.script == ["make test-readme", "make ci"]));
    assert_eq!(jobs[6].phases.script, ["codecov"]);
    assert!(jobs.iter().all(|j| j.phases.install == ["make"]));

    let cfg = parse(&read("libuv__libuv.travis.yml")).unwrap();
    assert!(!cfg.notifications.email[0].enabled);
    let irc = cfg.notifications.irc[0].clone();
    assert_eq!(irc.recipients, ["irc.freenode.net#libuv"]);
    assert_eq!(irc.on_success, Frequency::Always);

    let cfg = parse(&read("AntidoteDB__antidote.travis.yml")).unwrap();
    assert_eq!(
        cfg.notifications.email[0].recipients,
        ["bieniusa@cs.uni-kl.de"]
    );
    assert_eq!(cfg.notifications.email[0].on_success, Frequency::Change);

    let cfg = parse(&read("ferd__recon.travis.yml")).unwrap();
    assert!(branch_allowed(&cfg, "master", false));
    assert!(!branch_allowed(&cfg, "dev", false));
}

#[test]
fn every_fixture_lints_without_errors() {
    for (name, _) in expected() {
        let r = lint(&read(name));
        assert!(r.is_ok(), "{name}:\n{}", r.render());
        for w in &r.warnings {
            assert!(!w.message.is_empty());
        }
    }
}
