//! End to end: scheduled builds (`kha cron`) on a real control node and a
//! real lxc builder. The schedules run on the control node's real clock:
//! an interval schedule's first run comes a minute after it is added
//! (Travis's rule), and the control node is stopped over that minute.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The schedule with this id, as `kha cron list` shows it.
fn schedule(c: &Cluster, id: u64) -> serde_json::Value {
    let all = c.kha_json(&["cron", "list", "demo"]);
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no schedule {id} in {all}"))
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_schedule_due_while_the_control_node_is_stopped_runs_once_after_it_starts() {
    let repo =
        Repo::with_travis_yml("language: shell\nscript:\n  - echo \"event=$TRAVIS_EVENT_TYPE\"\n");
    // Skip markers do not apply to cron builds.
    repo.commit(&[], "nothing to build here [ci skip]");
    repo.git(&["branch", "busy"]);
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .builder("b1", 1)
        .start();

    // Bad input is refused, saying what was wrong.
    for (args, says) in [
        (
            &["cron", "add", "nope", "master", "--interval", "daily"][..],
            "no project \"nope\"",
        ),
        (
            &["cron", "add", "demo", "a..b", "--interval", "daily"],
            "branch or tag name \"a..b\"",
        ),
        (
            &["cron", "add", "demo", "master", "--cron", "0 3 * *"],
            "has 4 fields",
        ),
        (
            &["cron", "add", "demo", "master", "--cron", "0 3 31 2 *"],
            "never matches a date",
        ),
    ] {
        let o = c.kha(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    }

    // `busy` was built a moment ago: its schedule, which asks, skips.
    let busy = c.trigger("demo", Some("busy"));
    assert_eq!(
        c.wait_build(busy, Duration::from_secs(120))["state"],
        "passed"
    );
    let main = c.kha_json(&["cron", "add", "demo", "master", "--interval", "daily"]);
    let skips = c.kha_json(&[
        "cron",
        "add",
        "demo",
        "busy",
        "--interval",
        "daily",
        "--dont-run-if-recent-build-exists",
    ]);
    let nightly = c.kha_ok(&["cron", "add", "demo", "master", "--cron", "0 3 * * *"]);
    assert!(nightly.contains("T03:00:00Z"), "{nightly}");
    let listed = c.kha_ok(&["cron", "list"]);
    assert!(listed.contains("cron 0 3 * * *"), "{listed}");
    assert!(listed.contains("daily (unless built in 24 h)"), "{listed}");
    // The audit log words them the same way.
    let audit = c.kha_ok(&["audit"]);
    assert!(audit.contains("master cron 0 3 * * *"), "{audit}");
    assert!(
        audit.contains("busy daily dont_run_if_recent_build_exists"),
        "{audit}"
    );
    let id = nightly
        .strip_prefix("schedule ")
        .and_then(|s| s.split(':').next())
        .unwrap();
    let removed = c.kha_ok(&["cron", "remove", id]);
    assert!(
        removed.starts_with(&format!("removed schedule {id}: master of demo")),
        "{removed}"
    );

    // The control node is down when both come due.
    // Each runs first a minute after it was added; `skips` was added a
    // moment after `main` (the same second or the next: the sleep below
    // waits for the later of the two).
    let due = main["next_run_ms"].as_u64().unwrap();
    let skips_due = skips["next_run_ms"].as_u64().unwrap();
    assert!((due..due + 5_000).contains(&skips_due), "{due} {skips_due}");
    let ctl = c.control.as_mut().unwrap();
    ctl.signal(Signal::SIGTERM);
    assert!(
        ctl.wait_exit(Duration::from_secs(20)).is_some(),
        "the control node stops"
    );
    let wait = (skips_due + 1_500).saturating_sub(now_ms());
    assert!(
        wait > 1_000,
        "the schedule came due before the control node stopped"
    );
    std::thread::sleep(Duration::from_millis(wait));
    c.start_control();

    // It runs once, as a cron build, though its head says `[ci skip]`.
    let main_id = main["id"].as_u64().unwrap();
    let build = wait_for("the missed run", Duration::from_secs(30), || {
        let s = schedule(&c, main_id);
        s["last_build_id"].as_u64().filter(|&b| b > 0)
    });
    let b = c.wait_build(build, Duration::from_secs(120));
    assert_eq!(
        (&b["state"], &b["event"]),
        (&"passed".into(), &"cron".into()),
        "{b}"
    );
    let log = String::from_utf8(c.log(b["jobs"][0]["id"].as_u64().unwrap())).unwrap();
    assert!(log.contains("event=cron\n"), "{log}");
    let s = schedule(&c, main_id);
    assert_eq!(s["last_outcome"], format!("started build {build}"));
    assert_eq!(s["next_run_ms"].as_u64().unwrap(), due + 86_400_000, "{s}");
    let s = schedule(&c, skips["id"].as_u64().unwrap());
    assert_eq!(
        s["last_outcome"], "skipped: a build of busy ran in the last 24 h",
        "{s}"
    );
    assert_eq!(s["last_build_id"], 0);

    // Once: a while later there is still one cron build.
    std::thread::sleep(Duration::from_secs(3));
    let builds = c.kha_json(&["build", "list", "demo"]);
    let crons: Vec<&serde_json::Value> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["event"] == "cron")
        .collect();
    assert_eq!(crons.len(), 1, "{builds}");
    assert_eq!(builds["builds"].as_array().unwrap().len(), 2, "{builds}");
}
