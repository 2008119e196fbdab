//! Scenario 1, latency: sequential trivial builds (`script: true`) on one
//! builder; for each, trigger → job started and trigger → build finished,
//! with where the time goes.
//!
//! Times: `t0` is taken by the bench just before the TriggerBuild call; the
//! build's `created_ms`, the job's `started_ms`/`finished_ms` and the
//! build's `finished_ms` are stamped by the control node (same machine, same
//! clock, millisecond resolution). "seen" is when the bench, following the
//! job's log like `kha log -f`, is told the job is over.

use super::env::{now_ms, rss_mib, Env, Exec};
use super::report::{Of, Row, Target};
use super::{Opts, TRIVIAL};
use anyhow::{bail, Result};
use std::time::Duration;

pub async fn run(opts: &Opts, exec: Exec, rows: &mut Vec<Row>) -> Result<()> {
    let sc = format!("latency/{}", exec.name());
    let mut env = Env::start(Default::default()).await?;
    env.project("lat", TRIVIAL).await?;
    env.spawn_builder("a", exec, 1).await?;
    env.wait_connected(1, Duration::from_secs(20)).await?;

    // Warm-up: the first build clones the builder's mirror cache.
    for _ in 0..5 {
        let b = env.trigger("lat").await?;
        env.follow_to_end(b.jobs[0].id).await?;
    }

    let n = opts.latency_builds;
    let mut trigger_rpc = Vec::with_capacity(n);
    let mut to_started = Vec::with_capacity(n);
    let mut to_finished = Vec::with_capacity(n);
    let mut to_seen = Vec::with_capacity(n);
    let mut fetch = Vec::with_capacity(n);
    let mut queue_to_start = Vec::with_capacity(n);
    let mut run = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = now_ms();
        let b = env.trigger("lat").await?;
        let t_rpc = now_ms();
        let job = b.jobs[0].id;
        let (state, _) = env.follow_to_end(job).await?;
        let t_seen = now_ms();
        if state != "passed" {
            bail!("build {} of the latency run is {state}", b.id);
        }
        let b = env.build(b.id).await?;
        let j = &b.jobs[0];
        trigger_rpc.push(t_rpc - t0);
        to_started.push(j.started_ms as f64 - t0);
        to_finished.push(b.finished_ms as f64 - t0);
        to_seen.push(t_seen - t0);
        fetch.push(b.created_ms as f64 - t0);
        queue_to_start.push(j.started_ms as f64 - b.created_ms as f64);
        run.push(j.finished_ms as f64 - j.started_ms as f64);
        if i % 50 == 49 {
            eprintln!("  {sc}: {} builds", i + 1);
        }
    }
    let started_target = Target::AtMost(Of::P50, 10.0);
    let finished_target = Target::AtMost(Of::P50, 30.0);
    rows.push(Row::samples(&sc, "trigger → job started", "ms", &to_started).target(started_target));
    rows.push(
        Row::samples(&sc, "trigger → build finished", "ms", &to_finished).target(finished_target),
    );
    rows.push(Row::samples(
        &sc,
        "trigger → finish seen by follower",
        "ms",
        &to_seen,
    ));
    rows.push(Row::samples(&sc, "TriggerBuild call", "ms", &trigger_rpc));
    rows.push(Row::samples(
        &sc,
        "  of which: trigger → build created (mirror fetch + .travis.yml)",
        "ms",
        &fetch,
    ));
    rows.push(Row::samples(
        &sc,
        "  build created → job started (store, flush, offer, accept)",
        "ms",
        &queue_to_start,
    ));
    rows.push(Row::samples(
        &sc,
        "  job started → job finished (grant, checkout, run, log, result)",
        "ms",
        &run,
    ));
    // Memory after the run, once idle again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c_rss, c_hwm) = rss_mib(env.control_pid());
    let (b_rss, b_hwm) = rss_mib(env.builders[0].proc.child.id());
    rows.push(
        Row::value(&sc, "control RSS after the run", "MiB", c_rss).note(format!("peak {c_hwm:.1}")),
    );
    rows.push(
        Row::value(&sc, "builder RSS after the run", "MiB", b_rss).note(format!("peak {b_hwm:.1}")),
    );
    env.stop_all();
    Ok(())
}
