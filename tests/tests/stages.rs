//! End to end: build stages run one after the other on a real builder in
//! lxc; a failing stage cancels the later ones; an allowed failure does
//! not stop the next stage. One control node and one builder serve the
//! three builds, which run at once.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

/// Stage `one` takes a few seconds, so `two` can be seen waiting.
const ORDER: &str = "language: shell\nstages: [one, two]\njobs:\n  include:\n    - stage: one\n      env: A=1\n      script: sleep 4\n    - env: A=2\n      script: sleep 4\n    - stage: two\n      script: \"true\"\n";
/// `test` fails; `deploy` and `notify` must never run.
const FAILING: &str = "language: shell\nstages: [test, deploy, notify]\njobs:\n  include:\n    - stage: test\n      script: \"false\"\n    - script: \"true\"\n    - stage: deploy\n      script: \"true\"\n    - stage: notify\n      script: \"true\"\n";
/// `test`'s only failure is allowed: `deploy` runs and the build passes.
const ALLOWED: &str = "language: shell\nstages: [test, deploy]\njobs:\n  include:\n    - stage: test\n      script: \"true\"\n    - env: FLAKY=1\n      script: \"false\"\n    - stage: deploy\n      script: \"true\"\n  allow_failures:\n    - env: FLAKY=1\n";

fn jobs(b: &serde_json::Value) -> Vec<serde_json::Value> {
    b["jobs"].as_array().unwrap().clone()
}

fn states(b: &serde_json::Value) -> Vec<String> {
    jobs(b)
        .iter()
        .map(|j| field(j, "state").to_string())
        .collect()
}

fn field<'a>(j: &'a serde_json::Value, k: &str) -> &'a str {
    j[k].as_str().unwrap_or("")
}

fn ms(j: &serde_json::Value, k: &str) -> u64 {
    j[k].as_u64().unwrap_or(0)
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn stages_run_in_order_and_a_failed_stage_cancels_the_rest() {
    let order = Repo::with_travis_yml(ORDER);
    let failing = Repo::with_travis_yml(FAILING);
    let allowed = Repo::with_travis_yml(ALLOWED);
    let c = Fixture::new()
        .project("order", &order.url())
        .project("failing", &failing.url())
        .project("allowed", &allowed.url())
        .builder("b", 4)
        .start();
    let order_id = c.trigger("order", None);
    let failing_id = c.trigger("failing", None);
    let allowed_id = c.trigger("allowed", None);

    // While stage one runs, stage two's job waits and says for what.
    let seen = wait_for(
        "stage two to be seen waiting",
        Duration::from_secs(60),
        || {
            let b = c.build(order_id);
            let js = jobs(&b);
            (field(&js[0], "state") == "running" || field(&js[1], "state") == "running")
                .then_some(b)
        },
    );
    let two = &jobs(&seen)[2];
    assert_eq!(field(two, "state"), "waiting", "{seen}");
    assert_eq!(field(two, "detail"), "waiting for stage one", "{seen}");
    assert_eq!(seen["stages"], serde_json::json!(["one", "two"]), "{seen}");
    let table = c.kha_ok(&["build", "show", &order_id.to_string()]);
    assert!(table.contains("stage one: running"), "{table}");
    assert!(table.contains("stage two: waiting"), "{table}");
    let page = http_get(&c.http_url(), &format!("/builds/{order_id}")).text();
    assert!(
        page.contains("<tr class=\"stage\" data-state=\"waiting\">"),
        "{page}"
    );
    assert!(page.contains("waiting for stage one"), "{page}");

    let b = c.wait_build(order_id, Duration::from_secs(120));
    assert_eq!(b["state"], "passed", "{b}");
    let js = jobs(&b);
    let one_done = ms(&js[0], "finished_ms").max(ms(&js[1], "finished_ms"));
    assert!(
        ms(&js[2], "started_ms") >= one_done,
        "stage two started only after stage one ended: {b}"
    );

    let b = c.wait_build(failing_id, Duration::from_secs(120));
    assert_eq!(b["state"], "failed", "{b}");
    let js = jobs(&b);
    // The other job of the failing stage still completed.
    assert_eq!(
        states(&b),
        ["failed", "passed", "canceled", "canceled"],
        "{b}"
    );
    for j in &js[2..] {
        assert_eq!(ms(j, "started_ms"), 0, "never ran: {j}");
        assert_eq!(field(j, "detail"), "canceled: stage test failed", "{j}");
    }
    let table = c.kha_ok(&["build", "show", &failing_id.to_string()]);
    assert!(table.contains("stage test: failed"), "{table}");
    assert!(table.contains("stage deploy: canceled"), "{table}");
    let page = http_get(&c.http_url(), &format!("/builds/{failing_id}")).text();
    assert!(page.contains("canceled: stage test failed"), "{page}");

    let b = c.wait_build(allowed_id, Duration::from_secs(120));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(states(&b), ["passed", "failed", "passed"], "{b}");

    // A restart starts again from the first stage: the later stages wait.
    c.kha_ok(&["build", "restart", &failing_id.to_string()]);
    let b = c.build(failing_id);
    for j in &jobs(&b)[2..] {
        // Canceled again already if stage test failed that fast.
        assert!(matches!(field(j, "state"), "waiting" | "canceled"), "{b}");
    }
    let b = c.wait_build(failing_id, Duration::from_secs(120));
    assert_eq!(b["state"], "failed", "{b}");
    for j in &jobs(&b)[2..] {
        assert_eq!(
            (field(j, "state"), ms(j, "started_ms")),
            ("canceled", 0),
            "{b}"
        );
    }
}
