//! Running kha for months: Prometheus metrics on the control node and on a
//! builder, read with a real OpenMetrics parser as a build runs, behind a
//! token; and the daemons' JSON log lines, with a log file reopened on
//! SIGHUP.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "let-me-graph-it";

fn metrics(c: &Cluster, auth: Option<&str>) -> Response {
    let header = auth.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = header
        .as_deref()
        .map(|h| vec![("Authorization", h)])
        .unwrap_or_default();
    http_request(&c.http_url(), "GET", "/metrics", &headers, b"")
}

fn scrape(c: &Cluster) -> Vec<Sample> {
    let r = metrics(c, Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("content-type")
    );
    parse_openmetrics(&r.text())
}

/// Waits until the control node's metrics satisfy `ok`; returns them.
fn scrape_until(c: &Cluster, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    wait_for(what, Duration::from_secs(30), || {
        let s = scrape(c);
        ok(&s).then_some(s)
    })
}

#[test]
fn metrics_parse_move_as_a_build_runs_and_need_the_token() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo hello metrics\n");
    let far = Repo::with_travis_yml("language: shell\narch: ppc64le\nscript: true\n");
    let c = Fixture::new()
        .config(&format!("metrics_token = \"{TOKEN}\""))
        .project("demo", &repo.url())
        .project("far", &far.url())
        .host_builder_with("a", 2, &["--metrics-listen", "127.0.0.1:0"])
        .start();

    // The token: none, or a wrong one, is refused.
    assert_eq!(metrics(&c, None).status, 401);
    assert_eq!(metrics(&c, Some("guess")).status, 401);
    let before = scrape(&c);
    assert_eq!(
        sample(&before, "kha_builders_connected", &[]),
        Some(1.0),
        "{before:?}"
    );
    assert_eq!(
        sample(&before, "kha_jobs_finished_total", &[("project", "demo")]),
        None
    );

    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let passed = [("project", "demo"), ("state", "passed")];
    let s = scrape_until(&c, "the finished job counted", |s| {
        sample(s, "kha_jobs_finished_total", &passed) == Some(1.0)
            && sample(s, "kha_event_stream_lag", &[("consumer", "metrics")]) == Some(0.0)
    });
    assert_eq!(
        sample(&s, "kha_builds_created_total", &[("project", "demo")]),
        Some(1.0)
    );
    assert_eq!(sample(&s, "kha_builds_finished_total", &passed), Some(1.0));
    assert_eq!(
        sample(&s, "kha_jobs_started_total", &[("project", "demo")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&s, "kha_job_queue_wait_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&s, "kha_job_run_seconds_count", &[]), Some(1.0));
    let family = |name: &str| s.iter().find(|x| x.family == name).map(|x| x.kind.clone());
    assert_eq!(family("kha_job_run_seconds").as_deref(), Some("histogram"));
    assert_eq!(family("kha_jobs_finished").as_deref(), Some("counter"));
    assert!(sample(&s, "kha_log_bytes_ingested_total", &[]).unwrap() > 10.0);
    assert!(sample(&s, "kha_disk_bytes", &[("part", "database")]).unwrap() > 0.0);
    assert_eq!(
        sample(&s, "kha_builder_slots", &[("state", "free")]),
        Some(2.0)
    );
    assert_eq!(sample(&s, "kha_lease_expiries_total", &[]), Some(0.0));

    // A job no builder can take shows in the queue's depth by its labels
    // (ppc64le is named powerpc64 in labels).
    let far_build = c.trigger("far", None);
    let s = scrape_until(&c, "the queued job counted", |s| {
        s.iter().any(|x| {
            x.name == "kha_queue_depth"
                && x.labels
                    .get("labels")
                    .is_some_and(|l| l.contains("arch=powerpc64"))
                && x.value == 1.0
        })
    });
    assert_eq!(
        sample(&s, "kha_builds_created_total", &[("project", "far")]),
        Some(1.0)
    );
    let kind = s
        .iter()
        .find(|x| x.family == "kha_queue_depth")
        .map(|x| x.kind.as_str());
    assert_eq!(kind, Some("gauge"));
    c.kha_ok(&["build", "cancel", &far_build.to_string()]);

    // A webhook refused for its token is counted by its answer.
    let r = http_post(
        &c.http_url(),
        "/hooks/generic/demo",
        &[("Authorization", "Bearer nope")],
        b"{}",
    );
    assert_eq!(r.0, 401, "{}", r.1);
    scrape_until(&c, "the webhook counted", |s| {
        sample(
            s,
            "kha_webhook_deliveries_total",
            &[("source", "generic"), ("answer", "unauthorized")],
        ) == Some(1.0)
    });

    // The builder's own.
    let addr = std::fs::read_to_string(c.path("builder-a/metrics.addr")).unwrap();
    let r = http_get(&format!("http://{}", addr.trim()), "/metrics");
    assert_eq!(r.status, 200);
    let builder_text = r.text();
    let b = parse_openmetrics(&builder_text);
    assert_eq!(
        sample(&b, "kha_builder_jobs_total", &[("outcome", "passed")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&b, "kha_builder_checkout_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&b, "kha_builder_container_start_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&b, "kha_builder_slots", &[("state", "busy")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&b, "kha_builder_slots", &[("state", "free")]),
        Some(2.0)
    );
    assert!(sample(&b, "kha_builder_spool_bytes", &[]).is_some());

    // Every family either daemon exposes is documented, and so is every
    // metric the example dashboard graphs (a family shows once it has a
    // sample: no requeue yet, no kha_jobs_requeued).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let documented = |family: &str| {
        let suffixed = |sfx: &str| doc.contains(&format!("`{family}{sfx}`"));
        suffixed("") || suffixed("_total")
    };
    let control_text = metrics(&c, Some(TOKEN)).text();
    let exposed: std::collections::BTreeSet<&str> = control_text
        .lines()
        .chain(builder_text.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(exposed.len() >= 20, "{exposed:?}");
    for f in &exposed {
        assert!(documented(f), "{f} is not in docs/metrics.md");
    }
    let dash = std::fs::read_to_string(root.join("deploy/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dash).unwrap();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("kha_"))
            {
                let family = ["_bucket", "_total"]
                    .iter()
                    .find_map(|sfx| name.strip_suffix(sfx))
                    .unwrap_or(name);
                assert!(
                    documented(family),
                    "the dashboard's {name} ({}) is not in docs/metrics.md",
                    p["title"]
                );
            }
        }
    }
}

#[test]
fn json_log_lines_carry_the_fields_and_sighup_reopens_the_log_file() {
    let repo = Repo::with_travis_yml("language: shell\nscript: true\n");
    let c = Fixture::new()
        .env("KHA_LOG_FORMAT", "json")
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    c.wait_build(id, Duration::from_secs(60));
    // Every line of both daemons is a JSON object; the job's lines name
    // it and its project, the builder's name the builder.
    let control = c.control.as_ref().unwrap().log_text();
    let builder = c.builders[0].proc.log_text();
    let parse = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let (control, builder) = (parse(&control), parse(&builder));
    assert!(control
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    assert!(
        control
            .iter()
            .any(|l| l["message"] == "job finished" && l["job_id"].is_u64()),
        "{control:?}"
    );
    assert!(
        builder.iter().any(|l| l["message"] == "job granted"
            && l["project"] == "demo"
            && l["job_id"].is_u64()),
        "{builder:?}"
    );
    // SIGHUP without a log file: noted, and the node runs on.
    c.control.as_ref().unwrap().signal(Signal::SIGHUP);
    wait_for("the SIGHUP noted", Duration::from_secs(10), || {
        c.control
            .as_ref()
            .unwrap()
            .log_text()
            .contains("nothing to reopen")
            .then_some(())
    });
    assert!(c.kha(&["builder", "list"]).status.success());

    // With a log file: moved away (as logrotate does), then SIGHUP.
    let data = c.path("own");
    let file = c.path("own.log");
    let mut own = Proc::spawn(
        Command::new(bin("kha-control"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--http-listen", "off"])
            .arg("--log-file")
            .arg(&file)
            .env("KHA_LOG_FORMAT", "json"),
        c.path("own-stderr.log"),
    );
    wait_for("its first lines", Duration::from_secs(20), || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("\"listening\""))
            .map(|_| ())
    });
    std::fs::rename(&file, c.path("own.log.1")).unwrap();
    own.signal(Signal::SIGHUP);
    wait_for("the file reopened", Duration::from_secs(10), || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("SIGHUP: log file reopened"))
            .map(|_| ())
    });
    let old = std::fs::read_to_string(c.path("own.log.1")).unwrap();
    // What it wrote before the move stayed in the moved file.
    assert!(old.contains("\"listening\""), "{old}");
    for l in old
        .lines()
        .chain(std::fs::read_to_string(&file).unwrap().lines())
    {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    // A bad format is refused at start, with the reason.
    let o = Command::new(bin("kha-control"))
        .arg("--data-dir")
        .arg(c.path("bad"))
        .env("KHA_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("give text or json"));
    own.signal(Signal::SIGTERM);
    assert!(own.wait_exit(Duration::from_secs(20)).is_some());
}
