//! Abusive clients, end to end: what a stranger on the network or a local
//! user can try against the control node and a builder's credentials,
//! with the real binaries over loopback.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

/// The enrolment token a builder is given stays out of `ps`: from a file
/// (as the tests' cluster gives it) it is not on the command line; given
/// on the command line it works, with a warning; an empty token file is a
/// clear error.
#[test]
fn the_enrolment_token_stays_out_of_the_command_line() {
    let c = Fixture::new().start();
    let token = c.enrolment_token();
    let mut from_file = c.spawn_builder(&c.path("builder-f"), "f", 1, Some(&token), &[]);
    c.wait_builders_connected(1);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", from_file.child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--token-file"), "{cmdline}");
    assert!(!cmdline.contains(&token), "{cmdline}");
    assert!(!from_file.log_text().contains("on the command line"));

    let token = c.enrolment_token();
    let mut on_line = c.spawn_builder(&c.path("builder-l"), "l", 1, None, &["--token", &token]);
    c.wait_builders_connected(2);
    let log = on_line.log_text();
    assert!(
        log.contains("the enrolment token is on the command line"),
        "{log}"
    );

    let empty = c.path("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let mut p = c.spawn_builder(
        &c.path("builder-e"),
        "e",
        1,
        None,
        &["--token-file", &empty.to_string_lossy()],
    );
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("a builder with an empty token file exits");
    assert!(!st.success());
    assert!(
        p.log_text().contains("no enrolment token in it"),
        "{}",
        p.log_text()
    );
    from_file.kill9();
    on_line.kill9();
}

/// Wrong enrolment tokens from one address: after
/// `MAX_ENROL_FAILURES_ADDR` (10) the next tries from there are refused
/// with the reason before any token is compared, while a builder that
/// enrolled before keeps connecting and running jobs from the same host.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_flood_of_wrong_enrolment_tokens_is_held_back() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo ok\n");
    let mut c = Fixture::new()
        .project("p", &repo.url())
        .builder("a", 1)
        .start();
    c.wait_builders_connected(1);
    for i in 0..10 {
        let data = c.path(&format!("builder-guess{i}"));
        let mut p = c.spawn_builder(&data, "guess", 1, Some(&format!("khaet_guess{i}")), &[]);
        assert!(!p
            .wait_exit(Duration::from_secs(20))
            .expect("a builder with a wrong token exits")
            .success());
        assert!(
            p.log_text().contains("unknown enrolment token"),
            "{}",
            p.log_text()
        );
    }
    let good = c.enrolment_token();
    let mut p = c.spawn_builder(&c.path("builder-late"), "late", 1, Some(&good), &[]);
    assert!(!p
        .wait_exit(Duration::from_secs(20))
        .expect("the eleventh try exits")
        .success());
    let log = p.log_text();
    assert!(
        log.contains("enrolment refused: too many failed enrolments from 127.0.0.1"),
        "{log}"
    );
    // The enrolled builder, restarted, is back and runs a job.
    c.restart_builder(0);
    c.wait_builders_connected(1);
    let id = c.trigger("p", None);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
}
