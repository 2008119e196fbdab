//! Toolchains, images and foreign architectures, end to end: a real
//! control node and lxc builder, jobs asking for `otp_release`, `rust`
//! and `arch` through `.travis.yml`. The images come from the cache
//! `deploy/test-images.sh` fills (see `kha_tests::test_images_dir`).
//!
//! A test that can be skipped for several reasons says the first that
//! holds: each `ignore` applies only when the ones above it do not, since
//! a second one is an unused attribute, which clippy's `-D warnings` turns
//! into an error (a machine with neither the images nor Debian's Erlang).
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::path::Path;
use std::time::Duration;

fn job_ids(build: &serde_json::Value) -> Vec<u64> {
    build["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect()
}

/// A cluster with project `demo` from `repo` and one lxc builder `b`
/// with `images` linked from the cache and `builder.toml` as its config.
fn cluster(repo: &Repo, images: &[&str], builder_toml: &str) -> Cluster {
    let mut c = Fixture::new().project("demo", &repo.url()).start();
    let data = c.path("builder-b");
    for name in images {
        link_test_image(&data, name);
    }
    let config = c.path("builder.toml");
    std::fs::write(&config, builder_toml).unwrap();
    let config = config.to_string_lossy().to_string();
    c.builder_with("b", 2, &["--config", &config]);
    c.wait_builders_connected(1);
    c
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

const REBAR_APP: &[(&str, &str)] = &[
    ("rebar.config", "{erl_opts, [debug_info]}.\n"),
    (
        "src/calc.app.src",
        "{application, calc, [{vsn, \"0.1.0\"}, {applications, [kernel, stdlib]}]}.\n",
    ),
    (
        "src/calc.erl",
        "-module(calc).\n-export([add/2]).\nadd(A, B) -> A + B.\n",
    ),
    (
        "test/calc_tests.erl",
        "-module(calc_tests).\n-include_lib(\"eunit/include/eunit.hrl\").\n\
         add_test() -> ?assertEqual(5, calc:add(2, 3)).\n\
         release_test() -> ?assert(list_to_integer(erlang:system_info(otp_release)) >= 25).\n",
    ),
];

/// `otp_release: [25, 27]`: OTP 25 from a kerl installation on the host
/// (mounted and activated), OTP 27 from a trixie image's own packages;
/// `erl` prints the release it is, and rebar3 runs the eunit tests with it.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[cfg_attr(
    all(not(kha_skip_lxc), kha_skip_images),
    ignore = "the test images are not cached: run deploy/test-images.sh"
)]
#[cfg_attr(
    all(not(kha_skip_lxc), not(kha_skip_images), kha_skip_erlang),
    ignore = "no Debian erlang-nox and rebar3 on this host"
)]
#[test]
fn two_otp_releases_each_run_their_own_erl_and_rebar3() {
    let repo = Repo::temp();
    let mut files = REBAR_APP.to_vec();
    files.push((
        ".travis.yml",
        "language: erlang\notp_release: [25, 27]\ninstall: true\nscript:\n  - command -v erl\n  \
         - erl -noshell -eval 'io:format(\"otp=~s~n\", [erlang:system_info(otp_release)]), halt().'\n  \
         - rebar3 eunit\n",
    ));
    repo.commit(&files, "an app with eunit tests");
    let kerl_parent = test_dir("kha-kerl-");
    let kerl = make_kerl_installation(&kerl_parent.path().join("kerl"));
    let c = cluster(
        &repo,
        &["otp27"],
        &format!(
            "[toolchains]\ndiscover = false\nkerl = [{}]\n",
            toml_path(&kerl_parent.path().join("kerl"))
        ),
    );
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(300));
    let jobs = job_ids(&b);
    let logs: Vec<String> = jobs
        .iter()
        .map(|j| String::from_utf8_lossy(&c.log(*j)).to_string())
        .collect();
    assert_eq!(b["state"], "passed", "{b}\n{}", logs.join("\n-----\n"));
    let (l25, l27) = (&logs[0], &logs[1]);
    let k = kerl.display();
    assert!(l25.contains("kha: image default ("), "{l25}");
    assert!(
        l25.contains("kha: otp_release 25.") && l25.contains("kerl installation"),
        "{l25}"
    );
    assert!(
        l25.contains(&format!("\n{k}/bin/erl\n")),
        "erl of the kerl installation: {l25}"
    );
    assert!(l25.contains("\notp=25\n"), "{l25}");
    assert!(l25.contains("2 tests, 0 failures"), "{l25}");
    assert!(
        l27.contains("kha: image otp27 (debian trixie, amd64)"),
        "{l27}"
    );
    assert!(l27.contains("kha: otp_release 27."), "{l27}");
    assert!(l27.contains("\n/usr/bin/erl\n"), "{l27}");
    assert!(l27.contains("\notp=27\n"), "{l27}");
    assert!(l27.contains("2 tests, 0 failures"), "{l27}");
}

/// `arch: [amd64, arm64]`: the arm64 job runs in the arm64 image under
/// qemu, unprivileged as every job, and its log streams like any other.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[cfg_attr(
    all(not(kha_skip_lxc), kha_skip_images),
    ignore = "the test images are not cached: run deploy/test-images.sh"
)]
#[test]
fn amd64_and_arm64_jobs_each_run_on_their_arch() {
    let repo = Repo::with_travis_yml(
        "language: shell\narch: [amd64, arm64]\nscript:\n  - uname -m\n  - id -u\n  \
         - for i in 1 2 3; do echo \"line $i\"; sleep 1; done\n",
    );
    let c = cluster(&repo, &["arm64"], "[toolchains]\ndiscover = false\n");
    let id = c.trigger("demo", None);
    let b = wait_for("the build's jobs", Duration::from_secs(60), || {
        let b = c.build(id);
        (job_ids(&b).len() == 2).then_some(b)
    });
    let arm = job_ids(&b)[1];
    // Followed while it runs: the lines come as they are printed.
    let follow = c.kha(&["log", &arm.to_string(), "--follow"]);
    assert!(
        follow.status.success(),
        "{}",
        String::from_utf8_lossy(&follow.stderr)
    );
    let followed = String::from_utf8_lossy(&follow.stdout).to_string();
    let b = c.wait_build(id, Duration::from_secs(120));
    let amd = String::from_utf8_lossy(&c.log(job_ids(&b)[0])).to_string();
    let arm_log = String::from_utf8_lossy(&c.log(arm)).to_string();
    assert_eq!(b["state"], "passed", "{b}\n{amd}\n-----\n{arm_log}");
    assert!(amd.contains("$ uname -m\nx86_64\n"), "{amd}");
    assert!(
        arm_log.contains("kha: image arm64 (debian bookworm, arm64)"),
        "{arm_log}"
    );
    assert!(arm_log.contains("$ uname -m\naarch64\n"), "{arm_log}");
    // Root inside, an unprivileged uid outside (the image's files belong
    // to the host's root, unmapped).
    assert!(arm_log.contains("$ id -u\n0\n"), "{arm_log}");
    assert!(arm_log.contains("line 3\n"), "{arm_log}");
    assert_eq!(followed, arm_log, "the followed log is the stored one");
    assert!(c.containers_of(0).is_empty());
}

/// `rust: stable`: the host's rustup toolchain, mounted read-only and
/// first on PATH in the default image.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[cfg_attr(
    all(not(kha_skip_lxc), kha_skip_rustup),
    ignore = "no stable rustup toolchain on this host"
)]
#[test]
fn a_rustup_toolchain_is_activated_for_rust_stable() {
    let repo = Repo::temp();
    repo.commit(
        &[
            (".travis.yml", "language: rust\nrust: stable\ninstall: true\nscript:\n  - command -v rustc\n  - rustc --version\n  - rustc -O -o /tmp/hello hello.rs && /tmp/hello\n"),
            ("hello.rs", "fn main() { println!(\"hello from rust\"); }\n"),
        ],
        "hello",
    );
    let parent = test_dir("kha-rustup-");
    let toolchains = link_rust_toolchain(parent.path());
    let c = cluster(
        &repo,
        &[],
        &format!(
            "[toolchains]\ndiscover = false\nrustup = [{}]\n",
            toml_path(&toolchains)
        ),
    );
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(120));
    let log = String::from_utf8_lossy(&c.log(job_ids(&b)[0])).to_string();
    assert_eq!(b["state"], "passed", "{b}\n{log}");
    let dir = toolchains.join(format!(
        "stable-{}-unknown-linux-gnu",
        std::env::consts::ARCH
    ));
    assert!(log.contains("kha: rust 1."), "{log}");
    assert!(
        log.contains(&format!(
            "rustup toolchain stable-{}",
            std::env::consts::ARCH
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("\n{}/bin/rustc\n", dir.display())),
        "{log}"
    );
    assert!(log.contains("\nrustc 1."), "{log}");
    assert!(log.contains("\nhello from rust\n"), "{log}");
}

/// A job asking for what no builder has waits, and says why in
/// `kha build show` and `/api/v1/queue`; a job whose labels the builder
/// has, but in no single image, is refused by it, and waits too.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_job_asking_for_a_missing_toolchain_or_arch_waits_and_says_why() {
    let repo = Repo::with_travis_yml(
        "language: erlang\ninstall: true\nscript: true\njobs:\n  include:\n    - otp_release: 99\n    - arch: s390x\n",
    );
    let c = cluster(&repo, &[], "[toolchains]\ndiscover = false\n");
    let id = c.trigger("demo", None);
    let reasons = wait_for("the jobs' reasons", Duration::from_secs(30), || {
        let b = c.build(id);
        let d: Vec<String> = b["jobs"]
            .as_array()?
            .iter()
            .map(|j| j["detail"].as_str().unwrap_or("").to_string())
            .collect();
        (d.len() == 2 && d.iter().all(|r| !r.is_empty())).then_some(d)
    });
    assert_eq!(
        reasons[0], "waiting: no connected builder offers otp_release=99",
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1], "waiting: no connected builder offers arch=s390x",
        "{reasons:?}"
    );
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(
        shown.contains("no connected builder offers otp_release=99"),
        "{shown}"
    );
    let token = format!("Bearer {}", c.admin_token());
    let q = http_request(
        &c.http_url(),
        "GET",
        "/api/v1/queue",
        &[("authorization", &token)],
        b"",
    );
    let body = String::from_utf8_lossy(&q.body);
    assert_eq!(q.status, 200, "{body}");
    assert!(
        body.contains("no connected builder offers arch=s390x"),
        "{body}"
    );
    // The queue page, as a browser gets it.
    let page = http_request(&c.http_url(), "GET", "/queue", &[], b"");
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200, "{html}");
    for why in [
        "no connected builder offers otp_release=99",
        "no connected builder offers arch=s390x",
    ] {
        assert!(html.contains(why), "{why} not on the queue page: {html}");
    }
    let b = c.build(id);
    assert!(
        b["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] == "queued"),
        "{b}"
    );
}

/// The builder offers `arch=aarch64` (its arm64 image) and
/// `otp_release=25` (the default image's Erlang), but no one image has
/// both: it refuses the job, and the job waits with the builder's reason.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[cfg_attr(
    all(not(kha_skip_lxc), kha_skip_images),
    ignore = "the test images are not cached: run deploy/test-images.sh"
)]
#[cfg_attr(
    all(not(kha_skip_lxc), not(kha_skip_images), kha_skip_erlang),
    ignore = "no Debian erlang-nox and rebar3 on this host"
)]
#[test]
fn a_job_no_single_image_can_run_is_refused_with_the_reason() {
    let repo = Repo::with_travis_yml(
        "language: erlang\notp_release: 25\narch: arm64\ninstall: true\nscript: true\n",
    );
    let c = cluster(&repo, &["arm64"], "[toolchains]\ndiscover = false\n");
    let id = c.trigger("demo", None);
    let want = "every builder that could run it refused it: no single image here has \
                arch=aarch64 and otp_release=25: image default is arch=x86_64; \
                image arm64 has no otp_release=25";
    let detail = wait_for("the refusal", Duration::from_secs(30), || {
        let b = c.build(id);
        let d = b["jobs"][0]["detail"].as_str()?.to_string();
        d.contains("refused").then_some(d)
    });
    assert_eq!(detail, format!("waiting: {want}"));
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(shown.contains(want), "{shown}");
    assert_eq!(c.build(id)["jobs"][0]["state"], "queued");
}

/// Not a test: measures how fast an emulated job is against a native one,
/// the same CPU-bound script in the default image and the arm64 image,
/// run as kha jobs. Run with
/// `cargo test -p kha-tests --test toolchains -- --ignored --nocapture measure_emulation`.
#[test]
#[ignore = "a measurement, not a test: run it by name"]
fn measure_emulation() {
    let script = r#"language: shell
arch: [amd64, arm64]
script:
  - t0=$(date +%s%N); i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; t1=$(date +%s%N); echo "shell_loop_ms=$(( (t1-t0)/1000000 ))"
  - head -c 30000000 /dev/urandom > /tmp/r; t0=$(date +%s%N); gzip -6 < /tmp/r > /tmp/r.gz; t1=$(date +%s%N); echo "gzip_30MB_ms=$(( (t1-t0)/1000000 ))"
  - t0=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; t1=$(date +%s%N); echo "ten_execs_ms=$(( (t1-t0)/1000000 ))"
"#
    .to_string();
    let repo = Repo::with_travis_yml(&script);
    let c = cluster(&repo, &["arm64"], "[toolchains]\ndiscover = false\n");
    for round in 1..=3 {
        let id = c.trigger("demo", None);
        let b = c.wait_build(id, Duration::from_secs(600));
        for (job, arch) in job_ids(&b)
            .into_iter()
            .zip(["amd64 native", "arm64 emulated"])
        {
            let log = String::from_utf8_lossy(&c.log(job)).to_string();
            let figures: Vec<&str> = log
                .lines()
                .filter(|l| !l.starts_with("$ ") && l.contains("_ms="))
                .collect();
            let started = b["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["id"] == job)
                .unwrap();
            let wall = started["finished_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(started["started_ms"].as_u64().unwrap_or(0));
            println!("round {round} {arch}: {} job_ms={wall}", figures.join(" "));
        }
    }
}
